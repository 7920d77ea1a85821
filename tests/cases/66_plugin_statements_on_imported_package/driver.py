"""Case 66: a plugin module whose body is a chain of statements on an imported package
(``import c66_app.codecs`` then ``c66_app.codecs.MAX_SIZE = ...``,
``c66_app.codecs.LOADERS["pickle"] = ...``, ``c66_app.PLUGINS = ...``). The fix changes
two of them: the size limit goes from 64 KiB to 4 KiB (memory exhaustion) and the
``pickle`` kind gets a loader that refuses instead of ``pickle.loads`` (arbitrary code
execution on untrusted input; the new ``_refuse_pickle`` is defined just above). Each
statement sets a value that depends on nothing it changed before, so running the fixed
statements as undoable attribute/item sets (as for ``Retry.DEFAULT = Retry(3)``, case 41)
is exactly a fresh v2 import; case 66b is the shape where it is not.
"""

import pickle


class Boom:
    def __reduce__(self):
        return (str, ("pickle payload ran",))


def setup():
    import c66_app.compat  # noqa: F401  (the plugin, loaded at start-up)
    from c66_app import codecs

    return {"codecs": codecs}


def observe(state):
    codecs = state["codecs"]
    out = []
    for kind, data in (("json", b"[1, 2]"), ("pickle", pickle.dumps(Boom())),
                       ("json", b"[" + b"0," * 1500 + b"0]"),
                       ("json", b"[" + b"0," * 40000 + b"0]")):
        try:
            value = codecs.decode(kind, data)
            out.append(value if isinstance(value, str) else len(value))
        except ValueError as exc:
            out.append("refused: %s" % exc)
    return {
        "kinds": sorted(codecs.LOADERS),
        "max_size": codecs.MAX_SIZE,
        "decode": out,
    }

"""Case 66b: the boundary of case 66. A plugin module's statements on an imported package
read the state they change: ``c66b_app.codecs.LOADERS = dict(c66b_app.codecs.LOADERS)``
then ``...LOADERS["pickle"] = pickle.loads`` (dropped by the fix: arbitrary code execution
on untrusted input), and ``...MAX_SIZE = c66b_app.codecs.MAX_SIZE * 64`` (now ``* 4``:
memory exhaustion). A fresh v2 import ends with no ``pickle`` kind and MAX_SIZE 4096. In
the live process the first statement would copy a dict that already holds ``pickle``, and
the last would start from 65536, not 1024: running the fixed statements again is not a
fresh import, and what the package held before the plugin ran is recorded only in the
package's own source. Short of re-deriving it from there, only a hook can restore it, so
the right outcome is the builder's SUT-E204 (and the engine's, for a patch forced past the
builder), with the process left exactly as v1.
"""

import pickle


class Boom:
    def __reduce__(self):
        return (str, ("pickle payload ran",))


def setup():
    import c66b_app.compat  # noqa: F401  (the plugin, loaded at start-up)
    from c66b_app import codecs

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

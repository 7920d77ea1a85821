"""Case 66: a plugin module whose body is a chain of statements on an imported package
(``import c66_app.codecs`` then ``c66_app.codecs.LOADERS = dict(...)``,
``c66_app.codecs.LOADERS["pickle"] = pickle.loads``, ``c66_app.codecs.MAX_SIZE =
c66_app.codecs.MAX_SIZE * 64``). The fix drops the pickle loader (arbitrary code
execution on untrusted input) and lowers the size multiplier from 64 to 4 (memory
exhaustion). A fresh v2 import: no ``pickle`` kind, MAX_SIZE 4096. Note the last
statement reads the value it writes: evaluated again in a live v1 process it would start
from 65536, not 1024, so re-running the fixed statement as it stands is not the same as
a fresh import.
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

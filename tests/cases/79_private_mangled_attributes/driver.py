"""Case 79 (gen_objects.py, pattern mangled-private): v2 adds self.__guard = Lock() and
self.__cap = 2, stored as _Box__guard and _Box__cap: derived under those names."""


def setup():
    from c79_app import m
    return {"box": m.Box()}


def observe(state):
    box = state["box"]
    try:
        out = [box.put(i) for i in range(3)]
    except Exception as exc:
        out = "<exc %s: %s>" % (type(exc).__name__, exc)
    box.items[:] = []
    return out

"""Case 63: class state filled when the module was imported, which the change does not
touch, next to a real fix in a method. ``Backend(Generic[T])`` registers each subclass by
scheme in ``__init_subclass__`` (a class keyword, ``scheme="file"``), and typing sets
``__orig_bases__`` and ``__parameters__`` on each ``Backend[bytes]`` subclass as it is
created. None of that changes. The fix is a path-traversal check in
``FileBackend.resolve`` that calls a new method ``_inside_root`` (the shape of many
storage/static-file CVEs). A fresh v2 import has the same registry, bases and the
checking ``resolve``: a patch must swap the method, add ``_inside_root`` and keep the
registry pointing at the same (live) class objects. Today the engine takes
``__orig_bases__`` (which typing computes only when missing) for lazily derived state of
the changed class and asks for a hook.
"""

PATHS = ["file://a/b.txt", "file://../../etc/passwd", "file://a/../../x", "mem://k"]


def setup():
    from c63_app import storage

    return {"m": storage, "file_cls": storage.FileBackend}


def observe(state):
    m = state["m"]
    out = []
    for url in PATHS:
        try:
            out.append(m.open_url(url))
        except ValueError as exc:
            out.append("refused: %s" % exc)
    return {
        "open": out,
        "registry": sorted(m.Backend.registry),
        "registry_same_class": m.Backend.registry["file"] is state["file_cls"],
        "orig_bases": repr(m.FileBackend.__orig_bases__),
        "params": [p.__name__ for p in m.Backend.__parameters__],
    }

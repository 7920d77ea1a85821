"""Case 63: class state filled when the module was imported, which the change does not
touch, next to a real fix in a method. ``Backend.registry`` is filled by
``__init_subclass__`` as each backend class is defined (with a class keyword,
``scheme="file"``), and ``Store(Generic[T])`` has ``__orig_bases__`` and
``__parameters__`` set by typing; neither the registry, the keywords, nor those classes
change. The fix is a path-traversal check in ``FileBackend.resolve`` (the shape of many
storage/static-file CVEs). A fresh v2 import has the same registry and the checking
``resolve``: a patch must swap the method and keep the registry (the same class objects),
not refuse because class-creation machinery was involved somewhere in the module.
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
        "store_params": [p.__name__ for p in m.Store.__parameters__],
    }

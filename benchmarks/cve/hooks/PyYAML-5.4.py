"""Hook for PyYAML 5.3.1 -> 5.4 (CVE-2020-14343): move the unsafe constructors.

The fix is three module-level registrations that move from ``FullConstructor`` to
``UnsafeConstructor``: ``python/module:``, ``python/object:`` and ``python/object/new:``
multi-constructors. They live in class-level dicts filled when ``yaml.constructor`` was
imported (``add_multi_constructor`` copies the parent's dict on a class's first
registration), so swapping code changes nothing: FullLoader would still build arbitrary
objects. After apply this hook does what 5.4's import does: UnsafeConstructor gets its own
copy of the table if it has none, the three entries are added to it, and they are taken
out of FullConstructor's. After revert both tables are put back exactly as they were.
"""

TAGS = {"tag:yaml.org,2002:python/module:": "construct_python_module",
        "tag:yaml.org,2002:python/object:": "construct_python_object",
        "tag:yaml.org,2002:python/object/new:": "construct_python_object_new"}
_saved = {}


def post_apply(ctx):
    module = ctx.module("yaml.constructor")
    if module is None:
        return
    full, unsafe = module.FullConstructor, module.UnsafeConstructor
    _saved["full"] = dict(full.__dict__["yaml_multi_constructors"])
    _saved["unsafe"] = (dict(unsafe.__dict__["yaml_multi_constructors"])
                        if "yaml_multi_constructors" in unsafe.__dict__ else None)
    if _saved["unsafe"] is None:
        unsafe.yaml_multi_constructors = full.yaml_multi_constructors.copy()
    for tag, name in TAGS.items():
        unsafe.yaml_multi_constructors[tag] = getattr(unsafe, name)
        full.yaml_multi_constructors.pop(tag, None)


def post_revert(ctx):
    module = ctx.module("yaml.constructor")
    if module is None or not _saved:
        return
    full, unsafe = module.FullConstructor, module.UnsafeConstructor
    full.yaml_multi_constructors.clear()
    full.yaml_multi_constructors.update(_saved.pop("full"))
    before = _saved.pop("unsafe")
    if before is None:
        del unsafe.yaml_multi_constructors
    else:
        unsafe.yaml_multi_constructors.clear()
        unsafe.yaml_multi_constructors.update(before)

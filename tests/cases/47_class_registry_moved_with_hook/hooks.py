"""Hooks for case 47: move the registration as 5.4's import does, and back on revert."""

_saved = {}


def post_apply(ctx):
    m = ctx.module("c47_app.constructor")
    full, unsafe = m.FullConstructor, m.UnsafeConstructor
    _saved["full"] = dict(full.multi)
    _saved["unsafe"] = dict(unsafe.__dict__["multi"]) if "multi" in unsafe.__dict__ else None
    if _saved["unsafe"] is None:
        unsafe.multi = full.multi.copy()
    unsafe.multi["python/object:"] = unsafe.make_object
    full.multi.pop("python/object:", None)


def post_revert(ctx):
    m = ctx.module("c47_app.constructor")
    full, unsafe = m.FullConstructor, m.UnsafeConstructor
    full.multi.clear()
    full.multi.update(_saved["full"])
    if _saved["unsafe"] is None:
        del unsafe.multi
    else:
        unsafe.multi.clear()
        unsafe.multi.update(_saved["unsafe"])

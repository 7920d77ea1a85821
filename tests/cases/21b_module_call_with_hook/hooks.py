"""Hooks for case 21b: redo the admin registration the way v2's module code does."""


def _admin(ctx):
    return ctx.module("c21b_app.admin")


def post_apply(ctx):
    admin = _admin(ctx)
    admin.REGISTRY.register("admin", admin.AdminHandler, require_auth=True)


def pre_revert(ctx):
    described = _admin(ctx).REGISTRY.describe()
    if described.get("admin") != ["AdminHandler", True]:
        raise RuntimeError("admin route is not the patched registration: %r" % (described,))


def post_revert(ctx):
    admin = _admin(ctx)
    admin.REGISTRY.register("admin", admin.AdminHandler)

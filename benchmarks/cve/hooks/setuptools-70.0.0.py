"""Hook for setuptools 69.5.1 -> 70.0.0: carry pkg_resources' registries over.

The CVE-2024-6345 fix (``package_index``) patches without a hook. What needs one is a
refactoring in ``pkg_resources``:

* 69.5.1 declared its state with placeholders (``_distribution_finders = None``) that
  ``_declare_state('dict', _distribution_finders={})`` replaced through ``globals()``;
  70.0.0 binds ``_distribution_finders = _declare_state('dict', '_distribution_finders',
  {})``. Applying the new statements gives the module new, empty registries, and the
  ``register_finder(...)`` / ``register_namespace_handler(...)`` calls that filled the old
  ones ran at import and do not run again.
* The engine refuses to rebind a placeholder the process replaced unless the patch has a
  hook (SUT-E204). This hook is that human decision: before apply it keeps the live
  registries, after apply it puts every entry they had into the new ones, so finders,
  namespace handlers, namespace packages and the state table (which
  ``sandbox.save_pkg_resources_state`` reads) are as a fresh 70.0.0 import plus whatever
  the process registered since.

Revert binds the old registry objects again; entries registered between apply and revert
land in the new objects and are not copied back.
"""

REGISTRIES = ("_distribution_finders", "_namespace_handlers", "_namespace_packages",
              "_state_vars")
_saved = {}


def pre_apply(ctx):
    module = ctx.module("pkg_resources")
    if module is not None:
        _saved.update({name: getattr(module, name) for name in REGISTRIES
                       if isinstance(getattr(module, name, None), dict)})


def post_apply(ctx):
    module = ctx.module("pkg_resources")
    if module is None:
        return
    for name, old in _saved.items():
        new = getattr(module, name)
        if new is not old:
            for key, value in old.items():
                new.setdefault(key, value)
    _saved.clear()

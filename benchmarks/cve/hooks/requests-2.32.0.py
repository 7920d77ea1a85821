"""Hook for requests 2.31.0 -> 2.32.0: redo the two import-time effects the fix changes.

The builder asks for a hook for three module-level changes that are not the CVE fix
(CVE-2024-35195 is in ``adapters``, which patches without one):

* ``requests.packages`` aliases the character-detection library in ``sys.modules``. 2.32.0
  also aliases it under its own name (``requests.packages.charset_normalizer`` as well as
  ``requests.packages.chardet``). ``post_apply`` adds the aliases a fresh 2.32.0 process
  has and this one lacks; ``post_revert`` takes exactly those away again.
* 2.31.0 installed ``warnings.filterwarnings("ignore", "Trying to detect",
  module="charset_normalizer")``; 2.32.0 does not. The filter is removed after apply and
  put back at its place after revert.
* ``requests.status_codes._init()`` filled ``codes`` from ``_codes`` at import, and 2.32.0
  adds names to ``_codes`` (``too_early``, ``content_too_large``...). ``post_apply`` runs
  ``_init()`` again, which only sets attributes of ``codes``; the added names stay after
  a revert (a process of either version answers the old names the same way).
"""

import sys
import warnings

_added = []      # sys.modules keys this hook added
_filter = []     # (index, entry) of the warnings filter it removed


def _detector(ctx):
    compat = ctx.module("requests.compat")
    return getattr(compat, "chardet", None) if compat is not None else None


def post_apply(ctx):
    chardet = _detector(ctx)
    if chardet is not None and ctx.module("requests.packages") is not None:
        target = chardet.__name__
        for mod in list(sys.modules):
            if mod == target or mod.startswith(f"{target}."):
                for alias in (f"requests.packages.{mod}",
                              f"requests.packages.{mod.replace(target, 'chardet')}"):
                    if alias not in sys.modules:
                        sys.modules[alias] = sys.modules[mod]
                        _added.append(alias)
    for index, entry in enumerate(warnings.filters):
        message = entry[1]
        if entry[0] == "ignore" and message is not None and message.pattern == "Trying to detect":
            _filter.append((index, entry))
            del warnings.filters[index]
            getattr(warnings, "_filters_mutated", lambda: None)()
            break
    codes = ctx.module("requests.status_codes")
    if codes is not None:
        codes._init()


def post_revert(ctx):
    while _added:
        sys.modules.pop(_added.pop(), None)
    while _filter:
        index, entry = _filter.pop()
        warnings.filters.insert(index, entry)
        getattr(warnings, "_filters_mutated", lambda: None)()

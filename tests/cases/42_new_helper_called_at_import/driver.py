"""Case 42: the shape of requests 2.32.0's compat.py and utils.py.

* a changed constant is now computed by a *new* function that uses a *new* import
  (``codec = _resolve_codec()`` with ``import importlib``): the new function's globals
  are the live module, which has neither name before the commit, so the statement runs
  after it;
* a function changed inside ``if sys.platform == ...:`` whose branch never ran here: no
  function object exists, so there is nothing to swap, and the fixed module would not
  define it either; the patch applies (with a note) rather than being refused.
"""


def setup():
    from c42_app import compat

    return {"m": compat}


def observe(state):
    m = state["m"]
    return {"describe": m.describe(), "has_lookup": hasattr(m, "registry_lookup")}

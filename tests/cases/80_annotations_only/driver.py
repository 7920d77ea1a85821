"""Case 80: only annotations change (int instead of float: "1e9" and "0.5" no longer
convert). Annotations are behaviour when a framework reads them (pydantic, FastAPI,
typer): after apply, f.__annotations__, inspect.get_annotations and
typing.get_type_hints must be the fixed release's, also through an lru_cache wrapper
and a functools.wraps wrapper (update_wrapper copied the annotations: the same dict
before 3.14, the same __annotate__ since), for a bound method made before the
patch, for methods whose annotations read a class-body name, and in a module with
``from __future__ import annotations``; after revert, the old ones. On 3.14+ functions
carry __annotate__ (PEP 649), before it a dict."""
import inspect
import typing

RAW = ["5", "1e9", "0.5"]


def _names(hints):
    return {k: getattr(v, "__name__", v) for k, v in hints.items()}


def _call(fn, raw, *more):
    """What a framework does: convert the raw argument by its annotation, then call."""
    hints = typing.get_type_hints(fn)
    first = [k for k in hints if k not in ("return", "self")][0]
    try:
        value = hints[first](raw)
    except ValueError:
        return "rejected"
    return fn(value, *more)


def setup():
    from c80_app import api, later

    acct = api.Account()
    # annotations read before the patch (3.14+ caches __annotations__ on first access)
    for f in (api.transfer, api.refund.__wrapped__, api.Account.withdraw,
              api.Account.parse, later.limit):
        _ = f.__annotations__
    typing.get_type_hints(api.refund)
    _ = api.audit.__annotations__
    return {"api": api, "later": later, "withdraw": acct.withdraw}


def observe(state):
    api, later = state["api"], state["later"]
    funcs = {"transfer": api.transfer, "refund": api.refund,
             "refund.__wrapped__": api.refund.__wrapped__,
             "audit": api.audit, "audit.__wrapped__": api.audit.__wrapped__,
             "withdraw": api.Account.withdraw, "bound withdraw": state["withdraw"],
             "parse": api.Account.parse, "limit": later.limit}
    get_annotations = getattr(inspect, "get_annotations", None)   # 3.10+
    out = {}
    for name, f in funcs.items():
        out[name] = {"get_type_hints": _names(typing.get_type_hints(f)),
                     "signature": str(inspect.signature(f))}
        if hasattr(f, "__annotations__"):   # not an lru_cache wrapper on 3.14+
            out[name]["__annotations__"] = _names(f.__annotations__)
        if get_annotations is not None:
            out[name]["get_annotations"] = _names(get_annotations(f, eval_str=True))
    out["calls"] = {
        "transfer": [_call(api.transfer, r, "bob") for r in RAW],
        "refund": [_call(api.refund, r) for r in RAW],
        "audit": [_call(api.audit, r) for r in RAW],
        "withdraw": [_call(state["withdraw"], r) for r in RAW],
        "parse": [_call(api.Account.parse, r) for r in RAW],
        "limit": [_call(later.limit, r) for r in RAW],
    }
    return out

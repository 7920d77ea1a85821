"""Case 81: annotations and bodies change together: defaults and kw-only defaults with
them (__defaults__, __kwdefaults__), annotations added to a function that had none (one
that reads a class new in the fixed release), removed from another, and a method's read
a class-body name; a new annotated function is added. A framework converts arguments by the annotations (as pydantic,
FastAPI): after apply, annotations, signatures and calls are the fixed release's."""
import inspect
import typing

RAW = ["5", "-3", "1e9", "250"]


def _names(hints):
    return {k: getattr(v, "__name__", v) for k, v in hints.items()}


def _call(fn, raw, *more):
    hints = {k: v for k, v in typing.get_type_hints(fn).items() if k not in ("return", "self")}
    try:
        value = next(iter(hints.values()))(raw) if hints else raw
        return repr(fn(value, *more))
    except (ValueError, StopIteration) as exc:
        return f"rejected: {exc}"


def setup():
    from c81_app import limits

    quota = limits.Quota()
    for f in (limits.clamp, limits.fetch, limits.tag, limits.strip, limits.Quota.take):
        _ = f.__annotations__   # 3.14+ caches them on first read
    return {"m": limits, "take": quota.take}


def observe(state):
    m = state["m"]
    funcs = {"clamp": m.clamp, "fetch": m.fetch, "tag": m.tag, "strip": m.strip,
             "take": m.Quota.take, "bound take": state["take"]}
    out = {}
    for name, f in funcs.items():
        out[name] = {"hints": _names(typing.get_type_hints(f)),
                     "__annotations__": _names(f.__annotations__),
                     "signature": str(inspect.signature(f)),
                     "__defaults__": f.__defaults__, "__kwdefaults__": f.__kwdefaults__}
    out["calls"] = {
        "clamp": [_call(m.clamp, r) for r in RAW],
        "fetch": [_call(m.fetch, "http://x") + "|" + m.fetch("u") for _ in RAW[:1]],
        "tag": [_call(m.tag, r) for r in RAW],
        "strip": [_call(m.strip, " A ")],
        "take": [_call(state["take"], r) for r in RAW],
        "describe": [m.describe(3) if hasattr(m, "describe") else None],
    }
    return out

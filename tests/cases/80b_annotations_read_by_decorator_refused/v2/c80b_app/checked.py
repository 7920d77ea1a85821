"""A decorator that builds its argument converters from the annotations when the
function is defined, as pydantic's validate_call does."""
import functools


def validate_call(fn):
    converters = [(name, kind) for name, kind in fn.__annotations__.items()
                  if name != "return"]

    @functools.wraps(fn)
    def wrapper(*args):
        out = []
        for (name, kind), value in zip(converters, args):
            try:
                out.append(kind(value))
            except ValueError:
                raise ValueError(f"{name} must be {kind.__name__}") from None
        return fn(*out)
    return wrapper


@validate_call
def pay(amount: int) -> str:
    return f"paid {amount}"

"""Case 36: fields whose only change is the annotation (a NamedTuple's and a frozen
dataclass's, as in Jinja2 3.1.4 and aiohttp 3.9.2), plus `if TYPE_CHECKING:` and
`if __name__ == "__main__":` blocks that never run on import (urllib3 2.2.2, gunicorn 22).
None of them changes __init__ or the layout, so the patch applies; the annotations
themselves stay as they were (a caveat), so they are not observed here.
"""

import dataclasses


def setup():
    from c36_app import shapes

    return {"m": shapes, "pair": shapes.Pair(1, [2, 3]), "key": shapes.Key("a", "yes")}


def observe(state):
    m = state["m"]
    return {
        "total_live": m.total(state["pair"]),
        "total_new": m.total(m.Pair(2, [5])),
        "describe_live": m.describe(state["key"]),
        "describe_new": [m.describe(m.Key("b", v)) for v in (True, "yes", None)],
        "repr": repr(m.Pair(1, [2])),
        "fields": [f.name for f in dataclasses.fields(m.Key)] + list(m.Pair._fields),
        "hash_equal": hash(m.Key("h", True)) == hash(m.Key("h", True)),
        "bound": sorted(n for n in ("OrderedDict", "deque", "fractions") if hasattr(m, n)),
    }

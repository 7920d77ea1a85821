"""Case 43: standard-library dataclasses whose fields change (starlette 0.40's
MultipartPart.data: ``bytes = b""`` -> ``field(default_factory=bytearray)``).

The live class is kept (instances made before stay instances of it); what @dataclass
generates -- __init__, __repr__, __eq__, the fields() table, __match_args__ -- and the
fields' class-level defaults are replaced as one commit, and undone by revert. A new
field with a plain default (``limit``) is read through the class by instances made
before; a frozen dataclass's default changes too. ``EMPTY = Part("empty")`` is built at
import from the regenerated __init__, so it is built again.
"""


def setup():
    from c43_app import parts

    return {"m": parts, "old": parts.Part("kept", b"xy"), "cls": parts.Part}


def observe(state):
    m = state["m"]
    fresh = m.feed(m.Part("fresh"), b"abc")
    out = {"fresh": m.describe(fresh), "empty": m.describe(m.EMPTY),
           "limit": m.Limit().value, "kind": m.Part.kind,
           "has_data_default": "data" in vars(m.Part),
           "match_args": list(getattr(m.Part, "__match_args__", ())),
           "old_fields": [f for f in m.describe(state["old"])["fields"]]}
    try:
        m.feed(m.Part("big"), b"x" * 2000)
        out["big"] = "accepted"
    except ValueError as exc:
        out["big"] = str(exc)
    return out


def after_apply(state, runtime):
    m = state["m"]
    assert m.Part is state["cls"] and isinstance(state["old"], m.Part)
    assert state["old"].data == b"xy" and state["old"].limit == 1024


def after_revert(state, runtime):
    assert "limit" not in vars(state["m"].Part)

"""Case 76: two lambdas with the same code in one module (``'tag'`` and ``'sq'``), of
which the fix changes the second. The engine matched a live function to the first
baseline candidate with its code, so a reference to ``'sq'`` kept from before the patch
got ``'tag'``'s fixed code (unchanged) and kept answering as v1 (generated seeds 1413,
1908: silent). Identical candidates are now told apart by their place in the source:
first line and, on 3.11+, columns (same line without columns: refused, tested in
tests/runtime/engine/test_verify.py)."""


def setup():
    from c76_app import ops

    return {"m": ops, "kept": ops.OPS["sq"], "tag": ops.OPS["tag"]}


def observe(state):
    return [state["m"].OPS["sq"](3), state["kept"](3), state["tag"](3),
            state["m"].OPS["tag"](3), state["m"].OPS["dbl"](3)]

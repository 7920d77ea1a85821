"""Case 32: uploads.HARD_CAP = MAX_UPLOAD * 2 is computed at import from a constant imported
from limits, which the patch lowers. uploads.MAX_UPLOAD is rebound, but HARD_CAP keeps the
value computed from the old one; a fresh v2 process has 20 (found by tests/generated,
seeds 36 and 211; there the importing module was changed too, with the same result).
"""

SIZES = [5, 50, 500]


def setup():
    from c32_app import uploads

    return {"uploads": uploads}


def observe(state):
    uploads = state["uploads"]
    return {"hard_cap": uploads.HARD_CAP, "accept": [uploads.accept(s) for s in SIZES]}

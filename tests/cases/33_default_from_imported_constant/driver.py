"""Case 33: uploads.accept(size, cap=MAX_UPLOAD) took its default from a constant imported
from limits, which the patch lowers. uploads.MAX_UPLOAD is rebound but the default is not
evaluated again (it is when the constant lives in the same module: case 09); a fresh v2
process rejects 50 (found while reducing tests/generated seeds 36 and 211).
"""

SIZES = [5, 50, 500]


def setup():
    from c33_app import uploads

    return {"uploads": uploads}


def observe(state):
    uploads = state["uploads"]
    return {"accept": [uploads.accept(s) for s in SIZES], "imported": uploads.MAX_UPLOAD}

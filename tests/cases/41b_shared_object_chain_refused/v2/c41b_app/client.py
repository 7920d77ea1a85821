from c41b_app.base import SCHEMES

SCHEMES += ["https"]


def allowed(scheme):
    return scheme in SCHEMES

from c41b_app.base import SCHEMES

SCHEMES += ["ftp"]


def allowed(scheme):
    return scheme in SCHEMES

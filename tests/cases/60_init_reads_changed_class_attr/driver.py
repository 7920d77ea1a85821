"""Case 60: ``DEFAULT = Policy(3)`` where ``Policy.__init__`` is unchanged but copies a
class attribute through ``self.`` (``self.max_redirects = self.MAX_REDIRECTS``), and the
fix lowers ``MAX_REDIRECTS`` at class level (the shape of a redirect-loop / SSRF fix:
urllib3's ``Retry.DEFAULT``, requests' ``Session.max_redirects``). A fresh v2 import
builds DEFAULT with the new limit; every default code path (``follow(n)``) goes through
DEFAULT, so a patch that changes the class attribute but keeps the old DEFAULT leaves the
process open while saying "applied".
"""


def setup():
    from c60_app import client

    return {"m": client}


def observe(state):
    m = state["m"]
    return {
        "class_limit": m.Policy.MAX_REDIRECTS,
        "default_limit": m.DEFAULT.max_redirects,
        "new_limit": m.Policy().max_redirects,
        "follow_default": [m.follow(n) for n in (3, 10, 25)],
        "follow_new_policy": [m.follow(n, m.Policy()) for n in (3, 10, 25)],
    }

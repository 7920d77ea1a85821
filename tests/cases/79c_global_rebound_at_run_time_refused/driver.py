"""Case 79c (gen_objects.py, pattern global-rebound): v2 sets self.limit = LIMIT, and the
application rebinds LIMIT (configure()) after building its box. The box's right limit is
LIMIT as it was when the box was built, which no one knows now: not derived; the apply
refuses while the box lives (SUT-E209)."""


def setup():
    from c79c_app import lim
    box = lim.Box()          # built while LIMIT is 2
    lim.configure(5)         # the application reconfigures later
    return {"mod": lim, "box": box}


def observe(state):
    box = state["box"]
    out = [box.put(i) for i in range(4)]
    box.items[:] = []
    return out

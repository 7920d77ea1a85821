"""Case 70b: like case 70, an unchanged module (``checks``) built state at import from a
constant the fix changes, but by a module-level call (``register(MAX_BODY)`` appends to
``_LIMITS``), which the engine does not run again. The builder carries ``checks`` (its
state differs between the releases); after the commit its ``_LIMITS`` still holds the old
limit, so the state check refuses the patch (SUT-E208) and rolls it back: the process
keeps behaving as the vulnerable version, never "applied" while ``allowed()`` still
accepts 512 MiB."""


def setup():
    from c70b_app import checks
    return {"checks": checks}


def observe(state):
    return {"allowed_512MiB": state["checks"].allowed(512 << 20),
            "limits": list(state["checks"]._LIMITS)}

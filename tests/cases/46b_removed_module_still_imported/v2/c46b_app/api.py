def version():
    return "v2"


def fallback():
    from c46b_app import legacy   # still imported, though the release no longer ships it
    return legacy.old_helper()

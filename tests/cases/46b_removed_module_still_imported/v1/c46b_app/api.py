def version():
    return "v1"


def fallback():
    from c46b_app import legacy
    return legacy.old_helper()

def old_helper():
    return "legacy"

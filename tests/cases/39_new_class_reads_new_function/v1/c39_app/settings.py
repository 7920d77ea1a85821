def validate_int(value):
    return int(value)


class Workers:
    name = "workers"
    validator = validate_int


SETTINGS = {cls.name: cls for cls in (Workers,)}


def check(name, value):
    setting = SETTINGS.get(name)
    return "unknown" if setting is None else setting.validator(value)

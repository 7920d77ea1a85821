def validate_int(value):
    return int(value)


def validate_mode(value):
    if value not in ("drop", "refuse"):
        raise ValueError(f"bad mode {value!r}")
    return value


MODES = [m.lower() for m in ("DROP", "REFUSE")]
CHECKED = [validate_mode(m) for m in MODES]


class Workers:
    name = "workers"
    validator = validate_int


class HeaderMap:
    name = "header_map"
    validator = validate_mode
    choices = tuple(CHECKED)
    doc = f"one of {', '.join(MODES)}"


SETTINGS = {cls.name: cls for cls in (Workers, HeaderMap)}


def check(name, value):
    setting = SETTINGS.get(name)
    return "unknown" if setting is None else setting.validator(value)

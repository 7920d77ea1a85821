_state_vars = {}
_finders = None


def _declare_state(vartype, **kw):
    globals().update(kw)
    _state_vars.update(dict.fromkeys(kw, vartype))


def register_finder(kind, finder):
    _finders[kind] = finder


def find(kind, path):
    finder = _finders.get(kind)
    return finder(path) if finder else None


def find_in_dir(path):
    return "dir:" + path


def find_in_zip(path):
    return "zip:" + path


_declare_state("dict", _finders={})
register_finder("dir", find_in_dir)
register_finder("zip", find_in_zip)

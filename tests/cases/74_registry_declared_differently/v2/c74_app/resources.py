_state_vars = {}


def _declare_state(vartype, varname, initial_value):
    _state_vars[varname] = vartype
    return initial_value


_finders = _declare_state("dict", "_finders", {})


def register_finder(kind, finder):
    _finders[kind] = finder


def find(kind, path):
    finder = _finders.get(kind)
    if finder is None:
        return None
    if ".." in path:
        return "refused"
    return finder(path)


def find_in_dir(path):
    return "dir:" + path


def find_in_zip(path):
    return "zip:" + path


register_finder("dir", find_in_dir)
register_finder("zip", find_in_zip)

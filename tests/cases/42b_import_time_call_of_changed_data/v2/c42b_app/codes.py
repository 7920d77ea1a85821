_codes = {200: ("ok",), 425: ("unordered", "too_early")}


class Lookup:
    pass


codes = Lookup()


def _init():
    for code, titles in _codes.items():
        for title in titles:
            setattr(codes, title, code)


_init()

lazy import colorsys


def norm(tag):
    return tag.lower() + ("" if colorsys.ONE_THIRD else "?")

lazy import wave   # never used: a proxy in a patched module's dict, unloaded
lazy import colorsys


def norm(tag):
    return tag.lower() + ("" if colorsys.ONE_THIRD else "?")


def unused():
    return wave.open

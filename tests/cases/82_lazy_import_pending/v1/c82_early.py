lazy import wave   # never used: a proxy in a patched module's dict, unloaded
def norm(tag):
    return tag


def unused():
    return wave.open

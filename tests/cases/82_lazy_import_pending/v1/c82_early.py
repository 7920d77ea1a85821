def norm(tag):
    return tag

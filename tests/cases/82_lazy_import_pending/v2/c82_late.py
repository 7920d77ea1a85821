def safe(p):
    return ".." not in p and not p.startswith("/")

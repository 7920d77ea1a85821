def parse(s):
    return s.strip()

def parse(s):
    return s.strip().replace("\\x00", "")

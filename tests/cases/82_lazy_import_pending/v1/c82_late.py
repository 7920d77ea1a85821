def safe(p):
    return "../" not in p

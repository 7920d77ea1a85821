def clean(s, limit):
    return s.strip()[:limit]

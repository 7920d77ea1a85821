"""Body and header limits."""


def read_body(data, max_len=1000):
    if len(data) > max_len:
        return "413"
    return "ok:%d" % len(data)


def parse_headers(raw, *, max_headers=50, sep=":"):
    lines = [line for line in raw.split("\n") if line]
    if len(lines) > max_headers:
        return "431"
    return dict(line.split(sep, 1) for line in lines)

"""Case 02: a positional default and a keyword-only default change."""


def setup():
    from c02_app import limits

    # A reference taken before the patch must see the new defaults too.
    return {"limits": limits, "read_body": limits.read_body,
            "parse_headers": limits.parse_headers}


def observe(state):
    lim = state["limits"]
    raw = "\n".join("h%d:v%d" % (i, i) for i in range(6))
    return {
        "body": [lim.read_body("x" * n) for n in (50, 500, 5000)],
        "body_ref": state["read_body"]("x" * 500),
        "body_explicit": lim.read_body("x" * 500, max_len=10000),
        "headers_few": lim.parse_headers("a:1\nb:2"),
        "headers_many": lim.parse_headers(raw),
        "headers_ref": state["parse_headers"](raw),
        "headers_explicit": lim.parse_headers(raw, max_headers=100),
    }

"""Case 08: property getter, classmethod and staticmethod bodies change."""


def setup():
    from c08_app import upload

    return {
        "mod": upload,
        "uploads": [upload.Upload("../../etc/passwd", 10),
                    upload.Upload(" report.pdf ", 5000000)],
        "factory": upload.Upload.from_header,
        "limit": upload.Upload.max_size,
    }


def _from_header(factory, header):
    try:
        u = factory(header)
    except ValueError as exc:
        return "error: %s" % exc
    return [u.safe_name, u.size]


def observe(state):
    cls = state["mod"].Upload
    headers = ["a.txt;12", "evil\r\nSet-Cookie: x;1"]
    return {
        "safe_name": [u.safe_name for u in state["uploads"]],
        "accepted": [u.accepted() for u in state["uploads"]],
        "max_size": [cls.max_size(), state["uploads"][0].max_size(), state["limit"]()],
        "from_header": [_from_header(cls.from_header, h) for h in headers],
        "from_header_ref": [_from_header(state["factory"], h) for h in headers],
    }

"""Credentials for outgoing requests."""

_SENSITIVE = ("authorization", "cookie", "proxy-authorization")


def strip_credentials(headers, same_origin):
    if same_origin:
        return dict(headers)
    return {k: v for k, v in headers.items() if k.lower() not in _SENSITIVE}

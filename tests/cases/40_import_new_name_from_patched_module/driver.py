"""Case 40: module parser imports a name that the same patch adds to module errors
(gunicorn 22's UnsupportedTransferCoding, found by the CVE harness). The import must run
after errors has the new class, whichever order the modules are prepared in; while a
newly imported name that errors already has (Described, a new base of Handler, like
Pygments 2.15.1's DelegatingLexer) must be there for the early evaluation."""


def setup():
    from c40_app import parser

    return {"m": parser}


def observe(state):
    out = []
    for header in ("gzip, chunked", "rot13, chunked", "chunked, gzip"):
        try:
            out.append(state["m"].codings(header))
        except ValueError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return {"results": out, "describe": state["m"].describe()}

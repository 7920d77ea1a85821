"""PEP 810: the application imports its helpers lazily; each is loaded at first use."""
lazy import c82_early
lazy import c82_parser
lazy from c82_rules import allowed
lazy import c82_late


def early(tag):
    return c82_early.norm(tag)


def handle(raw, n):
    return {"parsed": c82_parser.parse(raw), "allowed": allowed(n)}


def late(path):
    return c82_late.safe(path)

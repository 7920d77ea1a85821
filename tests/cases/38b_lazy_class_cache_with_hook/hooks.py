"""Hooks for case 38b: recompute what the metaclass compiled from ``rules``."""

import re


def _recompile(ctx):
    lexers = ctx.module("c38b_app.lexers")
    for cls in (lexers.PropertiesLexer, lexers.StrictProperties):
        if "_compiled" in cls.__dict__:
            cls._compiled = [(re.compile(p), kind) for p, kind in cls.rules]


post_apply = _recompile
post_revert = _recompile

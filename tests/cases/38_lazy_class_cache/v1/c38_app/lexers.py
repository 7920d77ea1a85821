import re


class LexerMeta(type):
    """Compiles ``rules`` into ``_compiled`` on first instantiation, like Pygments."""

    def __call__(cls, *args, **kwargs):
        if "_compiled" not in cls.__dict__:
            cls._compiled = [(re.compile(p), kind) for p, kind in cls.rules]
        return type.__call__(cls, *args, **kwargs)


class Lexer(metaclass=LexerMeta):
    rules = []

    def kinds(self, text):
        out = []
        for word in text.split():
            out.append(next((k for rx, k in self._compiled if rx.fullmatch(word)), "?"))
        return out


class PropertiesLexer(Lexer):
    rules = [(r"[a-z]+=.*", "pair"), (r"[a-z]+", "key")]


class StrictProperties(PropertiesLexer):
    pass


class OwnRules(PropertiesLexer):
    rules = [(r".*", "any")]

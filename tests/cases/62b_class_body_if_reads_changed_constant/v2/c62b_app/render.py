"""Attribute quoting for an HTML renderer."""

import html

STRICT_QUOTING = True


class Quoter:
    strict = STRICT_QUOTING

    if strict:
        def quote(self, value):
            return html.escape(value, quote=True)
    else:
        def quote(self, value):
            return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if STRICT_QUOTING:
    def quote_text(value):
        return html.escape(value, quote=True)
else:
    def quote_text(value):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attribute(name, value):
    return '%s="%s"' % (name, Quoter().quote(value))

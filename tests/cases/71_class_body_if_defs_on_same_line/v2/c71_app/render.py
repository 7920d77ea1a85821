"""Attribute quoting for an HTML renderer.

Values are quoted with ``html.escape``, quotes included: a value cannot end its attribute.
"""

import html


class Quoter:
    if hasattr(html, "escape"):
        def quote(self, value):
            return html.escape(value, quote=True)
    else:
        def quote(self, value):
            return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attribute(name, value):
    return '%s="%s"' % (name, Quoter().quote(value))

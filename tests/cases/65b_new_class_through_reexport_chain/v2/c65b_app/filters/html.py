"""HTML escaping filter (new in the fixed release)."""

import html


class Escaper:
    def __init__(self, quote=True):
        self.quote = quote

    def __call__(self, value):
        return html.escape(value, quote=self.quote)

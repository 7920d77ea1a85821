"""SQL fragments."""


class Fragment:
    def __init__(self, text):
        self.text = text

    def render(self):
        return self.text

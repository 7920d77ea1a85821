"""A connection that 2.0 gives a handshake flag (cases 77b, 77c)."""


class Conn:
    def __init__(self, peer):
        self.peer = peer
        self.log = []
        self._greeted = False

    def hello(self):
        self.log.append("hello")
        self._greeted = True
        return "ok"

    def packet(self, data):
        if not self._greeted:
            return "refused: no hello"
        self.log.append(data)
        return "took " + data

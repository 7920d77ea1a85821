"""A connection that 2.0 gives a handshake flag (cases 77b, 77c)."""


class Conn:
    def __init__(self, peer):
        self.peer = peer
        self.log = []

    def hello(self):
        self.log.append("hello")
        return "ok"

    def packet(self, data):
        self.log.append(data)
        return "took " + data

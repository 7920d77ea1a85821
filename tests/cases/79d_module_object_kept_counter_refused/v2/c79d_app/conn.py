class Conn:
    def __init__(self):
        self.log = []
        self.sent = 0

    def send(self, x):
        self.log.append(x)
        self.sent += 1
        return len(self.log)


DEFAULT = Conn()

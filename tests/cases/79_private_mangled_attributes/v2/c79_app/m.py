import threading


class Box:
    def __init__(self):
        self.items = []
        self.__guard = threading.Lock()
        self.__cap = 2

    def put(self, x):
        with self.__guard:
            if len(self.items) >= self.__cap:
                return "full"
            self.items.append(x)
            return len(self.items)

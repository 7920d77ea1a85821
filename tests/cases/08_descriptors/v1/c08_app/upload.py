"""Uploaded file metadata."""


class Upload:
    def __init__(self, name, size):
        self.name = name
        self.size = size

    @property
    def safe_name(self):
        return self.name.strip()

    @classmethod
    def from_header(cls, header):
        name, _, size = header.partition(";")
        return cls(name, int(size or 0))

    @staticmethod
    def max_size():
        return 10000000

    def accepted(self):
        return self.size <= self.max_size()

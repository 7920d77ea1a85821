"""Uploaded file metadata."""


class Upload:
    def __init__(self, name, size):
        self.name = name
        self.size = size

    @property
    def safe_name(self):
        return self.name.strip().replace("/", "_").replace("\\", "_").lstrip(".")

    @classmethod
    def from_header(cls, header):
        name, _, size = header.partition(";")
        if "\r" in name or "\n" in name:
            raise ValueError("bad header")
        return cls(name, int(size or 0))

    @staticmethod
    def max_size():
        return 1000000

    def accepted(self):
        return self.size <= self.max_size()

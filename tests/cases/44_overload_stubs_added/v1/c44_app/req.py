import typing as t


class Request:
    def __init__(self, body):
        self.body = body

    def get_json(self, silent=False):
        if not self.body.startswith("{"):
            if silent:
                return None
            raise ValueError("not json")
        return {"raw": self.body}

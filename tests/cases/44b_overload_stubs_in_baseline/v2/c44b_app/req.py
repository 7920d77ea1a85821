import typing as t


class Request:
    def __init__(self, body):
        self.body = body

    @t.overload
    def get_json(self, silent: "t.Literal[False]" = ...) -> t.Any:
        ...

    @t.overload
    def get_json(self, silent: bool = ...) -> t.Optional[t.Any]:
        ...

    def get_json(self, silent=False):
        if not self.body.strip().startswith("{"):
            if silent:
                return None
            raise ValueError("not json")
        return {"raw": self.body.strip(), "checked": True}

"""Handler registry (unchanged between versions)."""


class Registry:
    def __init__(self):
        self._routes = {}

    def register(self, name, handler_cls, require_auth=False):
        self._routes[name] = (handler_cls, require_auth)

    def dispatch(self, name, user):
        handler_cls, require_auth = self._routes[name]
        if require_auth and user is None:
            return "401"
        return handler_cls().handle(user)

    def describe(self):
        return {name: [cls.__name__, auth] for name, (cls, auth) in sorted(self._routes.items())}


REGISTRY = Registry()

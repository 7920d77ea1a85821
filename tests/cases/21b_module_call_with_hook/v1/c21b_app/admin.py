"""Admin panel."""

from c21b_app.registry import REGISTRY


class AdminHandler:
    def handle(self, user):
        return "admin panel for %s" % (user or "anonymous")


class StatusHandler:
    def handle(self, user):
        return "ok"


REGISTRY.register("admin", AdminHandler)
REGISTRY.register("status", StatusHandler)

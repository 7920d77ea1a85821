"""Case 07: SafeHandler.handle uses super() and __class__ (a __class__ cell).

Instances, including one of a subclass in another module, exist before the patch.
"""

PATHS = ["docs/a.txt", "docs/../../etc/passwd"]


def setup():
    from c07_app import audit, handlers

    return {"safe": handlers.SafeHandler(), "audited": audit.AuditedHandler(),
            "bound": audit.AuditedHandler().handle, "audit": audit}


def observe(state):
    return {
        "safe": [state["safe"].handle(p) for p in PATHS],
        "audited": [state["audited"].handle(p) for p in PATHS],
        "bound": [state["bound"](p) for p in PATHS],
        "new": [state["audit"].AuditedHandler().handle(p) for p in PATHS],
    }

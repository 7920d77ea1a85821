"""In-memory session store."""


class SessionStore:
    def __init__(self):
        self.sessions = {}

    def add(self, sid, user):
        self.sessions[sid] = user
        return True

    def drop(self, sid):
        self.sessions.pop(sid, None)

    def lookup(self, sid):
        return self.sessions.get(sid)

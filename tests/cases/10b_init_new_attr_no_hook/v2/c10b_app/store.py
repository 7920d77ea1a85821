"""In-memory session store."""


class SessionStore:
    def __init__(self, max_sessions=3):
        self.sessions = {}
        self.max_sessions = max_sessions

    def is_full(self):
        return len(self.sessions) >= self.max_sessions

    def add(self, sid, user):
        if sid not in self.sessions and self.is_full():
            return False
        self.sessions[sid] = user
        return True

    def drop(self, sid):
        self.sessions.pop(sid, None)

    def lookup(self, sid):
        return self.sessions.get(sid)

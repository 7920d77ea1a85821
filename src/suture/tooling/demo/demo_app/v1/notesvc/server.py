"""HTTP routes, sessions and the hit counter.

GET  /files/NAME   a file from the served directory
POST /login        {"user": NAME} -> {"session": TOKEN}
POST /notes        {"text": TEXT}, with header X-Session: TOKEN
GET  /notes        the session's notes (X-Session: TOKEN)
GET  /stats        {"hits": N, "sessions": N}
"""

import json
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import files


class Store:
    """Everything the service remembers; it lives in memory only."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = 0
        self.sessions = {}  # token -> {"user": str, "notes": [str]}

    def hit(self):
        with self.lock:
            self.hits += 1

    def login(self, user):
        token = secrets.token_hex(8)
        with self.lock:
            self.sessions[token] = {"user": user, "notes": []}
        return token

    def session(self, token):
        with self.lock:
            return self.sessions.get(token)

    def stats(self):
        with self.lock:
            return {"hits": self.hits, "sessions": len(self.sessions)}


STORE = Store()


class Handler(BaseHTTPRequestHandler):
    server_version = "notesvc"

    def do_GET(self):
        STORE.hit()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/files/"):
            return self.send_file(urllib.parse.unquote(path[len("/files/"):]))
        if path == "/notes":
            session = self.current_session()
            if session is None:
                return self.send_json(401, {"error": "log in first"})
            with STORE.lock:
                notes = list(session["notes"])
            return self.send_json(200, {"user": session["user"], "notes": notes})
        if path == "/stats":
            return self.send_json(200, STORE.stats())
        self.send_json(404, {"error": "no such route"})

    def do_POST(self):
        STORE.hit()
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        except ValueError:
            return self.send_json(400, {"error": "the body must be JSON"})
        if path == "/login":
            return self.send_json(200, {"session": STORE.login(str(body.get("user", "")))})
        if path == "/notes":
            session = self.current_session()
            if session is None:
                return self.send_json(401, {"error": "log in first"})
            with STORE.lock:
                session["notes"].append(str(body.get("text", "")))
            return self.send_json(201, {"ok": True})
        self.send_json(404, {"error": "no such route"})

    def current_session(self):
        return STORE.session(self.headers.get("X-Session", ""))

    def send_file(self, name):
        try:
            with open(files.resolve(self.server.root, name), "rb") as f:
                data = f.read()
        except PermissionError:
            return self.send_body(403, b"forbidden\n", "text/plain")
        except OSError:
            return self.send_body(404, b"not found\n", "text/plain")
        self.send_body(200, data, "application/octet-stream")

    def send_json(self, status, obj):
        self.send_body(status, json.dumps(obj).encode() + b"\n", "application/json")

    def send_body(self, status, data, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # quiet: no access log on stderr


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root, host, port):
        super().__init__((host, port), Handler)
        self.root = root
        self.url = f"http://{host}:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, name="notesvc", daemon=True)

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join()


def start(root, host="127.0.0.1", port=0):
    """Serve ``root`` on a background thread; returns the server (see ``.url``, ``.stop()``)."""
    server = Server(root, host, port)
    server.thread.start()
    return server

"""A real Apache with mod_wsgi serving a Flask application, for tests/e2e/test_modwsgi.py.

scripts/get-apache.sh installs Debian's apache2 and apache2-dev (apt, root, when missing) and
builds mod_wsgi from PyPI against the running test lane's CPython, in a world-readable
cached copy of that CPython (the daemon process runs as uid 65534: mod_wsgi refuses root).

The server is Apache's own binary with a configuration this module writes in a temporary
directory (its own ServerRoot, PidFile, ErrorLog, a high loopback port, only the modules it
needs), run with -DFOREGROUND as our child. The application runs in **daemon mode**
(``WSGIDaemonProcess``, one process, several threads) in mod_wsgi's **default application
group** (``%{RESOURCE}``: a sub-interpreter per application, created at its first request),
which is how most mod_wsgi sites run. A ``Load`` keeps several keep-alive clients busy and
counts every request that did not get a well-formed answer.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
GET_APACHE = REPO / "scripts" / "get-apache.sh"
APACHE = "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
DAEMON_UID = 65534          # nobody: the daemon process's uid and gid
PKG = "sutwebdemo"          # the application's own package, which the patch fixes

# The vulnerable helper (v1) and its fix (v2): escape() forgot "<", so a query parameter
# echoed into the page can open a tag (cross-site scripting).
HTMLUTIL = {
    "v1": 'def escape(s):\n'
          '    return s.replace("&", "&amp;").replace(">", "&gt;").replace(\'"\', "&quot;")\n',
    "v2": 'def escape(s):\n'
          '    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")\n'
          '            .replace(\'"\', "&quot;"))\n',
}

WEBAPP = textwrap.dedent('''\
    import os
    import sys

    from flask import Flask, jsonify, request

    from sutwebdemo.htmlutil import escape      # a reference the patch must reach too

    try:
        import _interpreters as _interp
    except ImportError:
        import _xxsubinterpreters as _interp


    def interpreter_id():
        current = _interp.get_current()
        return int(current[0] if isinstance(current, tuple) else current)


    app = Flask(__name__)


    @app.route("/greet")
    def greet():
        name = request.args.get("name", "")
        return jsonify(html="<p>Hello, %s</p>" % escape(name), interpreter=interpreter_id(),
                       pid=os.getpid(), site="site" in sys.modules)
''')

WSGI = textwrap.dedent('''\
    import sys
    sys.path.insert(0, {root!r})
    from webapp import app as application
''')

# Loaded into the daemon's main interpreter when asked (Apache(main_thread=True)).
MAIN_THREAD = textwrap.dedent('''\
    import threading
    import time


    def tick():
        while True:
            time.sleep(0.05)


    threading.Thread(target=tick, name="main-interpreter-tick", daemon=True).start()
''')

CONF = """\
ServerRoot "{root}"
DefaultRuntimeDir "{root}"
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel info
Listen 127.0.0.1:{port}
ServerName 127.0.0.1:{port}
User #{uid}
Group #{uid}
Timeout 30
CoreDumpDirectory "{root}/core"
KeepAliveTimeout 30
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadFile "{libpython}"
LoadModule wsgi_module "{mod_wsgi}"
WSGIPythonHome "{prefix}"
WSGIRestrictEmbedded On
WSGISocketPrefix "{root}/wsgi"
WSGIDaemonProcess app user=#{uid} group=#{uid} processes=1 threads={threads} \\
    display-name={display} home="{app}"
WSGIScriptAlias / "{app}/app.wsgi" process-group=app
{import_script}<Directory "{app}">
    Require all granted
</Directory>
"""


def why_not_here() -> str:
    """Why Apache with mod_wsgi cannot be set up here, or "" when it can be tried."""
    if not sys.platform.startswith("linux"):
        return "Apache + mod_wsgi test: Linux only"
    if os.geteuid() != 0 and not (os.path.exists(APACHE) and shutil.which("apxs")):
        return ("Apache + mod_wsgi test: apache2 and apache2-dev are not installed and only "
                "root may install them (scripts/get-apache.sh --apt); the daemon also needs "
                "root to run as another uid")
    if os.geteuid() != 0:
        return "Apache + mod_wsgi test: needs root (the daemon process runs as uid 65534)"
    return ""


def prepare(python: str = sys.executable) -> Path:
    """The cached CPython prefix with mod_wsgi and Flask for ``python`` (get-apache.sh)."""
    proc = subprocess.run(["bash", str(GET_APACHE), python], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"scripts/get-apache.sh failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_app(app: Path, htmlutil: str) -> None:
    """The Flask application (world-readable: the daemon runs as uid 65534)."""
    pkg = app / PKG
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "htmlutil.py").write_text(htmlutil, encoding="utf-8")
    (app / "webapp.py").write_text(WEBAPP, encoding="utf-8")
    (app / "app.wsgi").write_text(WSGI.format(root=str(app)), encoding="utf-8")
    (app / "main_thread.py").write_text(MAIN_THREAD, encoding="utf-8")
    for p in [app, *app.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


class Apache:
    """One Apache (our child, -DFOREGROUND) with one mod_wsgi daemon process."""

    def __init__(self, base: Path, prefix: Path, app: Path, env: Dict[str, str],
                 threads: int = 8, main_thread: bool = False) -> None:
        """``main_thread``: also keep a Python thread busy in the daemon's *main*
        interpreter (``WSGIImportScript`` in ``%{GLOBAL}``, as sites that preload code do);
        without it no thread ever runs Python there after start-up."""
        self.main_thread = main_thread
        self.root = base / "httpd"
        self.root.mkdir(mode=0o755)
        # A daemon process that dropped root is not dumpable, and the kernel refuses to let
        # anyone but root ptrace it; `suture attach` acts as the daemon's uid (never root) so
        # it would be refused. mod_wsgi (like Apache's own children) makes its daemon
        # dumpable again when CoreDumpDirectory is configured: the documented switch.
        (self.root / "core").mkdir(mode=0o700)
        os.chown(self.root / "core", DAEMON_UID, DAEMON_UID)
        self.port = free_port()
        self.display = f"sutwsgi-{self.port}"     # argv[0] of the daemon (17 chars at most)
        self.conf = self.root / "httpd.conf"
        libs = sorted(prefix.rglob("libpython*.so.1.0"))
        mods = sorted(prefix.rglob("mod_wsgi-py*.so"))
        assert libs and mods, f"no libpython or mod_wsgi in {prefix}"
        self.conf.write_text(CONF.format(
            root=self.root, port=self.port, uid=DAEMON_UID, modules=MODULES,
            libpython=libs[0], mod_wsgi=mods[0], prefix=prefix, app=app, threads=threads,
            display=self.display, import_script=(
                f'WSGIImportScript "{app}/main_thread.py" process-group=app '
                'application-group=%{GLOBAL}\n' if main_thread else "")), encoding="utf-8")
        self.env = env
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 30.0) -> None:
        check = subprocess.run([APACHE, "-t", "-f", str(self.conf)], capture_output=True,
                               text=True, env=self.env)
        if check.returncode != 0 and "GLIBC_" in check.stderr:
            # scripts/get-python.sh's 3.14/3.15 are Debian sid's builds, linked against sid's
            # glibc; bookworm's Apache (and its libc) cannot load that libpython.
            pytest.skip("this CPython's libpython needs a newer glibc than the system's Apache "
                        f"runs with: {check.stderr.strip()}")
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([APACHE, "-DFOREGROUND", "-f", str(self.conf)],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"apache exited: {self.proc.stderr.read()}" \
                                             f"\n{self.log()}"
            try:
                status, body = self.get("/greet?name=ready")
                if status == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"apache never answered:\n{self.log()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # graceful stop: children first
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log(self) -> str:
        try:
            return (self.root / "error.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def get(self, path: str) -> "tuple[int, bytes]":
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def greet(self, name: str) -> Dict[str, Any]:
        from urllib.parse import quote
        status, body = self.get(f"/greet?name={quote(name)}")
        assert status == 200, (status, body)
        return dict(json.loads(body))

    def daemon_pid(self) -> int:
        """The mod_wsgi daemon process: Apache's child whose argv[0] is our display-name."""
        assert self.proc is not None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except OSError:
                continue
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
            if ppid == self.proc.pid and argv0.startswith(self.display.encode()):
                found.append(int(entry))
        assert len(found) == 1, f"daemon processes of {self.display}: {found}"
        return found[0]


class Load:
    """``clients`` keep-alive HTTP clients asking /greet without pause, in threads.

    Every answer must be a 200 with the application's JSON from a sub-interpreter; anything
    else (a refused or reset connection, a 5xx, a body that is not that JSON) is a failure,
    kept with what went wrong. ``seen`` counts the distinct escaped outputs.
    """

    NAME = "<b>"

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.ok = 0
        self.failures: List[str] = []
        self.seen: Dict[str, int] = {}
        self.interpreters: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
                         for i in range(clients)]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        while not self._stop.is_set():
            try:
                conn.request("GET", "/greet?name=%3Cb%3E")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                data = json.loads(body)
                if not isinstance(data.get("interpreter"), int) or data["interpreter"] == 0:
                    raise RuntimeError(f"not served from a sub-interpreter: {data}")
                with self._lock:
                    self.ok += 1
                    self.seen[data["html"]] = self.seen.get(data["html"], 0) + 1
                    n = data["interpreter"]
                    self.interpreters[n] = self.interpreters.get(n, 0) + 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted, with its kind
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        conn.close()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` more requests succeeded (the load really runs)."""
        with self._lock:
            target = self.ok + count
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.ok >= target or self.failures:
                    return
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.02)

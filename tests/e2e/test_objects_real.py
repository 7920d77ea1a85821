"""Real security releases that add instance state read by their fix, patched live.

Three release pairs from PyPI (unmodified wheels in tests/data, see its README), each
fixing a vulnerability with a new attribute that ``__init__`` sets and the fixed methods
read, so that objects built before the patch lack it:

* pypdf 6.21.2 -> 6.21.3 (xref stream entry limit, #4269): ``PdfReader`` gains
  ``_xref_stream_maximum_entries`` (a new keyword's default: derived) and the counter
  ``_xref_stream_entry_count`` (needs a migration);
* pymdown-extensions 9.11 -> 10.0 (CVE-2023-32309, snippets path traversal):
  ``SnippetPreprocessor.restrict_base_path`` from the extension's config (needs a
  migration);
* asyncssh 2.14.1 -> 2.14.2 (CVE-2023-48795, Terrapin): ``SSHConnection._strict_kex``,
  a flag negotiated at the first key exchange (needs a migration).

A fourth, cbor2 5.7.1 -> 5.8.0 (CVE-2025-68131), adds its depth counters to ``__slots__``:
objects built before cannot gain a slot, so the builder refuses it (restart required).

Each target is a real process that imports the vulnerable release, builds the long-lived
objects an application would (a reader held open; a Markdown renderer; an SSH server and
a client connection), keeps a worker thread using them (load), and applies the patch in
process. Without a migration the apply is refused (SUT-E209) naming the class and the
attribute, and the objects keep working on the old code; with the hooks file of
tests/data/hooks the apply succeeds, the objects built before it keep working, the fix is
observed, and revert restores the old code. No run may leave an object raising.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from suture.tooling.build import BuildRefused, build_trees
from suture.tooling.build.sources import materialize

# Real releases in real processes, about 40 s per Python: run on the oldest, the middle and
# the newest (3.9, 3.11, 3.13) to keep CI under 45 minutes on two cores. The engine paths
# they exercise (derived state, migrations, frames of old callers) run on every version in
# the hard cases (77-79) and tests/test_generated_objects.py.
pytestmark = pytest.mark.skipif(sys.version_info[:2] not in ((3, 9), (3, 11), (3, 13)),
                                reason="heavy: real releases run on 3.9, 3.11 and 3.13 only "
                                "(CI's time budget)")

DATA = Path(__file__).resolve().parents[1] / "data"
HOOKS = DATA / "hooks"
SRC = Path(__file__).resolve().parents[2] / "src"

PAIRS = {
    "pypdf": ("pypdf-6.21.2-py3-none-any.whl", "pypdf-6.21.3-py3-none-any.whl", [],
              "pypdf_6_21_3.py"),
    "pymdownx": ("pymdown_extensions-9.11-py3-none-any.whl",
                 "pymdown_extensions-10.0-py3-none-any.whl",
                 ["Markdown-3.4.4-py3-none-any.whl"], "pymdownx_10_0.py"),
    # cryptography and typing_extensions, which asyncssh imports, come from the venv.
    "asyncssh": ("asyncssh-2.14.1-py3-none-any.whl", "asyncssh-2.14.2-py3-none-any.whl", [],
                 "asyncssh_2_14_2.py"),
}

# What the builder must say about the state each fix reads (module, kind, qualname).
STATE = {
    "pypdf": {("pypdf._reader", "instance state, derived", "PdfReader._xref_stream_maximum_entries"),
              ("pypdf._reader", "instance state, needs migration", "PdfReader._xref_stream_entry_count")},
    "pymdownx": {("pymdownx.snippets", "instance state, needs migration",
                  "SnippetPreprocessor.restrict_base_path")},
    "asyncssh": {("asyncssh.connection", "instance state, needs migration", "SSHConnection._strict_kex")},
}

# Shared by every target: apply/revert that report a refusal as data, and a worker
# thread that keeps calling ``use()`` on the pre-patch objects, recording any exception.
PRELUDE = '''
import json, sys, threading, time, traceback, warnings
warnings.filterwarnings("ignore")
import suture.runtime as rt
from suture.runtime.errors import SutureError

def attempt(fn, *a, **k):
    try:
        r = fn(*a, **k)
        return {"state": r.to_dict()["state"]}
    except SutureError as e:
        return {"code": e.code, "error": type(e).__name__, "message": e.message,
                "details": json.loads(json.dumps(e.details, default=str))}

class Load(threading.Thread):
    """Calls ``use`` in a loop until stopped; keeps every exception it sees. (Without a
    pause between calls, a pure-Python pypdf loop that logs to stderr starved the apply
    thread of the GIL: the apply took 150 s instead of about 2 s; issue 19's subject.)"""
    def __init__(self, use):
        super().__init__(daemon=True)
        self.use, self.calls, self.errors = use, 0, []
        self.stop = threading.Event()
    def run(self):
        while not self.stop.is_set():
            try:
                self.use()
            except BaseException:
                self.errors.append(traceback.format_exc(limit=-3))
            self.calls += 1
            time.sleep(0.0005)   # a busy client, not a spinning one: see the note below
    def wait_calls(self, n):
        target = self.calls + n
        deadline = time.monotonic() + 30
        while self.calls < target and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.005)
        return self.calls >= target

def lifecycle(patch_path, observe, load):
    """before -> apply under load -> after -> revert under load -> reverted."""
    out = {"before": observe()}
    load.start()
    assert load.wait_calls(3)
    patch = rt.load_patch(open(patch_path, "rb").read())
    out["apply"] = attempt(rt.apply, patch)
    out["load_after_apply"] = load.wait_calls(5)
    out["after"] = observe()
    if out["apply"].get("state") == "applied":
        out["revert"] = attempt(rt.revert, patch.id)
        if out["revert"].get("code") == "SUT-E209":   # state the fixed code kept: named
            out["revert_refused"] = sorted(o["attribute"]
                                           for o in out["revert"]["details"]["objects"])
            out["revert"] = attempt(lambda pid: rt.revert(pid, force=True), patch.id)
        out["load_after_revert"] = load.wait_calls(5)
        out["reverted"] = observe()
    load.stop.set()
    load.join(30)
    out["load_calls"], out["load_errors"] = load.calls, load.errors
    return out
'''

PYPDF = PRELUDE + '''
import io
import pypdf

def build_pdf(text):
    """A 1-page PDF whose cross-reference section is an (uncompressed) XRef stream."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            None,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    content = b"BT /F1 12 Tf 20 100 Td (" + text.encode() + b") Tj ET"
    objs[3] = b"<< /Length %d >>\\nstream\\n" % len(content) + content + b"\\nendstream"
    out = bytearray(b"%PDF-1.5\\n")
    offs = []
    for i, o in enumerate(objs, 1):
        offs.append(len(out))
        out += b"%d 0 obj\\n" % i + o + b"\\nendobj\\n"
    xref_off = len(out)
    rows = bytes([0, 0, 0, 255]) + b"".join(bytes([1]) + off.to_bytes(2, "big") + b"\\0"
                                            for off in offs) \\
        + bytes([1]) + xref_off.to_bytes(2, "big") + b"\\0"
    out += (b"6 0 obj\\n<< /Type /XRef /Size 7 /W [1 2 1] /Root 1 0 R /Length %d >>\\nstream\\n"
            % len(rows) + rows + b"\\nendstream\\nendobj\\nstartxref\\n%d\\n%%%%EOF\\n" % xref_off)
    return bytes(out)

PDF = build_pdf("Hello reader")
reader = pypdf.PdfReader(io.BytesIO(PDF))          # built before the patch, held open
lock = threading.Lock()

def use():
    with lock:                                     # a PdfReader is not thread-safe
        reader.read(io.BytesIO(PDF))               # the fixed xref-stream path
        return reader.pages[0].extract_text()

def limited():
    """A new reader with a limit below the document's 7 entries: the fix's new knob."""
    try:
        pypdf.PdfReader(io.BytesIO(PDF), xref_stream_maximum_entries=3)
        return "read"
    except Exception as e:
        return type(e).__name__ + ": " + str(e)

def observe():
    with lock:
        d = dict(reader.__dict__)
    return {"text": use(), "version": pypdf.__version__, "limited": limited(),
            "count": d.get("_xref_stream_entry_count"),
            "maximum": d.get("_xref_stream_maximum_entries")}

print(json.dumps(lifecycle(sys.argv[1], observe, Load(use))))
'''

PYMDOWNX = PRELUDE + '''
import os
import markdown, pymdownx

ROOT = sys.argv[2]
DOCS = os.path.join(ROOT, "docs")
# A docs/wiki service's renderer, built once at startup.
md = markdown.Markdown(extensions=["pymdownx.snippets"],
                       extension_configs={"pymdownx.snippets": {"base_path": [DOCS]}})
lock = threading.Lock()

def render(m, src):
    with lock:                                     # a Markdown instance is not thread-safe
        m.reset()
        return m.convert(src)

def use():
    html = render(md, '--8<-- "note.md"')
    if html != "<p>Release notes</p>":
        raise AssertionError(html)

def observe():
    fresh = markdown.Markdown(extensions=["pymdownx.snippets"],
                              extension_configs={"pymdownx.snippets": {"base_path": [DOCS]}})
    return {"note": render(md, '--8<-- "note.md"'),
            "traversal": render(md, '--8<-- "../secret.txt"'),
            "fresh_traversal": render(fresh, '--8<-- "../secret.txt"'),
            "attrs": sorted(vars(md.preprocessors["snippet"])),
            "version": pymdownx.__version__}

print(json.dumps(lifecycle(sys.argv[1], observe, Load(use))))
'''

ASYNCSSH = PRELUDE + '''
import asyncio
import asyncssh

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
servers = []                                       # server-side SSHServerConnection objects

class EchoServer(asyncssh.SSHServer):
    def connection_made(self, conn):
        servers.append(conn)
    def begin_auth(self, username):
        return False                               # no authentication

async def handle(process):
    cmd = process.command or ""
    process.stdout.write(cmd[5:] + "\\n" if cmd.startswith("echo ") else "?\\n")
    process.exit(0)

def run(coro, timeout=30):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

async def start():
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(EchoServer, "127.0.0.1", 0, server_host_keys=[key],
                                          process_factory=handle)
    return server.sockets[0].getsockname()[1]

async def connect(port, **kw):
    return await asyncssh.connect("127.0.0.1", port, username="app", known_hosts=None, **kw)

port = run(start())
# A long-lived client connection (an automation agent's), rekeying every 0.2 s so that
# key exchanges happen on it while and after the patch is applied.
conn = run(connect(port, rekey_seconds=0.2))
rekeys = [conn._rekey_time]

async def echo(c, word):
    r = await asyncio.wait_for(c.run("echo " + word), 20)
    return r.stdout.strip()

def use():
    got = run(echo(conn, "tick"))
    if got != "tick":
        raise AssertionError(got)

def observe():
    time.sleep(0.25)                               # the next packet on conn starts a rekey
    fresh = run(connect(port))
    try:
        out = {"old": run(echo(conn, "old")), "fresh": run(echo(fresh, "fresh")),
               "version": asyncssh.__version__,
               "old_strict": conn.__dict__.get("_strict_kex"),
               "old_server_strict": servers[0].__dict__.get("_strict_kex"),
               "fresh_strict": fresh.__dict__.get("_strict_kex"),
               "fresh_server_strict": servers[-1].__dict__.get("_strict_kex")}
    finally:
        fresh.close()
        run(fresh.wait_closed())
    del servers[1:]
    rekeys.append(conn._rekey_time)
    return out

out = lifecycle(sys.argv[1], observe, Load(use))
out["rekey_times"] = rekeys
conn.close()
print(json.dumps(out))
'''

TARGETS = {"pypdf": PYPDF, "pymdownx": PYMDOWNX, "asyncssh": ASYNCSSH}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Each pair materialized once; builds made on demand and kept (with/without hooks)."""
    cache = tmp_path_factory.mktemp("cache")
    trees: Dict[str, Tuple[Any, Any, List[Path]]] = {}
    built: Dict[Tuple[str, Any], Any] = {}

    def get(name: str, hooks: Any = False) -> Tuple[Any, Any, List[Path]]:
        """``hooks``: False (none), True (the file in tests/data/hooks) or a path."""
        if name not in trees:
            old, new, deps, _ = PAIRS[name]
            trees[name] = (materialize(str(DATA / old), cache_dir=cache),
                           materialize(str(DATA / new), cache_dir=cache),
                           [Path(materialize(str(DATA / d), cache_dir=cache).root) for d in deps])
        old, new, deps = trees[name]
        if (name, hooks) not in built:
            path = hooks if isinstance(hooks, Path) else HOOKS / PAIRS[name][3] if hooks else None
            built[(name, hooks)] = build_trees(old, new, hooks=path)
        return old, built[(name, hooks)], deps
    return get


def run_target(releases, name: str, hooks: Any, tmp_path: Path,
               extra: Optional[List[str]] = None) -> Dict[str, Any]:
    old, rep, deps = releases(name, hooks)
    patch = tmp_path / f"{name}.suture"
    patch.write_bytes(rep.data)
    script = tmp_path / f"target_{name}.py"
    script.write_text(TARGETS[name])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUTURE")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(old.root)] + [str(d) for d in deps])
    proc = subprocess.run([sys.executable, str(script), str(patch)] + (extra or []),
                          capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Whatever happened to the patch, the objects built before it never raised.
    assert out["load_errors"] == [], out["load_errors"]
    assert out["load_after_apply"] is True
    return out


def refused_for(out: Dict[str, Any], cls: str, attr: str) -> Dict[str, Any]:
    assert out["apply"].get("code") == "SUT-E209", out["apply"]
    assert out["apply"]["error"] == "ObjectsNeedMigration"
    objs = out["apply"]["details"]["objects"]
    hit = [o for o in objs if o["class"] == cls and o["attribute"] == attr]
    assert hit, objs
    assert f"`{attr}`" in out["apply"]["message"] and cls in out["apply"]["message"]
    return hit[0]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_builder_names_the_state_the_fix_reads(releases, name):
    _, rep, _ = releases(name)
    module = next(iter(STATE[name]))[0]
    got = {(c["module"], c["kind"], c["qualname"]) for c in rep.changes()
           if c["module"] == module and c["kind"] in ("instance state, derived",
                                                      "instance state, needs migration")}
    assert got == STATE[name]
    assert rep.target["name"] == {"pymdownx": "pymdown-extensions"}.get(name, name)


# ---------------------------------------------------------------------------------- pypdf

@pytest.mark.slow
def test_pypdf_without_migration_is_refused_and_reader_keeps_working(releases, tmp_path):
    out = run_target(releases, "pypdf", False, tmp_path)
    hit = refused_for(out, "pypdf._reader:PdfReader", "_xref_stream_entry_count")
    assert hit["objects"] == 1 and hit["how"] == "migration"
    # The derived attribute is not what refuses: Suture would compute it on first read.
    assert all(o["attribute"] != "_xref_stream_maximum_entries"
               for o in out["apply"]["details"]["objects"])
    for k in ("before", "after"):
        assert out[k]["text"] == "Hello reader"
        assert out[k]["version"] == "6.21.2"
        assert out[k]["limited"].startswith("TypeError")     # no such keyword in 6.21.2
        assert out[k]["count"] is None and out[k]["maximum"] is None
    assert "revert" not in out


@pytest.mark.slow
def test_pypdf_with_migration_applies_fix_and_reverts(releases, tmp_path):
    out = run_target(releases, "pypdf", True, tmp_path)
    assert out["apply"] == {"state": "applied"}
    assert out["before"]["version"] == "6.21.2" and out["before"]["limited"].startswith("TypeError")
    after = out["after"]
    assert after["text"] == "Hello reader" and after["version"] == "6.21.3"
    # The old reader, re-read by the fixed code: counted its 7 entries under the
    # default limit, derived on first read since 6.21.2 could not pass it.
    assert after["count"] == 7 and after["maximum"] == 2_000_000
    # The fix, for a new reader (non-strict pypdf wraps the LimitReachedError).
    assert "Maximum XRef stream entry limit reached: 7 > 3" in after["limited"]
    assert out["revert"] == {"state": "reverted"} and out["load_after_revert"] is True
    assert out["reverted"]["text"] == "Hello reader" and out["reverted"]["version"] == "6.21.2"
    assert out["reverted"]["limited"].startswith("TypeError")


# ------------------------------------------------------------------------------- pymdownx

def _docs(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "note.md").write_text("Release notes\n")
    (root / "secret.txt").write_text("DB_PASSWORD=hunter2\n")
    return root


LEAK = "<p>DB_PASSWORD=hunter2</p>"


@pytest.mark.slow
def test_pymdownx_without_migration_is_refused_and_renderer_keeps_working(releases, tmp_path):
    out = run_target(releases, "pymdownx", False, tmp_path, [str(_docs(tmp_path))])
    hit = refused_for(out, "pymdownx.snippets:SnippetPreprocessor", "restrict_base_path")
    assert hit["objects"] == 1 and hit["how"] == "migration"
    for k in ("before", "after"):
        assert out[k]["note"] == "<p>Release notes</p>"
        assert out[k]["traversal"] == LEAK                  # still vulnerable: nothing changed
        assert out[k]["fresh_traversal"] == LEAK
        assert out[k]["version"] == "9.11"


@pytest.mark.slow
def test_pymdownx_with_migration_applies_fix_and_reverts(releases, tmp_path):
    out = run_target(releases, "pymdownx", True, tmp_path, [str(_docs(tmp_path))])
    assert out["before"]["traversal"] == LEAK               # CVE-2023-32309, for real
    assert out["apply"] == {"state": "applied"}
    after = out["after"]
    assert after["version"] == "10.0"
    assert after["note"] == "<p>Release notes</p>"
    assert after["traversal"] == ""                          # the renderer built before: fixed
    assert "restrict_base_path" in after["attrs"]            # set by the migration
    assert after["fresh_traversal"] == ""
    assert out["revert"] == {"state": "reverted"} and out["load_after_revert"] is True
    assert out["reverted"]["traversal"] == LEAK and out["reverted"]["version"] == "9.11"
    assert out["reverted"]["note"] == "<p>Release notes</p>"


@pytest.mark.slow
def test_pymdownx_migration_that_misses_the_attribute_is_refused_and_undone(releases, tmp_path):
    """A hook that migrates the class but forgets ``restrict_base_path``: the engine counts
    again after running it, refuses, and takes back what the hook set."""
    hooks = tmp_path / "incomplete_hooks.py"
    hooks.write_text("def _m(obj):\n    obj.migrated_by_test = True\n\n"
                     "MIGRATIONS = {'pymdownx.snippets:SnippetPreprocessor': _m}\n")
    out = run_target(releases, "pymdownx", hooks, tmp_path, [str(_docs(tmp_path))])
    hit = refused_for(out, "pymdownx.snippets:SnippetPreprocessor", "restrict_base_path")
    assert hit["objects"] == 1
    for k in ("before", "after"):
        assert out[k]["note"] == "<p>Release notes</p>" and out[k]["version"] == "9.11"
        assert out[k]["traversal"] == LEAK
        assert "migrated_by_test" not in out[k]["attrs"]       # the migration was undone
    assert "base_path" in out["after"]["attrs"]


# ------------------------------------------------------------------------------- asyncssh

@pytest.mark.slow
def test_asyncssh_without_migration_is_refused_and_connection_keeps_working(releases, tmp_path):
    out = run_target(releases, "asyncssh", False, tmp_path)
    hit = refused_for(out, "asyncssh.connection:SSHConnection", "_strict_kex")
    assert hit["objects"] >= 2 and hit["how"] == "migration"   # client and server side
    for k in ("before", "after"):
        assert out[k]["old"] == "old" and out[k]["fresh"] == "fresh"
        assert out[k]["version"] == "2.14.1"
        assert out[k]["old_strict"] is None and out[k]["fresh_strict"] is None
    assert out["load_calls"] > 8


@pytest.mark.slow
def test_asyncssh_with_migration_applies_fix_and_reverts(releases, tmp_path):
    out = run_target(releases, "asyncssh", True, tmp_path)
    assert out["apply"] == {"state": "applied"}
    after = out["after"]
    assert after["version"] == "2.14.2"
    # The connection opened before the patch: migrated to non-strict (what its first key
    # exchange agreed), still serving, and rekeying since (its 0.2 s rekey timer moved on).
    assert after["old"] == "old"
    assert after["old_strict"] is False and after["old_server_strict"] is False
    t0, t_apply, t_after = out["rekey_times"][:3]
    assert t_after > t_apply > t0
    # A connection opened after the patch negotiates strict KEX on both ends: the fix.
    assert after["fresh"] == "fresh"
    assert after["fresh_strict"] is True and after["fresh_server_strict"] is True
    # Connections opened under the patch agreed strict KEX (both ends are in this process):
    # the revert names the state the restored code would ignore and refuses; forced (both
    # ends go back together here), it reverts and every connection keeps serving.
    assert out.get("revert_refused") == ["_strict_kex"], out   # out: what the revert said
    assert out["revert"] == {"state": "reverted"} and out["load_after_revert"] is True
    rev = out["reverted"]
    assert rev["version"] == "2.14.1" and rev["old"] == "old" and rev["fresh"] == "fresh"
    assert rev["fresh_strict"] is None                       # built by the restored code


# A remote peer that stays on 2.14.2 (its own process) and a client that is patched, opens
# a connection (strict KEX agreed with the peer), then reverts the patch.
PEER = '''
import asyncio, warnings
warnings.filterwarnings("ignore")
import asyncssh

class S(asyncssh.SSHServer):
    def begin_auth(self, username):
        return False

async def handle(process):
    process.stdout.write((process.command or "")[5:] + "\\n")
    process.exit(0)

async def main():
    key = asyncssh.generate_private_key("ssh-ed25519")
    srv = await asyncssh.create_server(S, "127.0.0.1", 0, server_host_keys=[key],
                                       process_factory=handle)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
'''

REVERTING_CLIENT = PRELUDE + '''
import asyncio
import asyncssh

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()

def run(coro, timeout=20):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

async def echo(c, word):
    return (await asyncio.wait_for(c.run("echo " + word), 5)).stdout.strip()

patch = rt.load_patch(open(sys.argv[1], "rb").read())
out = {"apply": attempt(rt.apply, patch)}
async def connect():
    return await asyncssh.connect("127.0.0.1", int(sys.argv[2]), username="app",
                                  known_hosts=None, rekey_seconds=0.3)

conn = run(connect())
out["strict"] = conn._strict_kex
out["patched"] = run(echo(conn, "patched"))
try:
    r = rt.revert(patch.id).to_dict()
    out["revert"] = {"state": r["state"], "notes": r["notes"], "caveats": r["caveats"]}
except SutureError as e:
    out["revert"] = {"code": e.code, "message": e.message}
time.sleep(0.5)                                    # past the connection's rekey time
try:
    out["after_revert"] = run(echo(conn, "reverted"))
except Exception as e:
    out["after_revert"] = type(e).__name__
print(json.dumps(out))
'''


@pytest.mark.slow
def test_asyncssh_revert_keeps_connections_that_agreed_strict_kex_working(releases, tmp_path):
    old, rep, _ = releases("asyncssh", True)
    new = materialize(str(DATA / PAIRS["asyncssh"][1]), cache_dir=tmp_path)
    (tmp_path / "peer.py").write_text(PEER)
    (tmp_path / "client.py").write_text(REVERTING_CLIENT)
    (tmp_path / "p.suture").write_bytes(rep.data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUTURE")}
    peer = subprocess.Popen([sys.executable, str(tmp_path / "peer.py")], stdout=subprocess.PIPE,
                            text=True, env=dict(env, PYTHONPATH=str(new.root)), cwd=str(tmp_path))
    try:
        port = peer.stdout.readline().strip()
        assert port.isdigit()
        proc = subprocess.run([sys.executable, str(tmp_path / "client.py"), str(tmp_path / "p.suture"), port],
                              capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                              env=dict(env, PYTHONPATH=os.pathsep.join([str(SRC), str(old.root)])))
    finally:
        peer.kill()
        peer.wait()
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["apply"] == {"state": "applied"}
    assert out["strict"] is True and out["patched"] == "patched"
    # The connection agreed strict KEX under the fix; the restored 2.14.1 code would ignore
    # _strict_kex, so its next rekey would desynchronise its sequence numbers with the peer
    # and it would stop answering (seen before the revert check existed). The revert says
    # so and refuses (`--force` overrides); the connection goes on working, still patched.
    assert out["revert"].get("code") == "SUT-E209", out
    assert "_strict_kex" in out["revert"]["message"] and "--force" in out["revert"]["message"]
    assert out["after_revert"] == "reverted", out


# ---------------------------------------------------------------------------------- cbor2

CBOR2 = "cbor2-{}-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"


def test_cbor2_slots_fix_is_refused_by_the_builder_as_restart_required(tmp_path):
    """cbor2 5.8.0 (CVE-2025-68131: a reused decoder leaked shared values across decodes)
    adds ``_decode_depth``/``_encode_depth`` to the ``__slots__`` of ``CBORDecoder`` and
    ``CBOREncoder``: a decoder built before the patch has no storage for the counter its
    fixed ``decode`` reads, and its C twin ``_cbor2`` changed too. No patch is built."""
    old = materialize(str(DATA / CBOR2.format("5.7.1")), cache_dir=tmp_path)
    new = materialize(str(DATA / CBOR2.format("5.8.0")), cache_dir=tmp_path)
    with pytest.raises(BuildRefused) as info:
        build_trees(old, new, cves=["CVE-2025-68131"])
    err = info.value
    assert err.code == "SUT-E203"
    assert "need a restart" in err.message
    restart = {(c["module"], c["qualname"]) for c in err.report.blockers("restart")}
    assert restart == {("cbor2._decoder", "CBORDecoder.__slots__"),
                       ("cbor2._encoder", "CBOREncoder.__slots__"),
                       ("", "_cbor2.cpython-311-x86_64-linux-gnu.so")}
    # the counters are listed too (derived: only the new _decoding_context()/_encoding_context()
    # change them, which older code never called), but the slots decide
    got = {(c["module"], c["kind"], c["qualname"]) for c in err.report.changes()}
    assert {("cbor2._decoder", "instance state, derived", "CBORDecoder._decode_depth"),
            ("cbor2._encoder", "instance state, derived", "CBOREncoder._encode_depth")} <= got

"""The local patch store and audit log: one SQLite file under the state directory.

``suture install FILE`` keeps a patch here; agents started later read it and
apply what concerns their process (Suture's ``kpatch install``). Every apply and
revert an agent serves, and every install and removal, is appended to the audit
log in the same file.

Constraints, because the agent reads this inside other people's processes:
* standard library only (``sqlite3``, which a Python built without it lacks:
  that is a ``StoreError`` like any other, never an ImportError at import time);
* importing it does nothing: no file is opened or created until a function is
  called, and each call opens and closes its own connection (no connection is
  shared between the agent thread and anyone else);
* the store holds code that agents execute, so it is only read from a
  directory and a file owned by this user (or root) and not writable by group
  or others; anything else is refused, never "fixed" with a chmod;
* every failure is a ``StoreError`` (SUT-E620); callers in the agent catch it
  and carry on (the target must never break because of the store);
* a store whose schema version (SQLite's ``user_version``) is newer than
  ``SCHEMA_VERSION`` is refused before anything is read or written
  (``StoreTooNew``, SUT-E621): a newer Suture may have changed what a row means,
  and "migrating" it back would silently drop what we do not understand.

WAL mode and a short busy timeout: many agents may append audit rows at the
same moment; a writer that cannot get the lock within ``BUSY_TIMEOUT`` fails
(and its caller records nothing) instead of stalling an apply.

Size: about 600 lines, over the ~500-line rule of thumb: the patch rows, the bad marks and
the audit chain are three tables of one file, opened, locked, checked for ownership and
schema version by the same code; a split by table would export that code to three
importers for little gain.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from .errors import SutureError, UnknownPatch, explain

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: see "Idle agents" below
    from typing import Any, Dict, List, Optional, Tuple

    from .patchfile import Patch

__all__ = ["StoreError", "StoreTooNew", "SCHEMA_VERSION", "state_dir", "db_path", "install",
           "nothing_installed",
           "remove", "installed", "load_installed", "mark_bad", "clear_bad", "bad_patches",
           "audit", "audit_log", "audit_for", "verify_audit", "write_blocked", "BUSY_TIMEOUT",
           "CHAIN_STATES"]

BUSY_TIMEOUT = 2.0  # seconds a writer waits for the database lock

# The store's schema version, kept in SQLite's ``PRAGMA user_version`` (a header field:
# reading it reads nothing else and writes nothing). 0 is a store made before the version
# was recorded (same tables; a writer adds the columns it lacks); every writer of this
# Suture stamps 1. A Suture that changes the meaning of a table bumps it, and older ones
# then refuse the store instead of writing rows the newer one would misread.
# Rejected: a "meta" table with the version (a store made by a future Suture might not
# have it, or use another name; the header field always exists) and guessing from the
# columns (a newer Suture may change semantics without adding columns).
SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS patches (id TEXT PRIMARY KEY, target_name TEXT, "
    "from_version TEXT, to_version TEXT, cves TEXT, installed_at REAL, data BLOB, trust TEXT)",
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, "
    "actor_uid INT, pid INT, op TEXT, patch_id TEXT, result TEXT, detail TEXT, prev TEXT, "
    "hash TEXT)",
    "CREATE TABLE IF NOT EXISTS bad (id TEXT PRIMARY KEY, at REAL, reason TEXT, by_uid INT)",
)


class StoreError(SutureError, OSError):
    """The patch store cannot be used: unsafe or unreadable directory, broken database."""

    code = "SUT-E620"


class StoreTooNew(StoreError):
    """The store was written by a newer Suture (its schema version is above ours): it is
    neither read nor written, and never migrated back; upgrade Suture."""

    code = "SUT-E621"


# ---------------------------------------------------------------- where the store is

def _default_dir(environ: Any, euid: int, home: str) -> str:
    """The directory rule of docs/live-processes.md, as a pure function."""
    explicit = environ.get("SUTURE_STATE_DIR")
    if explicit:
        return str(explicit)
    if euid == 0:
        return "/var/lib/suture"
    xdg = environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "suture")
    return os.path.join(home, ".local", "state", "suture")


def state_dir() -> str:
    return _default_dir(os.environ, os.geteuid(), os.path.expanduser("~"))


def db_path(directory: Optional[str] = None) -> str:
    return os.path.join(directory or state_dir(), "store.db")


def nothing_installed() -> bool:
    """True when this user's store holds no installed patch, known without opening it
    (no sqlite3): there is no store file. Every agent asks this at its start (issue 19);
    False means "look": the store may still hold none."""
    return not os.path.lexists(db_path())


def _check_owned(path: str, what: str) -> None:
    """One check: ``path`` is ours (or root's), not a symlink, not writable by others."""
    st = os.lstat(path)
    euid = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"refusing the patch store {what} {path}: it is a symlink. Remove it "
                         f"or set SUTURE_STATE_DIR.", details={"path": path})
    if st.st_uid not in (euid, 0):
        raise StoreError(f"refusing the patch store {what} {path}: it is owned by uid "
                         f"{st.st_uid}, this process runs as uid {euid}. Set SUTURE_STATE_DIR "
                         f"to a directory you own.",
                         details={"path": path, "owner": st.st_uid, "uid": euid})
    if st.st_mode & 0o022:
        raise StoreError(f"refusing the patch store {what} {path}: mode "
                         f"{stat.S_IMODE(st.st_mode):04o} lets other users write it, and it "
                         f"holds code that agents run. Run `chmod go-w {path}`.",
                         details={"path": path, "mode": stat.S_IMODE(st.st_mode)})


def _connect(create: bool, read_only: str = "") -> Any:
    """An open connection, or None when ``create`` is false and there is no store yet.

    ``read_only`` ("mode=ro" or "immutable=1") opens the file through an SQLite URI that
    writes nothing: see ``_read``. The ownership checks are the same either way.
    """
    directory = state_dir()
    path = db_path(directory)
    try:
        import sqlite3
    except ImportError as exc:
        raise StoreError(f"this Python has no sqlite3 module, so the patch store at {path} "
                         f"cannot be used", details={"path": path}) from exc
    try:
        if create:
            os.makedirs(os.path.dirname(directory) or ".", exist_ok=True)
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        elif not os.path.lexists(path):
            return None
        _check_owned(directory, "directory")
        fresh = not os.path.lexists(path)
        if fresh:
            # Create the file 0600 ourselves rather than let sqlite3 apply the umask.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass  # another process created it first: checked below like any other
        _check_owned(path, "database")
        if read_only:
            # An SQLite URI: "%", "?" and "#" in the path must be escaped. By hand, not with
            # urllib.parse: fewer imports on the agent thread (see _agent._load).
            uri = os.path.abspath(path).replace("%", "%25").replace("?", "%3f") \
                .replace("#", "%23")
            conn = sqlite3.connect(f"file:{uri}?{read_only}", timeout=BUSY_TIMEOUT,
                                   isolation_level=None, uri=True)
        else:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, StoreError):
            raise
        if isinstance(exc, OSError):   # EMFILE, EACCES...: named like any OSError (errors.py)
            name, what, remedy = explain(exc)
            raise StoreError(f"cannot open the patch store {path}: {what} ({name}). To fix: "
                             f"{remedy}.", details={"path": path, "errno": exc.errno,
                                                   "errno_name": name}) from exc
        raise StoreError(f"cannot open the patch store {path}: {exc}{_blocked_note(path)}",
                         details=_blocked_details(path)) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        # Checked before anything else, WAL and the schema included: both write.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        _check_version(path, version)
        if (fresh or create) and not read_only:
            conn.execute("PRAGMA journal_mode = WAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except StoreTooNew:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot use the patch store {path}: {exc}",
                         details={"path": path}) from exc
    return conn


def _check_version(path: str, version: int) -> None:
    """One check: the store's schema is not newer than this Suture's."""
    if version > SCHEMA_VERSION:
        raise StoreTooNew(f"refusing the patch store {path}: it was written by a newer Suture "
                          f"(schema version {version}; this Suture knows up to "
                          f"{SCHEMA_VERSION}). Nothing was read or changed. Upgrade Suture, "
                          f"or set SUTURE_STATE_DIR to another store.",
                          details={"path": path, "version": version,
                                   "supported": SCHEMA_VERSION})


def _run(create: bool, fn: Any, default: Any = None, read_only: str = "") -> Any:
    """Call ``fn(conn)`` on a fresh connection; sqlite3 errors become StoreError."""
    conn = _connect(create, read_only)
    if conn is None:
        return default
    import sqlite3  # importable: _connect succeeded
    try:
        return fn(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"the patch store {db_path()} failed: {exc}"
                         f"{_blocked_note(db_path())}",
                         details=_blocked_details(db_path())) from exc
    finally:
        conn.close()


# Reading must work when writing cannot: a full disk (ENOSPC) or a read-only filesystem
# (EROFS) under the state directory must not cost a new process its installed patches.
# A plain connection to a WAL database writes even to read (the -shm index, the -wal
# file), so it fails there with "disk I/O error" or "unable to open database file". Reads
# then retry with SQLite URIs that write less: "mode=ro" (still maps -shm: works when it
# exists) and, last, "immutable=1" (no lock, no -shm, no -wal: it sees what is in
# store.db itself; a write still in the -wal file, not yet checkpointed, is not seen).
# Only reads fall back; a write (install, audit, a bad mark) fails as before, and the
# agent says so (``write_blocked``). Rejected: copying the database to a writable
# temporary directory (more I/O on a host already in trouble, and a second copy of code
# that agents run, outside the checked directory).
_READ_FALLBACKS = ("mode=ro", "immutable=1")


def _read(fn: Any, default: Any) -> Any:
    """``_run`` for a read: on an SQLite failure, again through each read-only URI."""
    try:
        return _run(False, fn, default)
    except StoreError as exc:
        import sqlite3  # a StoreError caused by sqlite3.Error means it was importable
        if not isinstance(exc.__cause__, sqlite3.Error):
            raise                        # refused (ownership), or no sqlite3: not ours to retry
        first = exc
    for how in _READ_FALLBACKS:
        try:
            return _run(False, fn, default, read_only=how)
        except StoreError:
            continue
    raise first


def write_blocked(directory: Optional[str] = None) -> Optional[OSError]:
    """Why nothing can be written under the state directory now, as the OSError a write
    would raise (EROFS, ENOSPC, EACCES), or None if nothing is seen. One ``statvfs`` and
    one ``access``: no write is attempted."""
    directory = directory or state_dir()
    try:
        st = os.statvfs(directory)
    except OSError:
        return None                      # absent: a write would create it, or say why
    if st.f_flag & os.ST_RDONLY:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), directory)
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    if free * st.f_frsize < _MIN_FREE or st.f_favail == 0:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)
    if not os.access(directory, os.W_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES), directory)
    return None


_MIN_FREE = 64 * 1024   # bytes: below this an SQLite write (a page, a WAL frame) fails


def _blocked_note(path: str) -> str:
    blocked = write_blocked(os.path.dirname(path))
    if blocked is None:
        return ""
    return (f" ({errno.errorcode.get(blocked.errno or 0, '?')}: {blocked.strerror} under "
            f"{blocked.filename})")


def _blocked_details(path: str) -> Dict[str, Any]:
    blocked = write_blocked(os.path.dirname(path))
    details: Dict[str, Any] = {"path": path}
    if blocked is not None:
        details.update(errno=blocked.errno,
                       errno_name=errno.errorcode.get(blocked.errno or 0, "?"))
    return details


# ---------------------------------------------------------------- patches

def install(data: bytes, trust: Optional[Dict[str, Any]] = None) -> Patch:
    """Validate ``data`` (a patch file) and keep it with ``trust``, the record of its
    verification (tooling/trust/__init__.py: ``{"signers": [...]}`` or ``{"unsigned": true}``).
    Installing the same patch again refreshes its data and record. Agents apply only rows
    that have a record: this module cannot check signatures (stdlib only), so the record
    is what the verifying tool wrote, and the store's ownership checks are what protect it.
    """
    import json
    from .patchfile import load
    patch = load(data)
    target = patch.target
    row = (patch.id, str(target.get("name", "")), target.get("from_version"),
           target.get("to_version"), json.dumps(list(patch.meta.get("cves") or [])),
           time.time(), bytes(data), None if trust is None else json.dumps(trust))

    def go(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _add_columns(conn, "patches", ("trust",))
            conn.execute("INSERT INTO patches (id, target_name, from_version, to_version, "
                         "cves, installed_at, data, trust) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT(id) DO UPDATE SET data = excluded.data, "
                         "trust = excluded.trust", row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _run(True, go)
    return patch


def _add_columns(conn: Any, table: str, names: Tuple[str, ...]) -> None:
    """Add columns a store made by an older Suture lacks (idempotent; call it inside the
    write transaction, or two writers may both see a column missing)."""
    columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    for name in names:
        if name not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} TEXT")


def _select(conn: Any, table: str, keys: Tuple[str, ...]) -> str:
    """A select list for ``keys`` where columns an older store lacks read as NULL (reading
    never migrates)."""
    columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    return ", ".join(k if k in columns else f"NULL AS {k}" for k in keys)


def _resolve(conn: Any, prefix: str) -> str:
    ids = [r[0] for r in conn.execute("SELECT id FROM patches WHERE substr(id, 1, ?) = ?",
                                      (len(prefix), prefix))]
    if len(ids) == 1:
        return str(ids[0])
    if not ids:
        raise UnknownPatch(f"no installed patch has the id {prefix!r}; see `suture list`",
                           details={"patch_id": prefix})
    raise UnknownPatch(f"the prefix {prefix!r} matches {len(ids)} installed patches; give more "
                       f"of the id (see `suture list`)",
                       details={"patch_id": prefix, "matches": sorted(ids)})


def remove(patch_id_or_prefix: str) -> str:
    """Forget an installed patch (processes that applied it keep it); returns its full id."""
    if not patch_id_or_prefix:
        raise UnknownPatch("give a patch id or a unique prefix (see `suture list`)",
                           details={"patch_id": patch_id_or_prefix})

    def go(conn: Any) -> str:
        full = _resolve(conn, patch_id_or_prefix)
        conn.execute("DELETE FROM patches WHERE id = ?", (full,))
        return full

    missing = object()
    got = _run(False, go, missing)
    if got is missing:
        raise UnknownPatch(f"no installed patch has the id {patch_id_or_prefix!r}; the store "
                           f"{db_path()} is empty", details={"patch_id": patch_id_or_prefix})
    return str(got)


def _trust(text: Optional[str]) -> Optional[Dict[str, Any]]:
    import json
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def installed() -> List[Dict[str, Any]]:
    """Installed patches, oldest first, without their data."""
    import json
    keys = ("id", "target_name", "from_version", "to_version", "cves", "installed_at", "trust")

    def go(conn: Any) -> List[Dict[str, Any]]:
        rows = conn.execute(f"SELECT {_select(conn, 'patches', keys)} FROM patches "
                            f"ORDER BY installed_at, id")
        return [dict(zip(keys, r[:4] + (json.loads(r[4] or "[]"), r[5], _trust(r[6]))))
                for r in rows]

    return list(_read(go, []))


def load_installed() -> List[Tuple[bytes, Optional[Dict[str, Any]]]]:
    """Each installed patch file (not validated here) with its trust record (None: installed
    without verification), in installation order."""
    def go(conn: Any) -> List[Tuple[bytes, Optional[Dict[str, Any]]]]:
        rows = conn.execute(f"SELECT {_select(conn, 'patches', ('data', 'trust'))} "
                            f"FROM patches ORDER BY installed_at, id")
        return [(bytes(r[0]), _trust(r[1])) for r in rows]

    return list(_read(go, []))


# ---------------------------------------------------------------- patches marked bad

# A patch after which a process died or failed its health check (``suture apply --watch``,
# or a crash loop seen by agents at start) is marked bad: agents do not apply it from the
# store and ``suture apply`` refuses it, until a human runs ``suture bad clear``.

def mark_bad(patch_id: str, reason: str, uid: int,
             processes: Optional[List[Dict[str, Any]]] = None) -> None:
    """Mark ``patch_id`` bad. ``processes``: the processes that tripped the mark (a crash
    loop: pid, start, exit), kept as JSON in a column older stores gain on this write."""
    import json
    row = (patch_id, time.time(), reason[:2000], int(uid),
           None if processes is None else json.dumps(processes))

    def go(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _add_columns(conn, "bad", ("processes",))
            conn.execute("INSERT INTO bad (id, at, reason, by_uid, processes) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                         "at = excluded.at, reason = excluded.reason, "
                         "by_uid = excluded.by_uid, processes = excluded.processes", row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _run(True, go)


def clear_bad(patch_id_or_prefix: str) -> str:
    """Forget a bad mark; returns the full id. UnknownPatch if no mark matches."""
    def go(conn: Any) -> str:
        ids = [r[0] for r in conn.execute("SELECT id FROM bad WHERE substr(id, 1, ?) = ?",
                                          (len(patch_id_or_prefix), patch_id_or_prefix))] \
            if patch_id_or_prefix and _has_table(conn, "bad") else []
        if len(ids) != 1:
            raise UnknownPatch(f"{'no' if not ids else len(ids)} patch marked bad on this host "
                               f"{'has' if not ids else 'match'} the id {patch_id_or_prefix!r}"
                               f"; see `suture bad`", details={"patch_id": patch_id_or_prefix})
        conn.execute("DELETE FROM bad WHERE id = ?", (ids[0],))
        return str(ids[0])

    got = _run(False, go, None)
    if got is None:
        raise UnknownPatch(f"no patch is marked bad on this host (no store at {db_path()})",
                           details={"patch_id": patch_id_or_prefix})
    return str(got)


def bad_patches() -> Dict[str, Dict[str, Any]]:
    """Patches marked bad: id -> {at, reason, by_uid, processes} (``processes``: the
    processes that tripped a crash-loop mark, each with pid, start and exit; None when the
    mark names none)."""
    keys = ("id", "at", "reason", "by_uid", "processes")

    def go(conn: Any) -> Dict[str, Dict[str, Any]]:
        if not _has_table(conn, "bad"):  # a store made before marks: reading changes nothing
            return {}
        return {r[0]: {"at": r[1], "reason": r[2], "by_uid": r[3],
                       "processes": _processes(r[4])}
                for r in conn.execute(f"SELECT {_select(conn, 'bad', keys)} FROM bad "
                                      f"ORDER BY at")}

    return dict(_read(go, {}))


def _processes(text: Optional[str]) -> Optional[List[Dict[str, Any]]]:
    import json
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else None


def _has_table(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


# ---------------------------------------------------------------- audit log

# Each row carries the hash of the row before it (``prev``) and its own (``hash``):
# sha256 over ``prev`` and the row's fields, canonical JSON. Editing a row breaks its hash;
# removing or reordering rows breaks the next row's ``prev``. Rows written before the
# chain existed (no hash) may only precede it. Removing the newest rows leaves a valid
# shorter chain: ``verify_audit(head=...)`` checks against a head recorded elsewhere.
GENESIS = "0" * 64
_FIELDS = ("at", "actor_uid", "pid", "op", "patch_id", "result", "detail")


def _row_hash(prev: str, row: Dict[str, Any]) -> str:
    import hashlib
    import json
    body = json.dumps([prev] + [row[k] for k in _FIELDS], separators=(",", ":"),
                      ensure_ascii=True)
    return hashlib.sha256(body.encode("ascii")).hexdigest()


def audit(op: str, patch_id: str, result: str, pid: int, actor_uid: int,
          detail: str = "") -> None:
    """Append one row to the audit log (creating the store if needed), chained to the last."""
    # Imported now, not inside the write transaction below (_row_hash): a first import
    # there would hold the database lock longer, and other writers wait for it.
    import hashlib  # noqa: F401
    import json  # noqa: F401
    row = dict(zip(_FIELDS, (time.time(), int(actor_uid), int(pid), op, patch_id, result,
                             detail)))

    def go(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")   # the last hash and the insert, one writer at a time
        try:
            _add_columns(conn, "audit", ("prev", "hash"))
            last = conn.execute("SELECT hash FROM audit WHERE hash IS NOT NULL "
                                "ORDER BY seq DESC LIMIT 1").fetchone()
            prev = last[0] if last else GENESIS
            conn.execute("INSERT INTO audit (at, actor_uid, pid, op, patch_id, result, detail, "
                         "prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         tuple(row[k] for k in _FIELDS) + (prev, _row_hash(prev, row)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _run(True, go)


_KEYS = ("seq",) + _FIELDS + ("prev", "hash")


def _audit_rows(conn: Any, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    query = f"SELECT {_select(conn, 'audit', _KEYS)} FROM audit ORDER BY seq DESC"
    args: Tuple[int, ...] = ()
    if limit is not None:
        query += " LIMIT ?"
        args = (max(0, int(limit)),)
    rows = list(conn.execute(query, args))
    rows.reverse()
    return [dict(zip(_KEYS, r)) for r in rows]


def audit_log(limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Audit rows, oldest first; with ``limit``, only the newest ``limit`` of them."""
    return list(_read(lambda conn: _audit_rows(conn, limit), []))


def audit_for(patch_id: str, ops: Tuple[str, ...], limit: int = 200) -> List[Dict[str, Any]]:
    """The newest ``limit`` audit rows of ``patch_id`` with one of ``ops``, newest first."""
    def go(conn: Any) -> List[Dict[str, Any]]:
        marks = ", ".join("?" for _ in ops)
        rows = conn.execute(f"SELECT {_select(conn, 'audit', _KEYS)} FROM audit "
                            f"WHERE patch_id = ? AND op IN ({marks}) ORDER BY seq DESC LIMIT ?",
                            (patch_id, *ops, int(limit)))
        return [dict(zip(_KEYS, r)) for r in rows]

    return list(_read(go, []))


# What ``verify_audit`` can say. "no chain" is not "intact": with no store, no audit
# table, an empty log or only rows from before the chain there is nothing to verify, and
# calling that intact would bless a log that was deleted (finding 10 of issue 13).
CHAIN_STATES = ("intact", "tampered", "no chain")


def _when(at: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def verify_audit(head: Optional[str] = None) -> Dict[str, Any]:
    """Check the whole chain.

    ``state`` is "intact", "tampered" (``problems`` name each row that was edited, removed,
    reordered or inserted; and ``head``, a hash recorded earlier, must be in the chain,
    which also catches the removal of the newest rows and a store deleted and recreated
    since it was recorded) or "no chain" (``why``: no store, no audit table, an empty log,
    only rows from before the chain). ``started`` is the chain's first entry (``prev`` is
    GENESIS): a chain that starts later than the store's history should is a recreated
    store, visible even without a recorded head. ``ok`` is ``state == "intact"``.
    """
    missing = object()

    def read(conn: Any) -> Optional[List[Dict[str, Any]]]:
        return _audit_rows(conn) if _has_table(conn, "audit") else None

    got = _run(False, read, missing)
    rows: List[Dict[str, Any]] = [] if got is missing or got is None else list(got)
    problems: List[Dict[str, Any]] = []
    prev, chained, unchained = GENESIS, 0, 0
    started: Optional[Dict[str, Any]] = None
    for r in rows:
        if r["hash"] is None:
            if chained:
                problems.append({"seq": r["seq"], "problem": "row without a hash inside the "
                                 "chain (inserted, or its hash removed)"})
            else:
                unchained += 1
            continue
        if started is None:
            started = {k: r[k] for k in ("seq", "at", "actor_uid", "pid", "op")}
        if r["prev"] != prev:
            problems.append({"seq": r["seq"], "problem": "does not follow the row before it "
                             "(a row was removed or the rows were reordered)"})
        if _row_hash(r["prev"] or "", r) != r["hash"]:
            problems.append({"seq": r["seq"], "problem": "its content does not match its hash "
                             "(edited)"})
        prev, chained = r["hash"], chained + 1
    why: Optional[str] = None
    if got is missing:
        why = "there is no store"
    elif got is None:
        why = "the store has no audit table"
    elif not rows:
        why = "the audit log is empty"
    elif not chained:
        why = f"its {unchained} entries were all written before the chain existed"
    if head is not None and head not in {r["hash"] for r in rows}:
        if why is not None:
            found = f"there is no chain here ({why})"
        else:
            assert started is not None
            found = (f"rows removed since it was recorded, or the store was deleted and "
                     f"recreated: this chain starts at entry {started['seq']}, written "
                     f"{_when(started['at'])}")
        problems.append({"seq": None, "problem": f"the recorded head {head[:16]}... is not in "
                         f"the chain ({found})"})
    state = "no chain" if why is not None else "tampered" if problems else "intact"
    return {"state": state, "ok": state == "intact", "why": why, "rows": len(rows),
            "chained": chained, "before_chain": unchained, "head": prev if chained else None,
            "started": started, "problems": problems, "store": db_path()}

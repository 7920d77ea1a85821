"""Patches applied by hand reach the processes their tree starts later (issue 16).

A process patched with ``suture apply`` keeps, here, the bytes of every patch that was
applied to it by hand (``remember``), and of every patch it inherited itself. When a
process's agent starts (``suture run``'s bootstrap at interpreter start, the at-fork hook in
a forked child, ``suture attach``), it walks its ancestors (the ppid chain of /proc,
``MAX_ANCESTORS`` deep) and asks each one that has an agent socket in the same runtime
directory and runs as the same user for those patches (op ``inherit``, docs/protocol.md),
then applies them in order: oldest ancestor first, so the nearest one's state is the one
left (a cumulative patch applied later replaces an earlier one, as in that ancestor).

What is handed out is what the ancestor runs *now*: a patch reverted by hand there, or
replaced by a cumulative one, is no longer in the engine's records and is not handed out.
Patches installed in the store are not kept here: the child's agent applies those from the
store itself (``_agent._auto_apply``, which runs first). A forked child already has its
parent's patches in memory (the engine records survive fork): it is asked nothing new for
them, and only remembers them so that its own children get them.

Why ancestry and not an environment variable: ``os.environ`` changed from the agent thread
races with C ``getenv`` in the application's threads, and a forkserver or a reloader
started before the apply would never see it. The ancestor's socket is in our own 0700
runtime directory and its peer must be that ancestor and our uid (``SO_PEERCRED``): any
process that can connect there can already apply any patch to us, so taking patches from
it grants nothing new.

The child runs vulnerable code until this has finished: modules it has not imported yet
become "pending import" (the import hook patches them when imported), modules already
imported run the old code until the apply. Everything runs on the agent thread, bounded by
``INHERIT_TIMEOUT`` per ancestor, so a busy or hung ancestor delays the inheritance, never
the application. An ancestor that does not answer is recorded (audit op ``inherit``,
``failed SUT-E617``) and ``suture status`` then reports the child exposed (the patch was
applied by hand elsewhere and not here).

Standard library only; importing this module does nothing.
"""

from __future__ import annotations

import _socket as socket   # not socket.py: an idle agent's memory (_agent, "Memory")
import collections
import os
import stat
import threading

from . import _enginelock, _interps, protocol

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Record = Callable[..., Any]

__all__ = ["remember", "op_inherit", "from_ancestors", "INHERIT_TIMEOUT", "MAX_ANCESTORS"]

INHERIT_TIMEOUT = 5.0
MAX_ANCESTORS = 16
_KEPT = ("applied", "pending import")

# patch id -> (patch file bytes, restricted, "hand" or "inherited", the pid it came from)
_held: "collections.OrderedDict[str, Tuple[bytes, bool, str, int]]" = \
    collections.OrderedDict()


def remember(data: bytes, restricted: bool, patch_id: str, state: str, how: str = "hand",
             source: int = 0) -> None:
    """Keep ``data`` for our children: a patch applied here by hand (``how="hand"``), or
    inherited from ``source``. Only what changed something here is kept ("applied",
    "pending import"); "already applied" keeps what was kept before."""
    if state in _KEPT and patch_id not in _held:
        _held[patch_id] = (bytes(data), bool(restricted), how, int(source))


def op_inherit(frame: Dict[str, Any]) -> Dict[str, Any]:
    """The ``inherit`` op: the patches kept here that the engine still has applied."""
    # The engine's records without its lock: taking it would register the engine's fork
    # hooks after ours, and then a forked child could not wait (``_wait_after_fork``). The
    # agent serves one request at a time, so no apply or revert of ours runs meanwhile;
    # copying a dict's keys does not release the GIL.
    if not _held:
        # Nothing applied here (remember() follows an apply): the engine need not load.
        return {"pid": os.getpid(), "patches": []}
    import base64

    from .engine._state import _applied
    live = set(list(_applied))
    return {"pid": os.getpid(), "patches": [
        {"id": pid_, "patch": base64.b64encode(data).decode("ascii"), "restricted": restricted,
         "how": how, "from": source}
        for pid_, (data, restricted, how, source) in list(_held.items()) if pid_ in live]}


def held_path(runtime_dir: str, pid: Optional[int] = None) -> str:
    return os.path.join(runtime_dir, f"{os.getpid() if pid is None else pid}.held")


def publish(runtime_dir: str) -> None:
    """The main interpreter's agent, after each apply and revert: write ``op_inherit``'s
    answer to ``<pid>.held`` (0600, atomically), for the sub-interpreters this process
    creates later (issue 22); removed when nothing is held. Never raises."""
    path = held_path(runtime_dir)
    try:
        answer = op_inherit({})
        if not answer["patches"]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(protocol.encode(answer))
        os.replace(tmp, path)
    except BaseException:  # noqa: BLE001 - sub-interpreters then see none: status says so
        pass


def _published(runtime_dir: str) -> List[Dict[str, Any]]:
    """What our main interpreter published (``publish``); [] when it holds nothing.
    Only a regular file of our uid is read."""
    path = held_path(runtime_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise ValueError(f"{path} is not a file of uid {os.geteuid()}")
        data = f.read(protocol.MAX_LINE + 1)
    answer = protocol.parse(data.rstrip(b"\n"), protocol.MAX_LINE)
    patches = answer.get("patches") if isinstance(answer, dict) else None
    if not isinstance(patches, list):
        raise ValueError(f"{path} has no list of patches")
    return [p for p in patches if isinstance(p, dict) and isinstance(p.get("id"), str)
            and isinstance(p.get("patch"), str)]


# ---------------------------------------------------------------- the child's side

def _stat_fields(pid: Any) -> List[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    return raw[raw.rfind(b")") + 2:].split()


def _euid(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


def ancestors() -> List[int]:
    """Our ancestors, nearest first, up to ``MAX_ANCESTORS`` and never pid 1 or 0."""
    out: List[int] = []
    pid: Any = "self"
    for _ in range(MAX_ANCESTORS):
        try:
            ppid = int(_stat_fields(pid)[1])
        except (OSError, ValueError, IndexError):
            break
        if ppid <= 1 or ppid in out:
            break
        out.append(ppid)
        pid = ppid
    return out


def _ask(path: str, pid: int, timeout: float) -> List[Dict[str, Any]]:
    """The ``inherit`` answer of ``pid``'s agent at ``path``; raises OSError / ValueError."""
    frame = _interps.call(path, protocol.request("inherit"), timeout, pid)
    if frame.get("ok") is not True:
        err = frame.get("error")
        err = err if isinstance(err, dict) else {}
        raise ValueError(f"{err.get('code', '?')} {err.get('message', frame)}")
    result = frame.get("result")
    patches = result.get("patches") if isinstance(result, dict) else None
    if not isinstance(patches, list):
        raise ValueError("the answer has no list of patches")
    return [p for p in patches if isinstance(p, dict) and isinstance(p.get("id"), str)
            and isinstance(p.get("patch"), str)]


def _timeout() -> float:
    """``INHERIT_TIMEOUT``, or ``$SUTURE_INHERIT_TIMEOUT`` seconds (tests, slow hosts)."""
    try:
        return max(0.05, float(os.environ.get("SUTURE_INHERIT_TIMEOUT", INHERIT_TIMEOUT)))
    except ValueError:
        return INHERIT_TIMEOUT


# A forked child does not wait for its agent at start: it has its parent's patches in
# memory. But a forkserver started before the apply forks workers that get the patch only
# from the main process, its parent, and a worker runs its task at once. So a forked child
# waits for its agent's start-up (bounded, ``_agent.wait_ready``) when an ancestor beyond
# its parent has an agent: a forkserver's workers, a pool worker's children. The hook is
# registered by ``_agent.start`` right after the agent's own (which starts the child's
# agent; hooks run in registration order; registered from the agent thread instead, it
# raced with that one and ran first, seeing no agent). If the engine's fork hooks were
# registered after ours, the engine lock taken before the fork is still held by this
# thread until they run, and the agent thread needs it: no wait then (the parent used the
# engine, so it has what it was given).
_fork_hook = False
_agent_calls: List[Callable[..., Any]] = []   # _agent.running, _agent.wait_ready


def register_fork_wait(running: Callable[[], Optional[str]],
                       wait_ready: Callable[[], bool]) -> None:
    """Called by ``_agent.start`` (given its functions: this module imports no agent)."""
    global _fork_hook
    _agent_calls[:] = [running, wait_ready]
    if not _fork_hook and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_wait_after_fork)
        _fork_hook = True


def _wait_after_fork() -> None:
    try:
        if _enginelock.fork_holds.get(threading.get_ident()) or not _agent_calls:
            return
        running, wait_ready = _agent_calls
        path = running()
        if path is None:
            return
        directory = os.path.dirname(path)
        if any(os.path.exists(os.path.join(directory, f"{a}.sock")) for a in ancestors()[1:]):
            wait_ready()
    except BaseException:  # noqa: BLE001 - never break the child
        pass


def from_ancestors(runtime_dir: str, record: Record, warn: Callable[[str], None],
                   before_apply: Callable[[], None],
                   outcome: Callable[[BaseException], str],
                   load: Callable[[Tuple[str, ...]], None],
                   bad_patches: Callable[[], Dict[str, Dict[str, Any]]],
                   own_main: bool = False) -> None:
    """Apply what our ancestors were patched with by hand (see the module docstring).

    ``record(op, patch_id, result, uid, detail)`` writes an audit row; ``warn`` one stderr
    line; ``before_apply`` runs before the engine is used (the agent's import-refusal
    listener); ``outcome(exc)`` is the audit result of a refusal; ``load(names)`` imports
    modules under the agent's fork guard (nothing is imported at all when no ancestor has
    an agent: issue 19); ``bad_patches()`` reads the store's bad marks, under that guard.
    ``own_main``: we are a sub-interpreter's agent, and our own process's main interpreter
    is the nearest "ancestor" (issue 22: an interpreter created after a by-hand apply gets
    the patch, as a child process does). Never raises.
    """
    from .errors import InheritFailed, MarkedBad, SutureError

    me, euid = os.getpid(), os.geteuid()
    wanted: "collections.OrderedDict[str, Tuple[Dict[str, Any], int]]" = \
        collections.OrderedDict()
    for anc in list(reversed(ancestors())) + ([me] if own_main else []):   # nearest last: wins
        path = os.path.join(runtime_dir, f"{anc}.sock")
        if anc == me:
            # Our own main interpreter publishes what it holds (``publish``): asked over its
            # socket, it could be busy forwarding a request to this very interpreter.
            try:
                load(protocol.FRAME_MODULES)
                for p in _published(runtime_dir):
                    wanted.setdefault(p["id"], (p, anc))
            except (OSError, ValueError) as exc:
                warn(f"pid {me}: the patches applied by hand to its main interpreter were "
                     f"not read: {exc}. Check with `suture status`.")
            continue
        if not os.path.exists(path) or _euid(anc) != euid:
            continue
        try:
            load(protocol.FRAME_MODULES)
            for p in _ask(path, anc, _timeout()):
                wanted.setdefault(p["id"], (p, anc))
        except (OSError, ValueError, SutureError) as exc:
            why = (f"did not answer within {_timeout():g} s"
                   if isinstance(exc, socket.timeout) else f"could not be asked: {exc}")
            warn(f"pid {me}: the patches applied by hand to its ancestor pid {anc} were not "
                 f"inherited: its agent {why}. Check with `suture status`.")
            record("inherit", "", f"failed {InheritFailed.code}", euid,
                   f"from pid {anc}: the ancestor's agent {why}")
    if not wanted:
        return
    from .. import runtime
    before_apply()      # loads the engine (under the guard) and listens for refusals
    import base64       # loaded by before_apply, under the guard
    have = set(runtime.applied())
    bad = bad_patches()
    for pid_, (p, anc) in wanted.items():
        restricted = bool(p.get("restricted"))
        try:
            data = base64.b64decode(str(p["patch"]).encode("ascii"), validate=True)
        except ValueError:
            continue
        if pid_ in have:     # a forked child: the parent's patch is already in memory
            remember(data, restricted, pid_, "applied", "inherited", anc)
            continue
        try:
            if pid_ in bad:
                raise MarkedBad(f"patch {pid_[:12]} applied by hand to pid {anc} is marked bad "
                                f"on this host ({bad[pid_].get('reason')}); not inherited",
                                details={"patch_id": pid_})
            result = runtime.apply(data, restricted=restricted)
        except BaseException as exc:  # noqa: BLE001 - a refusal is recorded, never raised
            record("inherit", pid_, outcome(exc), euid, f"from pid {anc}: {exc}")
            continue
        record("inherit", result.patch_id, result.state, euid, f"from pid {anc}")
        remember(data, restricted, result.patch_id, result.state, "inherited", anc)

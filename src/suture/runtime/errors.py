"""Refusals and failures, grouped by remedy under one root.

Every exception carries data (code, message, details) and renders late, so
that it survives pickling across the agent socket. Stable codes are listed in
docs/errors.md.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Dict, Optional, Tuple


class SutureError(Exception):
    """Root of every error Suture raises on purpose."""

    code = "SUT-E000"

    def __init__(self, message: str, *, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message, details)
        self.message = message
        self.details = dict(details or {})

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    def __reduce__(self) -> Any:
        # Refusals cross the agent socket: keep them picklable despite keyword-only details.
        return (_rebuild, (type(self), self.message, self.details))

    def to_dict(self) -> Dict[str, Any]:
        return {"error": type(self).__name__, "code": self.code,
                "message": self.message, "details": self.details}


def _rebuild(cls: Any, message: str, details: Dict[str, Any]) -> "SutureError":
    return cls(message, details=details)  # type: ignore[no-any-return]


class PatchFormatError(SutureError, ValueError):
    """The patch file is malformed, truncated, tampered with or of an unknown version."""

    code = "SUT-E100"


class UntrustedPatch(SutureError, PermissionError):
    """No key the host's trust policy accepts signed the patch (or a trusted key's signature
    does not match it); no process was contacted. Also an installed patch with no trust
    record, which agents do not apply."""

    code = "SUT-E110"


class RefusedError(SutureError):
    """The patch was refused before anything changed; the process is as it was."""

    code = "SUT-E200"


class BaselineMismatch(RefusedError):
    """The running code is not the baseline the patch was built against."""

    code = "SUT-E201"


class RestartRequired(RefusedError):
    """The change cannot be applied to live objects (layout, native code, data)."""

    code = "SUT-E203"


class NeedsHook(RefusedError):
    """The change needs a human-written hook that the patch does not carry."""

    code = "SUT-E204"


class HookFailed(RefusedError):
    """A pre-apply hook or a migration refused; nothing was changed."""

    code = "SUT-E205"


class NotQuiescent(RefusedError):
    """Old code stayed on some stack for the whole wait; nothing was changed."""

    code = "SUT-E206"


class MarkedBad(RefusedError):
    """The patch is marked bad on this host: a process died or failed its health check
    after it was applied. Not applied again until ``suture bad clear``."""

    code = "SUT-E207"


class StateDiverges(RefusedError):
    """After the commit, the process's state did not equal a fresh import of the fixed
    release (the patch's state manifest); every change was undone."""

    code = "SUT-E208"


class ObjectsNeedMigration(RefusedError):
    """Objects already in the process lack state that the code to be put in place reads
    (an attribute the fixed ``__init__`` sets and the builder cannot derive for them), and
    no migration of the patch sets it: applied (or reverted), they would raise
    AttributeError on their next call. Names the class, the attribute and the count."""

    code = "SUT-E209"


class FramesAtRisk(RefusedError):
    """Frames already running the old code of a caller would call a changed function the
    way its new version rejects (arity, keywords, result shape), and they did not finish
    within the wait. Names each frame (thread, generator, task; function; line)."""

    code = "SUT-E210"


class RevertedByApplication(RefusedError):
    """The code of a status finding (``status()["patches"][i]["live"]``) and of its audit
    row; raised only by an apply that patched such a module again and still finds it
    reverted (a change its plan cannot make twice, e.g. module state set back). The live
    objects of a module an applied patch patched are no longer the fixed ones: the module
    ran again without Suture's import hook (a reload behind another finder), a function's
    ``__code__`` was set back, a name was rebound to other code, module state was set back
    to the baseline's, the module was replaced in ``sys.modules``. The process runs old
    code there again; ``suture apply`` of the same patch patches it again."""

    code = "SUT-E211"


class OldCodeRunning(SutureError):
    """Not raised: the code of the status state ``draining``. A patch is applied, but
    frames that started before it (a thread inside the patched function, a suspended
    generator or coroutine, an asyncio task awaiting one) still run the old code, and will
    until they finish: the process is not yet protected."""

    code = "SUT-E212"


class DeadlinePassed(RefusedError):
    """The client's deadline (wall-clock epoch seconds, sent with apply/revert) had
    passed when the engine reached the commit: the client may already have given up and
    reported a failure, so nothing was changed (docs/protocol.md, "Deadline")."""

    code = "SUT-E216"


class UnitsBusy(RefusedError):
    """The application marks units of work (``suture.runtime.unit()``), and some thread
    stayed inside one for the whole wait: committing then could let that unit see old and
    new functions of the patch together. Nothing was changed (docs/engine.md,
    "Consistency across functions of one patch")."""

    code = "SUT-E217"


class FreeThreadedBuild(RefusedError):
    """The process runs a free-threaded build of CPython (``Py_GIL_DISABLED``, 3.13t/3.14t),
    where no GIL makes the commit atomic: every apply, revert and patch at import is refused
    before anything changes, also when its GIL is enabled at run time. The agent still
    answers, and ``suture status`` reports the process exposed with this reason
    (docs/engine.md, "Free-threaded builds")."""

    code = "SUT-E218"


class InterpreterUnreachable(RefusedError):
    """An interpreter of the process has no agent and none could be started in it (it was
    running code, or this Python cannot run code in another interpreter), or its agent did
    not answer: the patch was applied in no interpreter of the process, since "applied"
    means every interpreter (runtime/_interps.py, docs/interpreters.md)."""

    code = "SUT-E219"


def rebuilt(error: Dict[str, Any]) -> SutureError:
    """A refusal that crossed a socket as ``to_dict()`` data, as an exception again: its
    class when this module has it, else ``SutureError``; its code kept either way."""
    cls = globals().get(str(error.get("error")))
    if not (isinstance(cls, type) and issubclass(cls, SutureError)):
        cls = SutureError
    details = error.get("details")
    exc = cls(str(error.get("message", "")), details=details if isinstance(details, dict)
              else None)
    code = error.get("code")
    if isinstance(code, str) and code != exc.code:
        exc.code = code
    return exc


class ScriptNotPatchable(RefusedError):
    """The patch's module runs here as ``__main__`` (a script, ``python -m``), and the change
    cannot reach the code running there: its ``if __name__ == "__main__":`` block, the
    module-level statement running now, or a changed function whose frame did not return
    within the wait (the script's main loop). Names what and where; restart the script."""

    code = "SUT-E213"


class ScriptChanged(BaselineMismatch):
    """The patch's module runs here as ``__main__``, but the code running there is not the
    baseline: the script's file changed on disk since it started (or another version of it
    runs), so its running code cannot be checked against the baseline."""

    code = "SUT-E214"


class NotInDistribution(UntrustedPatch, RefusedError):
    """The patch names a distribution, but a module it touches is not one of that
    distribution's files (its ``RECORD`` in the target does not list it): a key trusted
    for one distribution may not patch another. Refused before anything changed."""

    code = "SUT-E116"


class UnprovenDistribution(UntrustedPatch, RefusedError):
    """The patch is trusted only through keys restricted to its distribution, and the
    target cannot prove its modules are that distribution's files (no installed metadata
    with a RECORD, or no distribution named at all). Refused before anything changed."""

    code = "SUT-E117"


class UnknownPatch(SutureError, LookupError):
    """No applied patch has this id."""

    code = "SUT-E300"


class RevertOrderError(SutureError):
    """A newer patch touches the same module and must be reverted first."""

    code = "SUT-E301"


class RolledBack(SutureError):
    """Applying started, failed, and every change was undone."""

    code = "SUT-E400"


class InheritFailed(SutureError):
    """A child's agent could not get, at its start, the patches applied by hand to an
    ancestor (the ancestor's agent did not answer in time, or answered nonsense). The child
    runs without them; recorded in the audit log (op ``inherit``), and ``suture status``
    reports the child exposed (runtime/_inherit.py)."""

    code = "SUT-E617"


class NotCovered(SutureError):
    """A Python process without an agent may load the patched distribution at the patch's
    baseline: ``apply --all`` cannot reach it, and ``status`` reports it exposed. Attach
    it (``suture attach PID``) or restart it under ``suture run``."""

    code = "SUT-E618"


class SystemCallFailed(SutureError, OSError):
    """A system call failed for a reason outside Suture and the patch: the process is out of
    file descriptors (EMFILE), the host too (ENFILE), a disk is full (ENOSPC, EDQUOT), access
    is denied (EACCES, EPERM), a filesystem is read-only (EROFS), memory or I/O failed.

    ``errno`` and ``filename`` are the failed call's, also after pickling (``details``
    carries them). Build one with ``os_failure`` so that every OSError is named the same
    way wherever the runtime meets it.
    """

    code = "SUT-E640"

    def __init__(self, message: str, *, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message, details=details)
        # OSError's own slots: SutureError.__init__ passed (message, details) as its args,
        # which OSError would read as (errno, strerror).
        self.errno = self.details.get("errno")
        self.strerror = self.details.get("strerror")
        self.filename = self.details.get("path")


# What each errno means for the operator, and what to do. One table for the whole runtime:
# an OSError is never reported as something else (a baseline mismatch, an internal error).
_OS_CAUSES = {
    _errno.EMFILE: ("the process is out of file descriptors",
                    "close descriptors in the application or raise its limit (`ulimit -n`, "
                    "LimitNOFILE=), then retry"),
    _errno.ENFILE: ("the host is out of file descriptors (system-wide table full)",
                    "free descriptors on the host or raise fs.file-max, then retry"),
    _errno.ENOSPC: ("the filesystem is full",
                    "free space on that filesystem, then retry"),
    _errno.EDQUOT: ("the disk quota of this user is exhausted",
                    "free space or raise the quota, then retry"),
    _errno.EROFS: ("the filesystem is read-only",
                   "remount it read-write or point Suture at a writable directory"),
    _errno.EACCES: ("permission denied", "check the owner and mode of the path, or retry as "
                    "the process's user"),
    _errno.EPERM: ("operation not permitted", "check the owner and mode of the path, or retry "
                   "as the process's user"),
    _errno.ENOMEM: ("the process is out of memory", "free memory, then retry"),
    _errno.EIO: ("an I/O error occurred (failing disk or network filesystem)",
                 "check the kernel log (`dmesg`) for the device, then retry"),
}


def explain(exc: OSError) -> Tuple[str, str, str]:
    """(errno name, what it means here, what to do) for ``exc``."""
    code = exc.errno if isinstance(exc.errno, int) else None
    if code is None:
        return "no errno", str(exc), "fix the cause, then retry"
    what, remedy = _OS_CAUSES.get(code, (exc.strerror or str(exc), "fix the cause, then retry"))
    return _errno.errorcode.get(code, f"errno {code}"), what, remedy


def os_failure(exc: OSError, path: Optional[str], doing: str,
               state: str = "Nothing was changed.") -> SystemCallFailed:
    """``exc`` as a ``SystemCallFailed`` that names its cause: raise it ``from exc``.

    ``doing`` says what was being done ("reading the source of shop.billing"), ``state``
    what the process looks like now.
    """
    code = exc.errno if isinstance(exc.errno, int) else None
    name, what, remedy = explain(exc)
    where = path if path is not None else exc.filename
    return SystemCallFailed(
        f"{doing[:1].upper()}{doing[1:]} failed in pid {os.getpid()}: {what} ({name}"
        f"{f', {where}' if where else ''}). {state} This is not a problem with the patch: "
        f"{remedy}.",
        details={"errno": code, "errno_name": name, "strerror": exc.strerror,
                 "path": None if where is None else str(where), "doing": doing})


# The process or host ran out of something: the same request succeeds once it is back.
EXHAUSTED = (_errno.EMFILE, _errno.ENFILE, _errno.ENOSPC, _errno.EDQUOT, _errno.ENOMEM)


# A file that is not there is a fact about the module (deleted, or never had a source),
# not a failure of the host: callers handle it as "no source", as before.
ABSENT = (_errno.ENOENT, _errno.ENOTDIR)


def os_cause(exc: BaseException, absent: bool = False) -> Optional[OSError]:
    """The OSError behind ``exc`` (itself, or along ``__cause__``/``__context__``: importlib
    turns a failed read into ImportError); None if there is none, or if it only says that
    the file is absent and ``absent`` is false."""
    seen = 0
    cur: Optional[BaseException] = exc
    while cur is not None and seen < 8:
        if isinstance(cur, OSError) and not isinstance(cur, SutureError):
            return None if cur.errno in ABSENT and not absent else cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


class InternalError(SutureError):
    """Suture bug; process state unknown; please report."""

    code = "SUT-E999"

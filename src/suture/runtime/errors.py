"""Refusals and failures, grouped by remedy under one root.

Every exception carries data (code, message, details) and renders late, so
that it survives pickling across the agent socket. Stable codes are listed in
docs/errors.md.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


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


class InternalError(SutureError):
    """Suture bug; process state unknown; please report."""

    code = "SUT-E999"

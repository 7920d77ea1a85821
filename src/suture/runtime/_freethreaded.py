"""Free-threaded builds (3.13t, 3.14t): detected, and refused before anything changes.

The engine's atomicity rests on the GIL (engine/commit.py): one C call, and no other thread
runs Python code until it returns. A free-threaded build (``Py_GIL_DISABLED``) has no such
lock: other threads run *during* the call, a swap of ``__code__`` races with calls that read
it (cpython issue 145272), and a patch could be seen half applied. So every change the
runtime would make refuses there with ``FreeThreadedBuild`` (SUT-E218), and the agent still
starts and answers, so that ``suture status`` reports the process exposed with the reason
(docs/engine.md, "Free-threaded builds").

Refused too: a free-threaded build whose GIL is enabled at run time (``PYTHON_GIL=1``,
``-X gil=1``, or an extension module that does not declare ``Py_mod_gil``). Its GIL can be
enabled only for the length of an import (CPython enables it around an extension import
and disables it again), so a reading of ``sys._is_gil_enabled()`` says nothing about the
commit that follows; and where it is forced on, the build's setters stop the world inside
our commit, whose effect on who holds the GIL no interpreter here can test. The reading
is reported (``details.gil_enabled``), never trusted.

``probe`` is the one seam: tests replace it in a target process (before its agent serves a
request) to make a GIL build look free-threaded, since no free-threaded interpreter can be
had on the test machines. Rejected: an environment variable, which a production process
could inherit by accident (from a shell, a container image) and would then refuse every
patch, or, worse, one meaning "pretend GIL" that turned the refusal off.
"""

from __future__ import annotations

import sys

from .errors import FreeThreadedBuild

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Dict, Optional

# Py_GIL_DISABLED, fixed for the life of the interpreter: a free-threaded build's ABI flags
# hold "t" (PEP 703; "3.13t"). Not sysconfig.get_config_var: on 3.14 it takes a module lock,
# and a fork while the agent's thread held it left the child's first status() waiting for
# ever (tests/agent/test_forking.py). Read once, at import, with no lock.
_DISABLED = "t" in getattr(sys, "abiflags", "")


def probe() -> Dict[str, Any]:
    """What this interpreter says of its build: ``free_threaded`` (compiled with
    ``Py_GIL_DISABLED``) and ``gil_enabled`` (``sys._is_gil_enabled()``, 3.13+; True on
    earlier versions, which have only GIL builds)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return {"free_threaded": _DISABLED,
            "gil_enabled": bool(is_enabled()) if callable(is_enabled) else True}


def refusal(op: str, patch: str = "", short_id: str = "") -> Optional[FreeThreadedBuild]:
    """The refusal of ``op`` ("apply", "revert", "import") here, or None on a GIL build."""
    build = probe()
    if not build.get("free_threaded"):
        return None
    gil = ("its GIL is disabled" if not build.get("gil_enabled") else
           "its GIL is enabled at the moment, which a free-threaded build does not "
           "guarantee for the length of a commit")
    what = {"apply": f"Patch {short_id} was not applied", "revert":
            f"Patch {short_id} was not reverted", "import": "The module was not patched"}
    return FreeThreadedBuild(
        f"{what.get(op, 'Nothing was changed')}: this process runs a free-threaded build of "
        f"CPython {sys.version_info[0]}.{sys.version_info[1]} (Py_GIL_DISABLED), and {gil}. "
        "Suture swaps code atomically only under the GIL; it does not patch free-threaded "
        "processes. Nothing was changed. Restart the process on the fixed release, or run it "
        "on a GIL build of CPython.",
        details={"patch": patch, "op": op, "free_threaded": True,
                 "gil_enabled": bool(build.get("gil_enabled"))})


def check(op: str, patch: str = "", short_id: str = "") -> None:
    """Raise the refusal of ``op`` on a free-threaded build."""
    refused = refusal(op, patch, short_id)
    if refused is not None:
        raise refused


def report() -> Optional[Dict[str, Any]]:
    """For ``status()`` and the agent's ``hello``: None on a GIL build, else the code and
    the reason every apply is refused here."""
    refused = refusal("apply")
    if refused is None:
        return None
    return {"code": refused.code, "message": refused.message,
            "gil_enabled": refused.details["gil_enabled"]}

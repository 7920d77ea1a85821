"""Fan one operation out to many processes, one row per process (logic behind the CLI).

Each process is contacted on its own thread; one slow or broken agent delays only its
own row. A row is plain data (``Row.to_dict()`` is what ``--json`` prints). Outcomes:

* apply: ``applied``, ``already fixed``, ``already applied``, ``pending import``,
  ``skipped`` (not affected: the process does not have the target distribution, or has
  it at another version than the patch's baseline; ``--pid`` and ``--all`` alike),
  ``refused`` (the agent changed nothing: a ``RefusedError``, a patch it cannot read,
  an unknown patch id...), ``failed`` (no answer, rolled back, internal error).
* revert: ``reverted``, ``skipped`` (``--all``: the patch is not applied there),
  ``refused``, ``failed``, ``partial`` (reverted in some interpreters of the process, and
  an interpreter could not be reached: not a success, exit code as for ``refused``).

Interpreters (issue 22): an agent that fans a request out to a process's interpreters
answers with each one's verdict (``interpreters``: id, state, code, message; main first),
in its result or, when one refused, in its error's ``details``. The row keeps that list
(``Row.interpreters``) and its reason ends with it: ``interpreters: 0 applied, 1 refused
SUT-E201``. SUT-E219 (an interpreter cannot be reached, nothing was applied) is a refusal.

``status`` is not one row per process but one report: every process against the patches
of the local store (see the comment above it).

Audit: the agent records each apply and revert in its process's own store and says in its
answer whether it could (``audit``, docs/protocol.md). When it could not (that store is
corrupt, unreadable, full or too new: common when root acts on another user's process,
whose store is that user's), the row is written here, in the store of the user running
this, with the target's pid, the peer uid the agent saw and why its store failed
(``Row.audit``). If that fails too, ``Row.audit["fallback"]`` says so and the CLI exits
non-zero: an apply recorded nowhere is never silent.
"""

from __future__ import annotations

import base64
import datetime
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...runtime import store
from ...runtime._members import canonical as canonicalize_name   # packaging's rule (PEP 503)
from ...runtime.errors import (BaselineMismatch, NotCovered, PatchFormatError, RefusedError,
                              RevertOrderError, SutureError, UnknownPatch)
from ...runtime.patchfile import Patch, load
from ..host import client

if TYPE_CHECKING:
    from . import advisories

__all__ = ["Row", "apply", "revert", "status", "status_exit_code", "ps", "agent_pids",
           "exit_code", "restart_debt", "judge_process", "not_inspectable",
           "uninspectable_fix", "interpreter_verdicts", "OK_OUTCOMES", "PATCH_STATES", "PROCESS_STATES",
           "STATUS_TIMEOUT"]

OK_OUTCOMES = ("applied", "already fixed", "already applied", "pending import", "skipped",
               "reverted", "ok")
STATUS_TIMEOUT = 10.0
APPLY_TIMEOUT = 60.0
# apply/revert carry a deadline (now + their timeout) past which the agent commits nothing;
# the client waits this much longer for the answer, so that a commit made just before the
# deadline (then post-apply hook, verification, deferred deletions up to 2 s, the audit
# row) is still reported (docs/protocol.md, "Deadline").
ANSWER_GRACE = 10.0
PROGRESS_OVER = 10

# Errors after which the process is exactly as before and the remedy concerns the patch.
_REFUSALS = (RefusedError, PatchFormatError, UnknownPatch, RevertOrderError)
# The same, by code, for errors whose class this tooling may not know: SUT-E219
# InterpreterUnreachable (an interpreter of the process cannot be reached; the agent
# applied nothing, or reverted what it had committed).
_REFUSAL_CODES = ("SUT-E219",)

Progress = Callable[[int, int, "Row"], None]


@dataclass
class Row:
    pid: int
    outcome: str                       # see the module docstring
    reason: str = ""
    code: Optional[str] = None
    result: Dict[str, Any] = field(default_factory=dict)
    error: Optional[Dict[str, Any]] = None
    # None: recorded by the target (or an agent too old to say); else the agent's report of
    # why its row was not written, with "fallback": what became of our own row.
    audit: Optional[Dict[str, Any]] = None
    # Each interpreter's verdict, main first (SPEC of issue 22: id, state, code, message);
    # None when the agent did not say (older agents, or no request was sent).
    interpreters: Optional[List[Dict[str, Any]]] = None

    @property
    def unaudited(self) -> bool:
        """The target could not record this, and neither could we."""
        return self.audit is not None and not self.audit["fallback"]["recorded"]

    def to_dict(self) -> Dict[str, Any]:
        return {"pid": self.pid, "outcome": self.outcome, "reason": self.reason,
                "code": self.code, "result": self.result, "error": self.error,
                "audit": self.audit, "interpreters": self.interpreters}


def _interpreter_list(answer: Any) -> Optional[List[Dict[str, Any]]]:
    """The ``interpreters`` list of an apply/revert result or error details, or None."""
    found = answer.get("interpreters") if isinstance(answer, dict) else None
    if not isinstance(found, list):
        return None
    return [dict(i) for i in found if isinstance(i, dict)]


def interpreter_verdicts(interpreters: Optional[Sequence[Dict[str, Any]]]) -> str:
    """``interpreters: 0 applied, 1 applied, 2 refused SUT-E201`` (empty when not said)."""
    if not interpreters:
        return ""
    parts = []
    for i in interpreters:
        state = str(i.get("state") or "?")
        code = f" {i['code']}" if i.get("code") and state in ("refused", "rolled back",
                                                               "unreachable") else ""
        parts.append(f"{i.get('id', '?')} {state}{code}")
    return "interpreters: " + ", ".join(parts)


def _error_row(pid: int, exc: SutureError) -> Row:
    outcome = ("refused" if isinstance(exc, _REFUSALS) or exc.code in _REFUSAL_CODES
               else "failed")
    interpreters = _interpreter_list(exc.details)
    said = interpreter_verdicts(interpreters)
    return Row(pid, outcome, reason=exc.message + (f" ({said})" if said else ""),
               code=exc.code, error=exc.to_dict(), interpreters=interpreters)


def _missed(answer: Any) -> Optional[Dict[str, Any]]:
    """The agent's report that its audit row was not written (None: written, or not said)."""
    report = answer.get("audit") if isinstance(answer, dict) else None
    if isinstance(report, dict) and report.get("recorded") is False:
        return dict(report)
    return None


def _fallback(op: str, pid: int, patch_id: str, row: Row, answer: Any) -> Row:
    """If the target's store did not take the audit row of ``row``, write it in ours.
    ``answer`` is where the agent said so: its result, or its error's details."""
    missed = _missed(answer)
    if missed is None:
        return row
    result = f"{row.outcome} {row.code}" if row.outcome in ("refused", "failed") else row.outcome
    detail = (f"not recorded by pid {pid} in its own store {missed.get('store') or '?'} "
              f"(uid {missed.get('uid', '?')}): {missed.get('why', '?')}; the agent saw peer "
              f"uid {missed.get('peer_uid', '?')}; recorded here by suture pid {os.getpid()}")
    try:
        store.audit(op, str((row.result or {}).get("patch") or patch_id), result, pid,
                    os.getuid(), detail)
    except SutureError as exc:
        missed["fallback"] = {"recorded": False, "store": store.db_path(), "why": exc.message,
                              "code": exc.code}
    else:
        missed["fallback"] = {"recorded": True, "store": store.db_path()}
    row.audit = missed
    return row


def exit_code(rows: Sequence[Row]) -> int:
    """1 if any row failed, else 2 if any was refused (or a revert is ``partial``: an
    interpreter still has the patch), else 4 if a Python process without an agent may
    load the patched distribution ("not covered", ``not_covered``), else 0."""
    if any(r.outcome == "failed" for r in rows):
        return 1
    if any(r.outcome in ("refused", "partial") for r in rows):
        return 2
    if any(r.outcome == "not covered" for r in rows):
        return 4
    return 0


def agent_pids(runtime_dir: Optional[str] = None) -> List[int]:
    """PIDs of the visible Python processes whose agent answers hello, or is there but
    too busy to answer it in time (its apply then gets the apply's own timeout)."""
    return sorted(p.pid for p in client.list_python_processes(runtime_dir=runtime_dir)
                  if p.agent or p.busy)


def default_parallel() -> int:
    """How many processes apply or revert at once by default: one per CPU.

    Each apply is CPU work inside its target (parse, compile, heap walks). Started in
    all of a host's processes at once, they compete for the same CPUs, and every target
    stalls for longer: on 2 CPUs, patching 4 gunicorn workers together gave 20-35 ms
    latency spikes, one at a time 3-14 ms (docs/performance.md).
    """
    return max(1, os.cpu_count() or 1)


def _fan_out(pids: Sequence[int], work: Callable[[int], Row],
             progress: Optional[Progress], parallel: int = 32) -> List[Row]:
    rows: Dict[int, Row] = {}
    if not pids:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(pids)))) as pool:
        futures = {pool.submit(_guarded, work, pid): pid for pid in pids}
        for done, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            rows[futures[fut]] = row
            if progress is not None and len(pids) > PROGRESS_OVER:
                progress(done, len(pids), row)
    return [rows[pid] for pid in pids]


def _guarded(work: Callable[[int], Row], pid: int) -> Row:
    try:
        return work(pid)
    except SutureError as exc:
        return _error_row(pid, exc)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _dist_version(dists: Dict[str, Any], name: str) -> Optional[str]:
    """The version of distribution ``name`` in a ``dists`` answer, None when not there."""
    want = _canonical(name)
    for key, value in dists.items():
        if _canonical(key) == want:
            if isinstance(value, dict):
                value = value.get("version")
            return None if value is None else str(value)
    return None


def _dists_for(patch: Patch, dists: Dict[str, Any],
               versions: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``dists`` as ``patch`` must see it: where the process's interpreters run several
    releases of its distribution (``versions``, issue 22) and one is the patch's baseline,
    the baseline (some interpreter may run the vulnerable code)."""
    name, base = str(patch.target.get("name") or ""), patch.target.get("from_version")
    found = (versions or {}).get(name) if name else None
    if not base or not isinstance(found, list) or dists.get(name) is None:
        return dists
    if any(_same_version(v, base) for v in found):
        return dict(dists, **{name: base})
    return dists


def _not_for(pid: int, patch: Patch, dists: Dict[str, Any]) -> Optional[Row]:
    """The row of a process whose ``dists`` answer says ``patch`` is not for it, before
    anything is sent (None: send it, the agent decides). One rule for ``apply --pid`` and
    ``--all`` (before issue 18, ``--pid`` sent the patch to a process without the
    distribution, whose agent answered "pending import", while ``--all`` skipped it):
    * the distribution is not installed there and none of the patch's modules is imported
      there: skipped, "not affected" (a process that runs the modules from a plain
      directory, with no metadata, is sent the patch: its agent applies it, or refuses it
      where the patch is trusted only for that distribution, which metadata must prove;
      so is one whose agent cannot tell, being older);
    * another release is: refused, SUT-E201, naming both releases as the engine does. That
      process may well run vulnerable code this patch cannot fix, which a skip with exit 0
      would hide; and its agent, if the package is not imported yet, would answer "pending
      import" for an import that can never match.
    "pending import" is then only said where the baseline release is installed."""
    if patch.target.get("kind") != "distribution" or not patch.target.get("name"):
        return None
    name = str(patch.target["name"])
    version = _dist_version(_dists_for(patch, dict(dists.get("dists") or {}),
                                       dists.get("versions")), name)
    if version is None:
        imported = dists.get("modules")
        if not isinstance(imported, dict) or any(imported.values()):
            return None
        return Row(pid, "skipped", reason=f"not affected: {name} is not installed here")
    base = patch.target.get("from_version")
    if base and not _same_version(version, base):
        return _error_row(pid, BaselineMismatch(
            f"Patch {patch.short_id} ({patch.describe()}) was not sent. The patch's baseline "
            f"is {name} {base}; this process runs {name} {version} (the installed metadata): "
            f"it needs a patch built from {name} {version}.",
            details={"baseline_version": str(base), "running_version": version}))
    return None


def apply(data: bytes, patch: Patch, pids: Sequence[int], *, select_all: bool = False,
          wait_quiescent: Optional[float] = None, runtime_dir: Optional[str] = None,
          progress: Optional[Progress] = None, parallel: Optional[int] = None,
          restricted_to: Optional[str] = None, timeout: Optional[float] = None) -> List[Row]:
    """Apply the (already validated) patch ``data`` to each of ``pids`` in parallel.

    ``restricted_to`` (from the trust record): only keys restricted to the patch's
    distribution trust it, so each agent must prove its modules are that distribution's
    files (runtime/_members.py); sent only when set, as older agents ignore it anyway."""
    encoded = base64.b64encode(data).decode("ascii")
    timeout = (APPLY_TIMEOUT if timeout is None else timeout) + (wait_quiescent or 0.0)
    dist = patch.target.get("name") if patch.target.get("kind") == "distribution" else None

    def work(pid: int) -> Row:
        if dist:
            found = client.call(pid, "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                                names=[dist], modules=[m.name for m in patch.modules])
            early = _not_for(pid, patch, found if isinstance(found, dict) else {})
            if early is not None:
                return early
        extra = {"restricted_to": restricted_to} if restricted_to else {}
        deadline = time.time() + timeout
        try:
            result = client.call(pid, "apply", timeout + ANSWER_GRACE, runtime_dir=runtime_dir,
                                 patch=encoded, wait_quiescent=wait_quiescent,
                                 deadline=deadline, **extra)
        except client.AgentTimeout as exc:
            return _error_row(pid, _unknown(exc, "apply", pid, deadline))
        except SutureError as exc:
            return _fallback("apply", pid, patch.id, _error_row(pid, exc), exc.details)
        state = str(result.get("state", "?"))
        return _fallback("apply", pid, patch.id,
                         Row(pid, state, reason=_summary(result), result=result,
                             interpreters=_interpreter_list(result)), result)

    rows = _fan_out(pids, work, progress, parallel or default_parallel())
    # --all: the Python processes it could not reach (no agent) and that may run the
    # baseline are rows too ("not covered", exit 4): "1 applied" must not read as "all".
    return rows + (not_covered(patch, runtime_dir) if select_all else [])


def revert(patch_id: str, pids: Sequence[int], *, select_all: bool = False,
           runtime_dir: Optional[str] = None, progress: Optional[Progress] = None,
           parallel: Optional[int] = None, force: bool = False) -> List[Row]:
    extra = {"force": True} if force else {}

    def work(pid: int) -> Row:
        if select_all and not _has_patch(pid, patch_id, runtime_dir):
            # Not sent: its agent would refuse it (SUT-E300) and audit a refusal for a
            # process nobody asked to revert (`--all` means "wherever it is applied").
            return Row(pid, "skipped", reason=f"patch {patch_id} is not applied here")
        deadline = time.time() + APPLY_TIMEOUT
        try:
            result = client.call(pid, "revert", APPLY_TIMEOUT + ANSWER_GRACE,
                                 runtime_dir=runtime_dir, patch_id=patch_id,
                                 deadline=deadline, **extra)
        except client.AgentTimeout as exc:
            return _error_row(pid, _unknown(exc, "revert", pid, deadline))
        except UnknownPatch as exc:
            if select_all:
                return _fallback("revert", pid, patch_id,
                                 Row(pid, "skipped", code=exc.code,
                                     reason=f"patch {patch_id} is not applied here"),
                                 exc.details)
            return _fallback("revert", pid, patch_id, _error_row(pid, exc), exc.details)
        except SutureError as exc:
            return _fallback("revert", pid, patch_id, _error_row(pid, exc), exc.details)
        return _fallback("revert", pid, patch_id,
                         Row(pid, str(result.get("state", "?")), reason=_summary(result),
                             result=result, interpreters=_interpreter_list(result)),
                         result)

    return _fan_out(pids, work, progress, parallel or default_parallel())


def _has_patch(pid: int, patch_id: str, runtime_dir: Optional[str]) -> bool:
    """Whether the agent of ``pid`` lists an applied patch whose id starts with
    ``patch_id``; True when it cannot be asked (the revert then says what is wrong)."""
    try:
        listed = client.call(pid, "list", STATUS_TIMEOUT, runtime_dir=runtime_dir)
    except SutureError:
        return True
    ids = listed.get("patches") if isinstance(listed, dict) else None
    if not isinstance(ids, list):
        return True
    return any(str(i).startswith(patch_id.lower()) for i in ids)


def _unknown(exc: client.AgentTimeout, op: str, pid: int, deadline: float) -> SutureError:
    """No answer to apply/revert: a timeout of the hello before it changed nothing, but
    after the request was sent the outcome is unknown (the deadline bounds it)."""
    if exc.details.get("op") != op:
        return exc
    when = datetime.datetime.fromtimestamp(deadline, datetime.timezone.utc)
    shown = when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return client.OutcomeUnknown(
        f"The agent of PID {pid} did not answer `{op}`. The outcome is unknown: the request "
        f"carried the deadline {shown}, after which the agent commits nothing, but it may "
        f"have committed before it. Check with `suture status --pid {pid}` (and the audit "
        "log).",
        details=dict(exc.details, deadline=deadline))


def _summary(result: Dict[str, Any]) -> str:
    parts = []
    modules = result.get("modules") or {}
    if modules:
        parts.append(", ".join(f"{m}: {s}" for m, s in sorted(modules.items())))
    if result.get("pause_ns"):
        parts.append(f"pause {result['pause_ns'] / 1e6:.2f} ms")
    # The state check (engine/verify.py): "applied" is "equal to a fresh import of the
    # fixed release" only where it says so.
    verified = result.get("verified") or {}
    equal = sorted(m for m, v in verified.items() if str(v).startswith("state verified"))
    if equal:
        parts.append(f"state of {', '.join(equal)} verified equal to a fresh import of the "
                     "fixed release")
    parts += [f"{m}: {v}" for m, v in sorted(verified.items()) if m not in equal]
    pending = sorted(m for m, s in modules.items() if s == "pending import")
    if pending:
        parts.append(f"{', '.join(pending)} will be checked against the baseline and verified "
                     "when imported")
    said = interpreter_verdicts(_interpreter_list(result))
    if said:
        parts.append(said)
    return "; ".join(parts)


# -- suture status: every process against the known patches ------------------------------
#
# Known patches are those of the local store (`suture install`). Per patch and process:
#   fixed           the patch (or a cumulative patch covering it) is applied, no module refused,
#                   its live code verified, and no frame still runs the code it replaced
#   pending import  applied, and a module it changes is not imported yet: patched on import
#   draining        applied, but frames that started before it still run the old code
#                   (SUT-E212): not yet protected, counted as exposed (exit 2, VEX affected)
#   exposed         the process has the patch's distribution at its baseline version and not
#                   the patch; or a module of an applied patch was refused at import, or is
#                   reverted by the application (SUT-E211: a reload, a monkeypatch); or it
#                   is not applied in another interpreter of the process ("refused in
#                   interpreter N"); or an interpreter could not be inspected (issue 22)
#   not affected    the distribution is not installed there, or at another version
#   unknown         the patch is not for a released version, so need cannot be told
# Per process: ok, exposed, error (could not be asked), unknown (no agent).

PATCH_STATES = ("fixed", "pending import", "draining", "exposed", "not affected", "unknown")
# States in which the process is not protected by the patch: its row goes into the
# process's ``exposed`` list (exit code 2, metrics' exposed count, VEX ``affected``).
UNPROTECTED = ("exposed", "draining")
PROCESS_STATES = ("ok", "exposed", "error", "unknown")


def status(pids: Sequence[int] = (), *, patches: Optional[Sequence[Patch]] = None,
           runtime_dir: Optional[str] = None,
           advisory_source: Optional["advisories.Source"] = None,
           inventory: bool = False, old_calls: Optional[bool] = None) -> Dict[str, Any]:
    """What is applied where and which processes are still exposed: the report that
    ``suture status --json`` prints (its shape: docs/live-processes.md).

    ``patches`` are the known patches, by default the local store's. With ``pids`` only
    those processes are asked, and one without an agent is an error. Without, every
    visible Python process: those with an agent socket are asked, the others are listed
    with state ``unknown`` (what they loaded cannot be told) and do not count as exposed.
    Raises ``StoreError`` / ``PatchFormatError`` when the store cannot be read.

    Advisories (``advisory_source``, default from ``SUTURE_ADVISORIES``: PyPI with a
    cache): each process's agent lists the distributions of its loaded modules
    (``inventory``), and every public advisory of those releases is judged per process
    (``advisories.join``): the report's ``advisories``; an exposed one makes the process
    exposed, whether or not a patch for it is known.

    Restart debt (the report's ``restart_debt``, and each process's): every process that holds a hot
    patch while the disk already has the patch's fixed release (or a newer one) of that
    distribution. The inventory, which says which release a process runs and which one
    is on disk now, is asked for that from every process with a patch applied, even with
    advisories off; with ``inventory`` (the daemon, for retiring patches) from every
    process.

    ``old_calls``: True starts counting calls into the code applied patches replaced in
    each process asked (CPython 3.12+; each applied patch's ``old_calls`` in its status),
    False stops it, None leaves it as it is (docs/live-processes.md, "Evidence that the
    old code is gone").
    """
    from . import advisories as adv_mod
    source = advisory_source if advisory_source is not None else adv_mod.Source.parse(None)
    known = list(patches) if patches is not None else [load(d) for d, _ in store.load_installed()]
    seen = {p.pid: p for p in client.list_python_processes(check_agent=False,
                                                           runtime_dir=runtime_dir)}
    if pids:
        asked, unseen = list(dict.fromkeys(pids)), []
    else:
        asked = [pid for pid in sorted(seen)
                 if os.path.exists(client.socket_path(pid, runtime_dir))]
        unseen = [pid for pid in sorted(seen) if pid not in asked]
    names = sorted({p.target["name"] for p in known if _versioned(p)})

    counting = {} if old_calls is None else {"old_calls": old_calls}

    def work(pid: int) -> Row:
        answer = client.call(pid, "status", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                             **counting)
        found = (client.call(pid, "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                             names=names) if names else {})
        wanted = inventory or source.kind != "off" or bool(answer.get("patches"))
        return Row(pid, "ok", result={"status": answer,
                                      "dists": dict(found.get("dists") or {}),
                                      "versions": dict(found.get("versions") or {}),
                                      "loaded": dict(found.get("loaded") or {}),
                                      "inventory": _inventory(pid, runtime_dir)
                                      if wanted else None})

    by_id: Dict[str, Dict[str, Any]] = {
        p.id: {"id": p.id, "target": dict(p.target), "cves": list(p.meta.get("cves") or []),
               "installed": True, "processes": []} for p in known}
    processes: List[Dict[str, Any]] = []
    for row in _fan_out(asked, work, None):
        proc: Dict[str, Any] = {"pid": row.pid, "state": "ok", "command": _command(seen, row.pid),
                "reason": "", "error": None, "applied": [], "active": [], "dists": {},
                "exposed": [], "interpreters": [], "interpreter_count": None,
                "uninspectable": []}
        processes.append(proc)
        if row.outcome != "ok":
            proc.update(state="error", reason=row.reason, error=row.error)
            continue
        if row.result["inventory"] is not None:
            proc["inventory"] = row.result["inventory"]
        judge_process(proc, row.result["status"], row.result["dists"], row.result["loaded"],
                      known, by_id, row.result["versions"])
    _judge_hand_patches(by_id, processes, runtime_dir)
    bare = agentless(unseen, seen, _candidates(by_id),
                     {p["pid"]: p["dists"] for p in processes
                      if p["state"] in ("ok", "exposed")}) if unseen else {}
    for pid in unseen:
        proc = {"pid": pid, "state": "unknown", "command": _command(seen, pid),
                "reason": f"not inspected: no agent (`suture attach {pid}`)",
                "error": None, "applied": [], "active": [], "dists": {}, "exposed": [],
                "interpreters": [], "interpreter_count": None, "uninspectable": [],
                "inventory": {"source": "none", "dists": [], "reason": (
                    "no agent: the code it loaded is unknown; judged from outside against "
                    "the known patches only")}}
        processes.append(proc)
        for entry, state, reason in bare.get(pid, []):
            if state == "unknown":
                continue
            fix = f"suture attach {pid}, then suture apply FILE --pid {pid}; or restart it"
            entry["processes"].append({"pid": pid, "state": state, "reason": reason,
                                       "fix": fix if state == "exposed" else None,
                                       "agent": False})
            if state == "exposed":
                proc["exposed"].append({"patch": entry["id"], "cves": entry["cves"],
                                        "reason": reason, "fix": fix})
                proc.update(state="exposed", reason=reason)
    debt = restart_debt(processes)
    found_adv, advisory_rows = _advisories(source, processes, by_id, known)
    exposed = [dict({"pid": p["pid"], "patch": x["patch"], "cves": x["cves"]},
                    **{k: x[k] for k in ("advisory", "interpreter") if k in x})
               for p in processes for x in p["exposed"]]
    errors: Dict[Tuple[str, str], List[int]] = {}
    reasons = dict(found_adv.errors)
    for p in processes:
        for d in (p.get("inventory") or {}).get("dists") or []:
            key = (canonicalize_name(str(d["name"])), str(d["version"]))
            if d.get("version_uncertain") and source.kind != "off":
                # files replaced before the agent could tell which release they came from
                key = (key[0], f"unknown (on disk: {key[1]})")
                reasons[key] = ("its files changed on disk before the agent could tell which "
                                "release they came from (an upgrade under the running "
                                "process): the release it runs is unknown; restart it")
            if key in reasons:
                errors.setdefault(key, []).append(p["pid"])
    return {"store": store.db_path(), "patches": list(by_id.values()),
            "processes": processes, "exposed": exposed,
            "advisories": advisory_rows, "advisory_source": found_adv.source,
            "advisory_errors": [{"package": n, "version": v, "reason": reasons[(n, v)],
                                 "pids": sorted(set(who))}
                                for (n, v), who in sorted(errors.items())],
            "advisory_notes": [{"package": n, "version": v, "note": note}
                               for (n, v), note in sorted(found_adv.notes.items())],
            "hidden": [] if pids else hidden_processes(),
            "restart_debt": debt,
            "exit_code": status_exit_code(processes)}


# -- one process with an agent: its status answer against the known patches --------------
#
# Interpreters (issue 22): the main agent merges its sub-interpreters' answers into the one
# it gives (a module applied in the main interpreter and not in another one says
# "refused in interpreter N: ...", which _applied_state calls exposed), and lists in
# `uninspectable` every interpreter it could not reach. Such an interpreter may run any
# code, old code included, so the process is never "fixed" nor "ok": each patch whose
# distribution the process has at the baseline (or that is applied there) becomes exposed
# in it, with one row per unreachable interpreter in the process's `exposed` list; when no
# known patch concerns the process, one row per interpreter with `patch: null`. The fix is
# a restart or making the interpreter reachable, not an apply: the agent refuses an apply
# while an interpreter cannot be reached (all or nothing per process, SUT-E219).

# Patch states that say the patch concerns the process: applied there, or its baseline
# release is installed there (``_judge``); "not affected" and "unknown" do not.
_CONCERNED = ("fixed", "pending import", "draining", "exposed")


def judge_process(proc: Dict[str, Any], answer: Dict[str, Any], dists: Dict[str, Any],
                  loaded: Dict[str, Any], known: Sequence[Patch],
                  by_id: Dict[str, Dict[str, Any]],
                  versions: Optional[Dict[str, Any]] = None) -> None:
    """Judge one process from its agent's ``status`` answer and ``dists``: fill ``proc``
    (a row of ``status()["processes"]``: applied, active, interpreters, exposed, state)
    and add its verdict to each entry of ``by_id`` (known patches, and the ones applied by
    hand, which are added)."""
    pid = proc["pid"]
    applied = [a for a in answer.get("patches") or [] if isinstance(a, dict)]
    interpreters = [dict(i) for i in answer.get("interpreters") or [] if isinstance(i, dict)]
    uninspectable = [dict(u) for u in answer.get("uninspectable") or [] if isinstance(u, dict)]
    proc.update(applied=applied, active=list(answer.get("active") or []), dists=dists,
                interpreters=interpreters,
                interpreter_count=len(interpreters) if interpreters else None,
                uninspectable=uninspectable)
    running = proc["active"]
    verdicts = [(by_id[p.id], _judge(p, pid, applied, _dists_for(p, dists, versions), loaded,
                                     running)) for p in known]
    for a in applied:   # applied by hand, not installed: reported as they are
        entry = by_id.get(str(a.get("id")))
        if entry is None or not entry["installed"]:
            entry = by_id.setdefault(str(a.get("id")), {
                "id": str(a.get("id")), "target": dict(a.get("target") or {}),
                "cves": list(a.get("cves") or []), "installed": False, "processes": []})
            verdicts.append((entry, _applied_state(a, pid, running)))
    # A process Suture cannot patch (a free-threaded build, SUT-E218): its exposure says
    # why, and the fix is a restart, not an apply that would be refused again.
    unpatchable = answer.get("unpatchable")
    if isinstance(unpatchable, dict):
        proc["unpatchable"] = unpatchable
        why = f"cannot be patched here ({unpatchable.get('code')}): free-threaded build"
        verdicts = [(e, (st, f"{r}; {why}", f"restart PID {pid} on the fixed release "
                         "or on a GIL build of CPython")) if st in UNPROTECTED
                    else (e, (st, r, f)) for e, (st, r, f) in verdicts]
    hidden = [not_inspectable(u) for u in uninspectable]
    fix = uninspectable_fix(pid, uninspectable)
    ids = [u.get("interpreter") for u in uninspectable]
    concerned = False
    for entry, (state, reason, why_fix) in verdicts:
        row: Dict[str, Any] = {"pid": pid, "state": state, "reason": reason, "fix": why_fix}
        if hidden and state in _CONCERNED:
            concerned = True
            row.update(state="exposed", fix=fix, uninspectable=ids, reason="; ".join(
                [reason or ("applied in every interpreter that answered"
                            if state in ("fixed", "pending import") else state)] + hidden))
            if state in UNPROTECTED:       # exposed in the interpreters asked, too
                proc["exposed"].append({"patch": entry["id"], "cves": entry["cves"],
                                        "reason": reason, "fix": fix})
            for u, text in zip(uninspectable, hidden):
                proc["exposed"].append({"patch": entry["id"], "cves": entry["cves"],
                                        "reason": text, "fix": fix,
                                        "interpreter": u.get("interpreter")})
        elif hidden and state == "not affected":
            # Judged from the interpreters asked: one that could not be may run it.
            row.update(state="unknown", reason="; ".join([reason] + hidden),
                       uninspectable=ids)
        elif state in UNPROTECTED:
            proc["exposed"].append({"patch": entry["id"], "cves": entry["cves"],
                                    "reason": reason, "fix": why_fix})
        entry["processes"].append(row)
    if hidden and not concerned:
        for u, text in zip(uninspectable, hidden):
            proc["exposed"].append({"patch": None, "cves": [], "reason": text, "fix": fix,
                                    "interpreter": u.get("interpreter")})
    if proc["exposed"]:
        proc["state"] = "exposed"
        if hidden and not proc["reason"]:
            proc["reason"] = "; ".join(hidden)


def not_inspectable(u: Dict[str, Any]) -> str:
    """``not fully inspectable: interpreter 3 (legacy capi): <reason>``, from one entry of
    a status answer's ``uninspectable``."""
    whence = f" ({u['whence']})" if u.get("whence") else ""
    return (f"not fully inspectable: interpreter {u.get('interpreter', '?')}{whence}: "
            f"{u.get('reason') or 'its agent did not answer'}")


def uninspectable_fix(pid: int, uninspectable: Sequence[Dict[str, Any]]) -> str:
    """What makes a process with unreachable interpreters inspectable again."""
    ids = ", ".join(str(u.get("interpreter", "?")) for u in uninspectable)
    which = f"interpreter{'s' if len(uninspectable) != 1 else ''} {ids}"
    return (f"restart PID {pid} (under `suture run`, every interpreter starts its own "
            f"agent), or make {which} reachable: call suture.agent.start() in it, then "
            f"`suture status --pid {pid}`")


# -- restart debt (issue 18, item 4) ------------------------------------------------------
#
# A hot patch is a bridge to the fixed release, not a place to live: once the disk holds
# that release (`pip install -U` under the running process), a restart runs it from disk
# and the patch can retire. Until then the process owes a restart. The agent's inventory
# says both halves: `version` is the release the process runs (the one it first saw), and
# `version_on_disk` the one there now when it differs. `dists` cannot be used: it reads
# the disk, so it says the fixed release for a process that still runs the old one.

def restart_debt(processes: List[Dict[str, Any]], now: Optional[float] = None
                 ) -> List[Dict[str, Any]]:
    """Rows of restart debt, also set on each process as ``restart_debt``: a distribution
    patch applied in a process that runs the patch's baseline release (inventory
    ``version``) while the disk holds its fixed release or a newer one
    (``version_on_disk``). ``held_for``: seconds since the agent applied the patch."""
    now = time.time() if now is None else now
    out: List[Dict[str, Any]] = []
    for p in processes:
        rows: List[Dict[str, Any]] = []
        p["restart_debt"] = rows
        if p["state"] not in ("ok", "exposed"):
            continue
        running = {canonicalize_name(str(d["name"])): d
                   for d in (p.get("inventory") or {}).get("dists") or []
                   if (p.get("inventory") or {}).get("source") == "agent"
                   and not d.get("version_uncertain")}
        for a in p["applied"]:
            target = a.get("target") or {}
            if not (_dist_target(target) and target.get("to_version")):
                continue
            d = running.get(canonicalize_name(str(target["name"])))
            if d is None or not _same_version(d["version"], target["from_version"]):
                continue
            disk, fixed = _version(d.get("version_on_disk")), _version(target["to_version"])
            if disk is None or fixed is None or disk < fixed:
                continue
            at = a.get("applied_at")
            held = round(max(0.0, now - float(at)), 3) if isinstance(at, (int, float)) else None
            rows.append({
                "pid": p["pid"], "patch": str(a.get("id")), "distribution": target["name"],
                "version_running": d["version"], "version_on_disk": d["version_on_disk"],
                "fixed_in": target["to_version"], "applied_at": at, "held_for": held,
                "fix": f"restart PID {p['pid']} to run {d['version_on_disk']} from disk; "
                       "the hot patch can then retire"})
        out += rows
    return out


def _inventory(pid: int, runtime_dir: Optional[str]) -> Dict[str, Any]:
    """What process ``pid`` runs, from its agent's ``inventory`` (docs/protocol.md); from
    an agent too old to have that op, the distributions ``dists`` says are imported, with
    no file checks (``source``: "dists")."""
    try:
        answer = client.call(pid, "inventory", STATUS_TIMEOUT, runtime_dir=runtime_dir)
        return dict(answer, source="agent")
    except SutureError as exc:
        if exc.code != "SUT-E601":
            return {"source": "error", "reason": exc.message, "dists": []}
    try:
        found = client.call(pid, "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir)
    except SutureError as exc:
        return {"source": "error", "reason": exc.message, "dists": []}
    loaded = found.get("loaded") or {}
    return {"source": "dists", "dists": [
        {"name": n, "version": str(v), "version_on_disk": None, "changed": [],
         "changed_count": 0} for n, v in sorted((found.get("dists") or {}).items())
        if loaded.get(n) is True]}


def _advisories(source: Any, processes: List[Dict[str, Any]], by_id: Dict[str, Dict[str, Any]],
                known: Sequence[Patch]) -> Tuple[Any, List[Dict[str, Any]]]:
    """Look up and judge the advisories of every release the processes run (above)."""
    from . import advisories as adv_mod
    for p in processes:
        if "inventory" not in p:
            p["inventory"] = (
                {"source": "error", "dists": [], "reason": f"could not be asked: {p['reason']}"}
                if p["state"] == "error" else
                {"source": "off", "dists": [], "reason": "advisories are off"})
    releases = {(str(d["name"]), str(d["version"])) for p in processes
                for d in (p.get("inventory") or {}).get("dists") or []
                if not d.get("version_uncertain")}
    if source.kind == "off" or not releases:
        return adv_mod.Lookup(source=source.describe()), []
    found = adv_mod.lookup(releases, source)
    candidates = [adv_mod.Candidate(p.id, dict(p.target), list(p.meta.get("cves") or []),
                                    "installed") for p in known]
    seen = {c.id for c in candidates}
    for entry in by_id.values():
        if entry["id"] not in seen:
            seen.add(entry["id"])
            candidates.append(adv_mod.Candidate(entry["id"], entry["target"], entry["cves"],
                                                "applied by hand"))
    candidates += [c for c in _feed_patches() if c.id not in seen]
    protected = {(row["pid"], entry["id"]): row["state"] for entry in by_id.values()
                 for row in entry["processes"]}
    asked = [p for p in processes if (p.get("inventory") or {}).get("dists")]
    rows = adv_mod.join(asked, found, candidates, protected)
    return found, rows


def _feed_patches() -> List[Any]:
    """Patches synced from feeds into this host's mirrors (not installed): each a
    candidate fix. Their signatures were checked by `suture sync`; unreadable ones are
    skipped (sync reports those)."""
    from pathlib import Path

    from . import advisories as adv_mod
    out = []
    for path in sorted(Path(store.state_dir()).glob("feeds/*/patches/*.suture")):
        try:
            p = load(path.read_bytes())
        except (OSError, SutureError):
            continue
        out.append(adv_mod.Candidate(p.id, dict(p.target), list(p.meta.get("cves") or []),
                                     f"synced to {path.parent.parent.name}"))
    return out


def hidden_processes() -> List[Dict[str, Any]]:
    """Processes that look like Python (their command line, which anyone may read) but
    whose executable this user may not read: other users' processes, for a non-root
    user. Listed so that "nothing exposed" is never said about what was not seen."""
    if os.geteuid() == 0:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            os.readlink(f"/proc/{pid}/exe")
            continue
        except PermissionError:
            pass
        except OSError:
            continue          # gone, or a kernel thread
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and "python" in os.path.basename(argv[0]).lower():
            out.append({"pid": pid, "command": " ".join(argv),
                        "reason": "not ours to inspect (its executable is closed to this "
                                  "user): run as root, or as its user"})
    return out


def status_exit_code(processes: Sequence[Dict[str, Any]]) -> int:
    """2 if any process is exposed, else 1 if any could not be asked, else 0.

    Exposure wins over errors: it is a fact that needs action whatever the other
    processes say. A process without an agent is exposed when it may load a patch's
    distribution at the baseline (``agentless``); otherwise (state ``unknown``) it counts
    for nothing.
    """
    states = {p["state"] for p in processes}
    return 2 if "exposed" in states else 1 if "error" in states else 0


def _command(seen: Dict[int, client.PythonProcess], pid: int) -> str:
    return seen[pid].command if pid in seen else ""


def _versioned(patch: Patch) -> bool:
    """A patch built from two releases of a distribution (so its baseline has a version)."""
    return patch.target.get("kind") == "distribution" and bool(patch.target.get("from_version"))


def _version(text: Any) -> Any:
    from packaging.version import InvalidVersion, Version   # for distribution patches only

    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _same_version(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    va, vb = _version(a), _version(b)
    return va == vb if va is not None and vb is not None else str(a) == str(b)


def _covers(applied: Dict[str, Any], patch: Patch) -> bool:
    """Whether ``applied`` (a status() entry) is a cumulative patch that covers ``patch``.

    The engine lets a patch replace an applied one built from the same baseline of the
    same target (docs/engine.md, "Stacking and cumulative patches"), in either direction.
    Only a replacement at least as new (to_version) that patches every module ``patch``
    patches counts as having ``patch``'s fixes; an older one leaves the process exposed.
    """
    theirs, mine = applied.get("target") or {}, patch.target
    if not (_versioned(patch) and theirs.get("kind") == "distribution"
            and theirs.get("name") == mine["name"]
            and _same_version(theirs.get("from_version"), mine["from_version"])):
        return False
    new, old = _version(theirs.get("to_version")), _version(mine.get("to_version"))
    if new is None or old is None or new < old:
        return False
    return {m.name for m in patch.modules} <= set(applied.get("modules") or {})


def _applied_state(applied: Dict[str, Any], pid: int,
                   active: Sequence[Dict[str, Any]] = ()) -> Tuple[str, str, Optional[str]]:
    """(state, reason, fix) of one patch as applied in a process, from its module states,
    the agent's check of the live code (``live``) and the frames still on old code."""
    modules = applied.get("modules") or {}
    refused = sorted(f"{m} {s}" for m, s in modules.items() if str(s).startswith("refused"))
    if refused:
        # "refused in interpreter N: why": the agent's merge of its interpreters (issue 22).
        # Another interpreter lacks the patch: an apply reaches every interpreter (and
        # refuses, changing nothing, where one cannot take it); else a restart.
        elsewhere = all(str(s).startswith("refused in interpreter") for s in modules.values()
                        if str(s).startswith("refused"))
        if elsewhere:
            return ("exposed", "; ".join(refused),
                    f"suture apply FILE --pid {pid} (applies it in every interpreter of the "
                    f"process, or refuses and names why), or restart PID {pid} on the fixed "
                    "release")
        return ("exposed", "; ".join(refused),
                f"restart PID {pid} on the fixed release (it imported code that is not the "
                "patch's baseline)")
    # The agent verified each patched module's live code (engine/reporting.py): a reload
    # the import hook did not serve, a monkeypatch, brought old code back.
    live = applied.get("live") or {}
    reverted = sorted(f"{m} {v}" for m, v in live.items() if v != "verified")
    if reverted:
        return ("exposed", "; ".join(reverted),
                f"suture apply FILE --pid {pid} (patches the reverted modules again)")
    # One rule for frames that started before the patch and still run the code it replaced
    # (docs/live-processes.md, "Status states"): not protected until they finish.
    old = [a for a in active if a.get("patch") == applied.get("id")]
    if old:
        where = "; ".join(_where(a) for a in old[:5]) + (
            f"; and {len(old) - 5} more" if len(old) > 5 else "")
        return ("draining", f"fixed for new calls; {len(old)} frame(s) still run the old code "
                f"(SUT-E212): {where}",
                f"wait until they finish, or restart PID {pid}")
    pending = sorted(m for m, s in modules.items() if s == "pending import")
    if pending:
        return ("pending import", f"{', '.join(pending)} not imported yet; patched when "
                "imported", None)
    return "fixed", "", None


def _where(a: Dict[str, Any]) -> str:
    """One frame of old code, as ``status()["active"]`` lists it: what, where, which line."""
    kind = str(a.get("where") or "?")
    name = a.get("thread") if kind == "thread" else a.get("task") if kind == "task" else None
    line = f" line {a['line']}" if a.get("line") is not None else ""
    where = f" of interpreter {a['interpreter']}" if a.get("interpreter") not in (None, 0) else ""
    return (f"{a.get('qualname', '?')}{line} in {kind}" + (f" {name!r}" if name else "")
            + where)


def _judge(patch: Patch, pid: int, applied: Sequence[Dict[str, Any]], dists: Dict[str, Any],
           loaded: Dict[str, Any], active: Sequence[Dict[str, Any]] = ()
           ) -> Tuple[str, str, Optional[str]]:
    """(state, reason, fix) of the known ``patch`` in process ``pid``."""
    exact = [a for a in applied if a.get("id") == patch.id]
    if exact:
        return _applied_state(exact[0], pid, active)
    for a in applied:
        if _covers(a, patch):
            state, reason, fix = _applied_state(a, pid, active)
            by = f"by cumulative patch {str(a.get('id'))[:12]} ({a.get('describe', '')})"
            return state, by + (f"; {reason}" if reason else ""), fix
    if not _versioned(patch):
        return ("unknown", "not applied; the patch is not built from a released version, so "
                "whether this process needs it cannot be told", None)
    name, base = patch.target["name"], patch.target["from_version"]
    version = dists.get(name)
    if version is None:
        return "not affected", f"{name} is not installed here", None
    if not _same_version(version, base):
        fixed = " (the fixed release)" if _same_version(version,
                                                        patch.target.get("to_version")) else ""
        return "not affected", f"runs {name} {version}{fixed}; the patch is for {base}", None
    imported = loaded.get(name)
    how = ("imported" if imported is True else "not imported yet" if imported is False
           else "installed")
    return ("exposed", f"runs {name} {version} ({how}) without this patch",
            f"suture apply FILE --pid {pid}")


def ps(*, dists: Sequence[str] = (), runtime_dir: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every visible Python process; for those with an agent, its patch ids, and the
    versions of the distributions ``dists`` (all when empty) with whether each is imported,
    and ``interpreters``: how many interpreters the process has, main included, as its
    agent's ``hello`` says (None: no agent, or one too old to say; issue 22).

    First removes the sockets of agents whose process is gone (killed, crashed: nothing
    ran to remove them); see ``_agent.prune_dead_sockets`` for what counts as gone."""
    from ...runtime._agent import prune_dead_sockets
    prune_dead_sockets(runtime_dir)
    procs = client.list_python_processes(runtime_dir=runtime_dir)
    rows = [dict(p.to_dict(), patches=[], dists={}, loaded={},
                 interpreters=_interpreter_count(p.hello)) for p in procs]

    def enrich(row: Dict[str, Any]) -> None:
        fields: Dict[str, Any] = {"names": list(dists)} if dists else {}
        try:
            row["patches"] = list(client.call(row["pid"], "list", STATUS_TIMEOUT,
                                              runtime_dir=runtime_dir).get("patches", []))
            found = client.call(row["pid"], "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                                **fields)
            row["dists"] = dict(found.get("dists") or {})
            row["loaded"] = dict(found.get("loaded") or {})
        except SutureError as exc:
            row["agent_error"] = exc.message

    with_agent = [r for r in rows if r["agent"]]
    if with_agent:
        with ThreadPoolExecutor(max_workers=min(32, len(with_agent))) as pool:
            list(pool.map(enrich, with_agent))
    return sorted(rows, key=lambda r: r["pid"])


def _interpreter_count(hello: Dict[str, Any]) -> Optional[int]:
    """``hello``'s count of interpreters (None when absent or not a count)."""
    n = hello.get("interpreters")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


# -- children and processes without an agent (issue 16) ----------------------------------
#
# A patch applied by hand (`suture apply`, not installed) reaches the processes its holder
# starts later through their agents (runtime/_inherit.py). Status checks that it did: every
# such patch is judged against every process asked, as installed patches are. A process
# that runs the patch's distribution at its baseline and lacks the patch is exposed, named
# with the holder ("applied by hand to pid P, not here"). Holders are the processes that
# report the patch now, and processes that had it applied and have exited (audit rows of
# op `apply`, whose detail carries the target and the holder's parent): those are judged
# only against the descendants of that parent, when it is alive and has an agent (a
# reloader's next child, a pool's next worker), so an old row does not make every process
# of the host exposed forever.
# Processes without an agent are judged from outside (tooling/host/outside.py): the
# distribution at the baseline where they may import it is "exposed: no agent".

def _dist_target(target: Dict[str, Any]) -> bool:
    return target.get("kind") == "distribution" and bool(target.get("from_version"))


def _roots(holders: Sequence[int]) -> List[int]:
    """The holders that descend from no other holder (who got it by hand, not inherited)."""
    from ..host import outside
    return sorted(h for h in holders if not any(outside.descends(h, o) for o in holders
                                                if o != h)) or sorted(holders)


def _hand_reason(entry: Dict[str, Any], holders: Sequence[int], gone: bool) -> str:
    roots = _roots(holders)
    who = f"pid{'s' if len(roots) != 1 else ''} {', '.join(map(str, roots))}"
    more = len(holders) - len(roots)
    return (f"patch {entry['id'][:12]} was applied by hand to {who}"
            + (" (exited)" if gone else "") + ", not here"
            + (f" ({more} process{'es' if more != 1 else ''} started by it inherited it)"
               if more > 0 else "")
            + ": apply it or restart under an installed patch")


def _has_or_covers(applied: Sequence[Dict[str, Any]], entry: Dict[str, Any]) -> bool:
    mine = entry["target"]
    for a in applied:
        if a.get("id") == entry["id"]:
            return True
        theirs = a.get("target") or {}
        if (_dist_target(mine) and _dist_target(theirs) and theirs.get("name") == mine["name"]
                and _same_version(theirs.get("from_version"), mine["from_version"])):
            new, old = _version(theirs.get("to_version")), _version(mine.get("to_version"))
            if new is not None and old is not None and new >= old:
                return True
    return False


def _gone_hand_patches(live: Dict[str, Any]) -> List[Tuple[Dict[str, Any], int, int]]:
    """(entry, holder pid, its parent) for patches applied by hand, and not reverted, in
    processes that have exited, from the audit log's newest rows; skipped when the log
    cannot be read (status reads the store anyway and reports that)."""
    import json
    try:
        rows = store.audit_log(limit=2000)
    except SutureError:
        return []
    latest: Dict[Tuple[str, int], Dict[str, Any]] = {}
    reverted: Dict[str, int] = {}     # patch id -> seq of its newest revert, anywhere
    for r in rows:
        if r.get("op") in ("apply", "revert") and r.get("patch_id"):
            latest[(str(r["patch_id"]), int(r.get("pid") or 0))] = r
            if r["op"] == "revert" and r.get("result") == "reverted":
                reverted[str(r["patch_id"])] = int(r.get("seq") or 0)
    out: List[Tuple[Dict[str, Any], int, int]] = []
    for (patch_id, pid), r in latest.items():
        detail = str(r.get("detail") or "")
        # reverted somewhere after it was applied here: the operator took it back
        if int(r.get("seq") or 0) < reverted.get(patch_id, -1):
            continue
        if (r["op"] != "apply" or r.get("result") not in ("applied", "pending import")
                or "target=" not in detail or os.path.exists(f"/proc/{pid}")):
            continue
        try:
            target = json.loads(detail.partition("target=")[2])
            parent = int(detail.partition("ppid=")[2].partition(";")[0])
        except ValueError:
            continue
        if not isinstance(target, dict) or parent <= 1 or not os.path.exists(f"/proc/{parent}"):
            continue
        entry = live.get(patch_id) or {"id": patch_id, "target": target, "cves": [],
                                       "installed": False, "processes": []}
        out.append((entry, pid, parent))
    return out


def _judge_hand_patches(by_id: Dict[str, Dict[str, Any]], processes: List[Dict[str, Any]],
                        runtime_dir: Optional[str]) -> None:
    """Add the verdicts of patches applied by hand in other processes (comment above)."""
    from ..host import outside
    asked = [p for p in processes if p["state"] in ("ok", "exposed")]
    hand = {i: e for i, e in by_id.items() if not e["installed"]}
    holders = {i: [r["pid"] for r in e["processes"] if r["state"] in ("fixed",
                                                                       "pending import")]
               for i, e in hand.items()}
    judged: List[Tuple[Dict[str, Any], List[int], bool, Optional[int]]] = [
        (e, holders[i], False, None) for i, e in hand.items() if holders[i]]
    exited: Dict[Tuple[str, int], List[int]] = {}
    with_agent = {p["pid"] for p in asked}
    for entry, pid, ppid in _gone_hand_patches(hand):
        # Only a parent with an agent (a reloader, a pool, a pre-fork master under Suture)
        # restarts what it had: a shell or a test runner is the parent of unrelated programs.
        if ppid not in with_agent or (entry["id"] in by_id and by_id[entry["id"]]["installed"]):
            continue
        by_id.setdefault(entry["id"], entry)
        exited.setdefault((entry["id"], ppid), []).append(pid)
    judged += [(by_id[i], sorted(pids), True, ppid) for (i, ppid), pids in exited.items()]
    names = sorted({e["target"]["name"] for e, _, _, _ in judged if _dist_target(e["target"])})
    missing = [p for p in asked if any(n not in p["dists"] for n in names)]

    def ask(p: Dict[str, Any]) -> None:
        try:
            found = client.call(p["pid"], "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                                names=[n for n in names if n not in p["dists"]])
            p["dists"].update(found.get("dists") or {})
        except SutureError:
            pass

    if missing:
        with ThreadPoolExecutor(max_workers=min(32, len(missing))) as pool:
            list(pool.map(ask, missing))
    for entry, who, gone, parent in judged:
        done = {r["pid"] for r in entry["processes"]}
        for p in asked:
            if p["pid"] in done or p["pid"] in who or _has_or_covers(p["applied"], entry):
                continue
            if parent is not None and not outside.descends(p["pid"], parent):
                continue
            target = entry["target"]
            if not _dist_target(target):
                if any(outside.descends(p["pid"], h) for h in who):
                    entry["processes"].append({
                        "pid": p["pid"], "state": "unknown", "fix": None,
                        "reason": _hand_reason(entry, who, gone).split(": apply")[0]
                        + "; the patch is not built from a released version, so whether "
                          "this process runs its code cannot be told"})
                continue
            version = p["dists"].get(target["name"])
            if version is None or not _same_version(version, target["from_version"]):
                state, reason, fix = ("not affected", f"runs {target['name']} {version}; the "
                                      f"patch is for {target['from_version']}" if version
                                      else f"{target['name']} is not installed here", None)
            else:
                state, reason = "exposed", _hand_reason(entry, who, gone)
                fix = f"suture apply FILE --pid {p['pid']}"
            entry["processes"].append({"pid": p["pid"], "state": state, "reason": reason,
                                       "fix": fix})
            if state == "exposed":
                p["exposed"].append({"patch": entry["id"], "cves": entry["cves"],
                                     "reason": reason, "fix": fix})
                p["state"] = "exposed"


def _candidates(by_id: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The entries (known or applied by hand) a process without an agent is judged on."""
    return [e for e in by_id.values() if _dist_target(e["target"])]


def agentless(pids: Sequence[int], seen: Dict[int, client.PythonProcess],
              entries: Sequence[Dict[str, Any]], parents: Dict[int, Dict[str, Any]]
              ) -> Dict[int, List[Tuple[Dict[str, Any], str, str]]]:
    """For each process without an agent: (entry, state, reason) per distribution patch.

    State "exposed" (baseline installed where it may import from, or a forked child of a
    process whose agent reports the distribution at the baseline), "not affected" (another
    version), or "unknown" (it cannot be told from outside). ``parents``: pid -> the
    ``dists`` answer of processes with an agent, for the forked-child rule."""
    from ..host import outside
    out: Dict[int, List[Tuple[Dict[str, Any], str, str]]] = {}
    for pid in pids:
        proc = seen.get(pid)
        version = proc.python if proc is not None else "unknown"
        rows: List[Tuple[Dict[str, Any], str, str]] = []
        parent = outside.ppid(pid)
        forked = (parent in parents and parent in seen and proc is not None
                  and seen[parent].executable == proc.executable
                  and seen[parent].command == proc.command)
        places = outside.site_dirs(pid, version) if entries else []
        for e in entries:
            t = e["target"]
            name, base = t["name"], t["from_version"]
            found, where, dirs = outside.find_dist(pid, version, name, places)
            how = f"{where}"
            if found is None and forked:
                found = parents[parent].get(name)
                how = f"forked from pid {parent}, whose agent reports it"
            if found is None:
                rows.append((e, "unknown", f"{name} not found where it may import from "
                             f"({len(dirs)} director{'y' if len(dirs) == 1 else 'ies'} "
                             "searched); a path set at run time cannot be seen from outside"))
            elif _same_version(found, base):
                rows.append((e, "exposed", f"no agent, and it may load {name} {found} "
                             f"({how}): attach it or restart it"))
            else:
                rows.append((e, "not affected", f"runs {name} {found} ({how}); the patch is "
                             f"for {base}"))
        out[pid] = rows
    return out


def not_covered(patch: Patch, runtime_dir: Optional[str] = None) -> List[Row]:
    """``apply``/``revert --all``: a row "not covered" for each Python process without an
    agent that may load ``patch``'s distribution at its baseline (see ``agentless``)."""
    if not _versioned(patch):
        return []
    procs = {p.pid: p for p in client.list_python_processes(runtime_dir=runtime_dir)}
    # A socket whose agent did not answer hello (busy, stale) was not applied to either.
    bare = sorted(pid for pid, p in procs.items() if not p.agent)
    if not bare:
        return []
    entry = {"id": patch.id, "target": dict(patch.target)}
    name = patch.target["name"]
    parents: Dict[int, Dict[str, Any]] = {}
    from ..host import outside
    for pid in {outside.ppid(b) for b in bare}:
        if pid in procs and procs[pid].agent:
            try:
                parents[pid] = dict(client.call(pid, "dists", STATUS_TIMEOUT,
                                                runtime_dir=runtime_dir,
                                                names=[name]).get("dists") or {})
            except SutureError:
                continue
    rows = []
    for pid, verdicts in agentless(bare, procs, [entry], parents).items():
        for _, state, reason in verdicts:
            if state == "exposed":
                if procs[pid].socket:
                    reason = (f"its agent did not answer ({procs[pid].agent_error}); "
                              + reason.replace("no agent, and it", "it"))
                rows.append(Row(pid, "not covered", code=NotCovered.code, reason=reason,
                                result={"command": procs[pid].command}))
    return rows

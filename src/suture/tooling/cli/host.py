"""CLI, live processes on this host: ``suture ps``, ``attach``, ``apply``, ``revert``,
``status``, ``run`` (logic in tooling/host and tooling/fleet/fanout.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import click

from ...runtime.errors import SutureError
from ._common import _UNSIGNED_OPT, _columns, _emit_json, _fail, _verified, _when, _wrap_column


_PARALLEL_OPT = click.option(
    "--parallel", type=click.IntRange(min=1), default=None, metavar="N",
    help="Processes patched at once (default: one per CPU; each apply is CPU work in its "
         "process, and more at once only makes every target stall longer).")

_PID_OPT = click.option("--pid", "pids", type=int, multiple=True, metavar="PID",
                        help="A target process (repeatable).")
_ALL_OPT = click.option("--all", "select_all", is_flag=True,
                        help="Every visible Python process with an agent (one too busy "
                             "to answer at once included).")


def _one_target_form(pids: Sequence[int], select_all: bool) -> None:
    """A usage error (exit 64), checked before anything else (the patch file's signature
    included): the targets are --pid PID... or --all, not both and not neither."""
    if bool(pids) == select_all:
        raise click.UsageError("Give the target processes with --pid PID (repeatable) or "
                               "--all, not both and not neither. Nothing was changed.")


def _targets(pids: Sequence[int], select_all: bool) -> List[int]:
    from ..fleet.fanout import agent_pids

    _one_target_form(pids, select_all)
    return list(dict.fromkeys(pids)) if pids else agent_pids()


def _progress(done: int, total: int, row: Any) -> None:
    click.echo(f"[{done}/{total}] PID {row.pid}: {row.outcome}", err=True)


def _render_rows(rows: Sequence[Any], verb: str) -> None:
    if not rows:
        click.echo(f"no process to {verb} (none given, or no Python process with an agent "
                   "answered; see `suture ps`)")
        return
    click.echo(f"{'PID':>7}  {'RESULT':<18} DETAIL")
    columns = _columns()
    for r in rows:
        label = f"{r.outcome} {r.code}" if r.outcome in ("refused", "failed") else r.outcome
        # A label longer than its column (a long outcome and code) pushes DETAIL to the right;
        # the wrapped lines then start under the detail's first character.
        head = f"{r.pid:>7}  {label:<18} "
        click.echo(head + _wrap_column(str(r.reason), len(head), columns))
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    click.echo("\n" + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
               + f" (of {len(rows)} process{'es' if len(rows) != 1 else ''})")
    if counts.get("partial"):
        click.echo("partial: an interpreter of the process could not be reached and still "
                   "has the patch; `suture status --pid PID` names it, revert again once it "
                   "is reachable, or restart the process.")
    if counts.get("not covered"):
        click.echo("not covered: Python processes without an agent that may run the patched "
                   "release; attach them (`suture attach PID`) or restart them under "
                   "`suture run`.")


def _audit_notes(rows: Sequence[Any], code: int) -> int:
    """Say on stderr which rows the target's own store did not record (fanout.py wrote them
    in ours), and which no store recorded: then the exit code is 1 unless already 1 or 3
    (docs/errors.md), because a change recorded nowhere must not pass for a clean run
    (nor for "not covered", 4)."""
    for r in rows:
        a = r.audit
        if a is None:
            continue
        why = f"{a.get('why', '?')}" + (f" [{a['code']}]" if a.get("code") else "")
        theirs = f"its store {a.get('store') or '?'} (uid {a.get('uid', '?')}): {why}"
        fb = a["fallback"]
        if fb["recorded"]:
            click.echo(f"warning: PID {r.pid}: not recorded in the process's own audit log, "
                       f"{theirs}; recorded in yours instead ({fb['store']})", err=True)
        else:
            click.echo(f"error: PID {r.pid}: {r.outcome} but recorded in NO audit log: {theirs}; "
                       f"and yours ({fb['store']}): {fb['why']} [{fb['code']}]. Record it by "
                       f"hand and repair a store (`suture audit verify`).", err=True)
    if any(r.unaudited for r in rows) and code in (0, 2, 4):
        return 1
    return code


@click.command()
@click.option("--dist", "dists", multiple=True, metavar="NAME",
              help="Only report these distributions (repeatable; default: all, "
                   "shown when imported).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def ps(dists: Sequence[str], as_json: bool) -> None:
    """List the Python processes you may see, their agents and applied patches.

    INTERP: how many interpreters the process has (main and sub-interpreters), as its
    agent says; "?" when there is no agent or it is too old to say. Processes of other
    users are listed only when you are root.
    """
    from ..fleet.fanout import ps as do_ps

    rows = do_ps(dists=dists)
    if as_json:
        _emit_json({"processes": rows})
        return
    if not rows:
        click.echo("no Python process visible")
        return
    click.echo(f"{'PID':>7}  {'USER':<10} {'PYTHON':<8} {'AGENT':<6} {'PATCHES':<14} "
               f"{'INTERP':<6} COMMAND")
    hint = False
    columns = _columns()
    for r in rows:
        agent = ("yes" if r["agent"] else "busy" if r.get("busy")
                 else "stale" if r.get("socket") else "no")
        patches = ",".join(p[:12] for p in r["patches"]) or "-"
        # How many interpreters (main included), as the agent's hello says; "?" when no
        # agent answered or it is too old to say.
        interp = str(r["interpreters"]) if r.get("interpreters") else "?"
        click.echo(f"{r['pid']:>7}  {r['user']:<10} {_minor(r['python']):<8} {agent:<6} "
                   f"{patches:<14} {interp:<6} {r['command'][:80]}")
        used = _uses(r["dists"], r["loaded"], bool(dists))
        if used:
            click.echo(f"{'':>9}uses " + _wrap_column(", ".join(used), 14, columns))
        if r.get("agent_error"):
            click.echo(f"{'':>9}\u2514 {r['agent_error']}")
        if (r.get("hello") or {}).get("free_threaded"):
            click.echo(f"{'':>9}\u2514 free-threaded build: its agent refuses every apply "
                       "(SUT-E218; restart it on a GIL build)")
        hint = hint or not (r["agent"] or r.get("busy"))
    if hint:
        click.echo("\nProcesses without an agent cannot be patched: start them under "
                   "`suture run`, call suture.agent.start() in them, or `suture attach PID`.")


def _minor(python: str) -> str:
    """The PYTHON column: ``3.X`` for every process. Only an agent can tell the micro
    version (``3.11.7``); from outside, the executable's name or its libpython tells
    ``3.11``. One precision for all rows, so that equal versions look equal; ``--json``
    keeps what was known (``python``)."""
    parts = python.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) \
        else python


def _uses(found: Dict[str, Any], loaded: Dict[str, Any], asked: bool) -> List[str]:
    """``NAME VERSION`` of each distribution a process uses, as ``suture status`` names
    them: the normalised name (``PyYAML`` and ``pyyaml`` are one distribution, however it
    was installed or asked for), sorted by it. Without ``--dist``, the imported ones only;
    with it, every one asked for, marked when not imported (or when that is unknown)."""
    from ...runtime._members import canonical as canonicalize_name   # packaging's rule

    out = []
    for name, version in found.items():
        imported = loaded.get(name)
        if not asked and not imported:
            continue
        mark = ("" if imported else " (not imported yet)" if imported is False
                else " (imported: unknown)")
        out.append((str(canonicalize_name(name)), f"{canonicalize_name(name)} {version}{mark}"))
    return [text for _, text in sorted(out)]


@click.command()
@click.argument("pids", type=int, nargs=-1, required=True, metavar="PID...")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              metavar="SECONDS", help="Longest wait for each process to reach a safe point.")
@click.option("--json", "as_json", is_flag=True, help="Print one row per process as JSON.")
def attach(pids: Sequence[int], timeout: float, as_json: bool) -> None:
    """Load the agent into running Python processes started without Suture.

    Runs a tiny bootstrap at a safe point with sys.remote_exec (Python 3.14+,
    when it runs promptly) or gdb (any thread's safe point), bounded by
    --timeout; acts with each target's own uid and gid. The new agent's
    hello is awaited as long (it applies the installed patches first); an
    agent too busy to answer is reported attached, with a note. Exit
    codes: 0 every process has an agent now, 1 some could not be attached
    (the row says why; those processes run on unchanged).
    """
    from ..host.attach import attach as do_attach

    rows: List[Dict[str, Any]] = []
    for pid in dict.fromkeys(pids):
        try:
            rows.append(do_attach(pid, timeout).to_dict())
        except SutureError as exc:
            rows.append({"pid": pid, "outcome": "failed", "error": exc.to_dict()})
        if not as_json:
            r = rows[-1]
            if r["outcome"] == "failed":
                click.echo(f"PID {pid}: not attached: {r['error']['message']} "
                           f"[{r['error']['code']}]")
            elif r["outcome"] == "already":
                click.echo(f"PID {pid}: already attached: its agent listens at {r['socket']}"
                           + (f"; {r['details']['busy']}" if r["details"].get("busy") else ""))
            else:
                why = r["details"].get("fallback")
                click.echo(f"PID {pid}: attached with {r['method']}"
                           + (f" ({why})" if why else "")
                           + f" in {r['seconds']:.2f} s, Python {r['python']}; "
                           f"agent at {r['socket']}"
                           + (f"; {r['details']['busy']}" if r["details"].get("busy") else ""))
    if as_json:
        _emit_json({"processes": rows})
    sys.exit(1 if any(r["outcome"] == "failed" for r in rows) else 0)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_PID_OPT
@_ALL_OPT
@click.option("--wait-quiescent", type=float, default=None, metavar="SECONDS",
              help="Wait up to SECONDS for old code to leave every stack, else refuse.")
@click.option("--health", default=None, metavar="URL|CMD",
              help="Health check after applying: a URL (healthy on 2xx/3xx) or a shell "
                   "command (healthy on exit 0), run every --health-interval during --watch.")
@click.option("--watch", "watch_s", type=click.FloatRange(min=0), default=None,
              metavar="SECONDS",
              help="Watch the patched processes this long (default 30 with --health): if "
                   "one dies or the health check fails, revert everywhere and mark the "
                   "patch bad on this host.")
@click.option("--health-interval", type=click.FloatRange(min=0.05), default=1.0,
              show_default=True, metavar="SECONDS")
@click.option("--health-timeout", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, metavar="SECONDS")
@_PARALLEL_OPT
@_UNSIGNED_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one row per process as JSON.")
def apply(file: Path, pids: Sequence[int], select_all: bool, wait_quiescent: Optional[float],
          health: Optional[str], watch_s: Optional[float], health_interval: float,
          health_timeout: float, parallel: Optional[int], allow_unsigned: bool,
          as_json: bool) -> None:
    """Apply the patch FILE to running processes, in parallel.

    The file is checked here first, signatures included (trust policy: `suture trust`);
    a bad or untrusted file contacts no process, nor does a patch marked bad on this host
    (`suture bad`). A process that does not have the patch's distribution installed is
    skipped as not affected; one that has another version than the baseline is refused
    (SUT-E201) without being sent the patch (with --pid and --all alike); "pending import"
    means the baseline release is there, not imported yet.
    With --all, Python processes without an agent that may run the patch's baseline are
    listed as "not covered". In a process with several interpreters, every interpreter gets
    the patch or none does (each one's verdict is listed); an interpreter that cannot be
    reached refuses the apply (SUT-E219).
    Exit codes: 0 every process applied, already fixed, pending import or skipped;
    2 some process refused (it is unchanged), no trusted key signed the patch, or it is
    marked bad; 3 a process died or the health check failed during --watch, and the
    patch was reverted everywhere this command applied it; 4 (--all) some process is not
    covered (no agent); 1 some process failed, a revert after --watch failed, or an error.
    """

    from ...runtime import store
    from ...runtime.errors import MarkedBad
    from ..fleet import rollout

    _one_target_form(pids, select_all)
    data = file.read_bytes()
    patch, record = _verified(data, allow_unsigned, as_json)
    try:
        bad = store.bad_patches().get(patch.id)
    except SutureError as exc:
        _fail(exc, as_json)
    if bad is not None:
        _fail(MarkedBad(f"patch {patch.short_id} ({patch.describe()}) is marked bad on this "
                        f"host since {_when(bad['at'])}: {bad['reason']}. Run `suture bad "
                        f"clear {patch.short_id}` once the cause is understood.",
                        details={"patch_id": patch.id, **bad}), as_json, code=2)
    if health is not None and watch_s is None:
        watch_s = 30.0
    targets = _targets(pids, select_all)
    check = rollout.HealthCheck(health, health_timeout) if health else None
    watched = [0]

    def show_rows(rows: List[Any], n: int = 0) -> None:
        watched[0] = n
        if as_json:
            return
        click.echo(f"patch {patch.short_id} ({patch.describe()})")
        _render_rows(rows, "apply to")
        if n:
            click.echo(f"watching {n} process(es) for {watch_s:g} s"
                       + (f", health check {health!r} every {health_interval:g} s"
                          if health else ""), err=True)

    done = rollout.apply_watched(
        data, patch, targets, select_all=select_all, wait_quiescent=wait_quiescent,
        parallel=parallel, check=check, watch_s=watch_s, interval=health_interval,
        progress=_progress, on_watch=show_rows, restricted_to=record.get("restricted_to"))
    out: Dict[str, Any] = {"patch": patch.id, "target": patch.target, **done.to_dict()}
    code = _audit_notes([*done.rows, *done.reverted], done.exit_code())
    w = done.watch
    if w is None:
        show_rows(done.rows)
    elif as_json:
        pass
    elif w.failed:
        click.echo(f"WATCH FAILED: {w.reason}", err=True)
        _render_rows(done.reverted, "revert in")
        if done.marked_bad:
            click.echo(f"patch {patch.short_id} marked bad on this host: not applied again "
                       f"until `suture bad clear {patch.short_id}`", err=True)
        else:
            click.echo("error: the patch could not be marked bad", err=True)
    else:
        click.echo(f"watch passed: {watched[0]} process(es) alive for {watch_s:g} s"
                   + (f", {w.checks} health check(s) passed" if check else ""))
    if as_json:
        _emit_json(out)
    sys.exit(code)


@click.command()
@click.argument("patch_id")
@_PID_OPT
@_ALL_OPT
@_PARALLEL_OPT
@click.option("--force", is_flag=True,
              help="Revert even if objects built while the patch was applied lack state "
                   "the restored code reads (SUT-E209); they may then fail on their next call.")
@click.option("--json", "as_json", is_flag=True, help="Print one row per process as JSON.")
def revert(patch_id: str, pids: Sequence[int], select_all: bool, parallel: Optional[int],
           force: bool, as_json: bool) -> None:
    """Revert PATCH_ID (or a unique prefix) in running processes, in parallel.

    With --all, processes where the patch is not applied are skipped. A process with
    several interpreters is reverted in each; one that could not be reached makes its row
    "partial" (the patch is still applied there).
    Exit codes: 0 reverted or skipped; 2 some process refused (e.g. a newer patch must be
    reverted first, or the id is unknown) or was reverted only in part (partial); 1 some
    process failed or an error.
    """
    from ..fleet import fanout

    targets = _targets(pids, select_all)
    rows = fanout.revert(patch_id, targets, select_all=select_all, progress=_progress,
                        parallel=parallel, force=force)
    if as_json:
        _emit_json({"patch": patch_id, "processes": [r.to_dict() for r in rows]})
    else:
        _render_rows(rows, "revert in")
    sys.exit(_audit_notes(rows, fanout.exit_code(rows)))


@click.command()
@_PID_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--advisories", "advisory_source", metavar="SOURCE", default=None,
              help="Where public advisories come from: pypi (default: PyPI, with a cache "
                   "that expires), cache (offline), off, or a mirror FILE "
                   "(env SUTURE_ADVISORIES; docs/fleet.md).")
@click.option("--old-calls/--no-old-calls", "old_calls", default=None,
              help="Start counting, in the processes asked, calls into the code the applied "
                   "patches replaced (CPython 3.12+; cheap: only those code objects are "
                   "watched), and show the counts; --no-old-calls stops it.")
def status(pids: Sequence[int], as_json: bool, advisory_source: Optional[str],
           old_calls: Optional[bool]) -> None:
    """What is applied where, and which processes are still exposed.

    Compares every process with an agent (default: every visible one) with the patches
    installed on this host (`suture install`, the store of the user running this). Per
    patch and process: fixed, pending import (patched when imported), draining (applied,
    but frames that started before it still run the old code: not yet protected), exposed
    (it runs the patch's baseline release without the patch, a module was refused at
    import, or the application brought old code back: a reload, a monkeypatch), not
    affected (another version, or not installed). Python processes without an agent
    are listed as not inspected: what they loaded cannot be told, so they change the exit
    code only when what can be seen from outside says they may load a known patch's
    distribution at its baseline (then exposed). With --pid, a process without an agent
    is an error.

    Advisories: every distribution whose modules a process has loaded (its agent lists
    them, and checks their files against the RECORD) is looked up in PyPI's advisory
    data; per process and advisory: fixed in memory (by which patch), exposed, patch
    available (installed, applied elsewhere or synced from a feed), exposed, no patch
    (upgrade and restart), or not affected.

    Interpreters: a patch counts as fixed in a process only when every interpreter of it
    runs the fix; one interpreter without it, or one its agent could not reach ("not fully
    inspectable"), makes the process exposed.

    Exit codes: 2 some process is exposed or draining (even if another could not be asked); 1 a
    process could not be asked, or the store cannot be read; 0 otherwise.
    """
    from ..fleet import advisories, fanout

    try:
        report = fanout.status(pids, advisory_source=advisories.Source.parse(advisory_source),
                               old_calls=old_calls)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json(report)
    else:
        _render_status(report)
    sys.exit(report["exit_code"])


def _one_line(text: str, width: int) -> str:
    return " ".join(text.split())[:width]


_NO_FILE_HINT = ("FILE: the patch file with that id (`suture list` shows the installed ones).\n"
                 "Installed patches are applied automatically only when an agent starts;\n"
                 "processes already running need `suture apply`.")


def _render_old_calls(asked: Sequence[Dict[str, Any]]) -> None:
    """Per process and applied patch, while counting is on there (`--old-calls`): calls
    into the replaced code since counting began, or why it cannot count."""
    lines = []
    for p in asked:
        for a in p["applied"]:
            calls = a.get("old_calls")
            if not isinstance(calls, dict):
                continue
            short = str(a.get("id", "?"))[:12]
            if "unavailable" in calls:
                lines.append(f"  {p['pid']:>7}  patch {short}  not counted: {calls['unavailable']}")
                continue
            since = time.strftime("%H:%M:%S", time.localtime(calls.get("since") or 0))
            by = ", ".join(f"{q} {n}" for q, n in (calls.get("by_function") or {}).items())
            drained = a.get("drained_at")
            lines.append(f"  {p['pid']:>7}  patch {short}  {calls.get('calls', 0)} call(s) since "
                         f"{since}" + (f" ({by})" if by else "")
                         + ("; drained" if drained else "; old frames still run"))
    if lines:
        click.echo("calls into replaced code (entries and resumptions; none is the evidence "
                   "the old code is gone):")
        for line in lines:
            click.echo(line)
        click.echo()


def _render_status(report: Dict[str, Any]) -> None:
    procs = {p["pid"]: p for p in report["processes"]}
    asked = [p for p in report["processes"] if p["state"] in ("ok", "exposed")]
    if not report["patches"]:
        click.echo(f"no patch installed ({report['store']}) and none applied in the "
                   f"{len(asked)} process{'es' if len(asked) != 1 else ''} asked")
    for entry in report["patches"]:
        t = entry["target"]
        what = (f"{t.get('name')} {t.get('from_version')}\u2192{t.get('to_version')}"
                if t.get("kind") == "distribution" else str(t.get("name", "?")))
        cves = ", ".join(entry["cves"]) or "no CVE"
        extra = "" if entry["installed"] else "  (applied by hand, not installed)"
        click.echo(f"patch {entry['id'][:12]}  {what}  {cves}{extra}")
        if not entry["processes"]:
            click.echo("  no process with an agent was asked")
        for row in entry["processes"]:
            click.echo(f"  {row['pid']:>7}  {row['state']:<15} {row['reason']}".rstrip())
            if row["fix"]:
                click.echo(f"  {'':>7}  {'':<15} fix: {row['fix']}")
        click.echo()
    active = [(p["pid"], a) for p in asked for a in p["active"]]
    if active:
        click.echo("old code still running (it finishes on the code it started with):")
        for pid, a in active:
            where = a.get("thread") or a.get("where", "?")
            interp = (f", interpreter {a['interpreter']}"
                      if a.get("interpreter") not in (None, 0) else "")
            click.echo(f"  {pid:>7}  {a.get('qualname', '?'):<40} in {where} "
                       f"(patch {str(a.get('patch', '?'))[:12]}{interp})")
        click.echo()
    _render_old_calls(asked)
    _render_uninspectable(asked)
    _render_restart_debt(report.get("restart_debt") or [])
    failed = [p for p in report["processes"] if p["state"] == "error"]
    if failed:
        click.echo("could not be asked:")
        for p in failed:
            code = (p["error"] or {}).get("code") or ""
            click.echo(f"  {p['pid']:>7}  {code} {p['reason']}")
        click.echo()
    unknown = [p for p in report["processes"] if p["state"] == "unknown"]
    if unknown:
        click.echo("not inspected (no agent; `suture attach PID`):")
        for p in unknown:
            click.echo(f"  {p['pid']:>7}  {_one_line(p['command'], 100)}")
        click.echo()
    _render_advisories(report)
    hidden = report.get("hidden") or []
    if hidden:
        click.echo(f"could not be inspected ({len(hidden)}; other users' processes):")
        for p in hidden:
            click.echo(f"  {p['pid']:>7}  {_one_line(p['command'], 100)}")
        click.echo()
    if report["exposed"]:
        pids = sorted({x["pid"] for x in report["exposed"]})
        click.echo(f"EXPOSED: {len(pids)} process{'es' if len(pids) != 1 else ''}")
        for x in report["exposed"]:
            cves = ", ".join(x["cves"]) or "no CVE listed"
            command = _one_line(procs[x["pid"]]["command"], 60) or "?"
            which = f"patch {x['patch'][:12]}" if x["patch"] else "no patch known"
            if x.get("interpreter") is not None:
                which = (f"interpreter {x['interpreter']} not inspectable"
                         + (f", {which}" if x["patch"] else ""))
            click.echo(f"  PID {x['pid']} ({command}): {cves} ({which})")
        if any((e["fix"] or "").startswith("suture apply FILE") for p in report["processes"]
               for e in p["exposed"]):
            click.echo(_NO_FILE_HINT)
    else:
        click.echo(f"nothing exposed ({len(asked)} process{'es' if len(asked) != 1 else ''} "
                   f"asked, {len(failed)} could not be, {len(unknown)} not inspected"
                   + (f", {len(hidden)} other users' not visible" if hidden else "")
                   + (f"; advisories unknown for {len(report['advisory_errors'])} "
                      f"release{'s' if len(report['advisory_errors']) != 1 else ''}, above"
                      if report.get("advisory_errors") else "") + ")")


def _render_uninspectable(asked: Sequence[Dict[str, Any]]) -> None:
    """Processes with an interpreter their agent could not reach (issue 22): exposed,
    whatever their patches say, since that interpreter may run the old code."""
    from ..fleet.fanout import not_inspectable, uninspectable_fix

    hit = [p for p in asked if p.get("uninspectable")]
    if not hit:
        return
    click.echo("not fully inspectable (counted as exposed):")
    for p in hit:
        count = p.get("interpreter_count")
        click.echo(f"  {p['pid']:>7}  {_one_line(p['command'], 60) or '?'}"
                   + (f" ({count} interpreters)" if count else ""))
        for u in p["uninspectable"]:
            click.echo(f"  {'':>7}    {not_inspectable(u)}")
        click.echo(f"  {'':>7}    fix: {uninspectable_fix(p['pid'], p['uninspectable'])}")
    click.echo()


def _held(seconds: Any) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``: how long a patch has been held."""
    if not isinstance(seconds, (int, float)):
        return "for an unknown time"
    s = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if s >= size:
            return f"for {s // size}{unit} {(s % size) // subsize}{sub}"
    return f"for {s}s"


def _render_restart_debt(rows: Sequence[Dict[str, Any]]) -> None:
    """Processes that hold a hot patch while the disk has the fixed release (not exposed:
    the exit code does not change; a restart pays the debt and lets the patch retire)."""
    if not rows:
        return
    click.echo("restart debt (the fixed release is on disk; these run the old one, "
               "hot-patched):")
    for r in rows:
        click.echo(f"  {r['pid']:>7}  {r['distribution']} {r['version_running']} "
                   f"(on disk: {r['version_on_disk']})  patch {r['patch'][:12]} held "
                   f"{_held(r['held_for'])}")
        click.echo(f"  {'':>7}  fix: {r['fix']}")
    click.echo()


def _render_advisories(report: Dict[str, Any]) -> None:
    rows = [(a, r) for a in report.get("advisories") or [] for r in a["processes"]]
    for a in report.get("advisories") or []:
        if not a["processes"]:
            continue
        fixed = ", ".join(a["fixed_in"]) or "no fixed release"
        others = [x for x in a["aliases"] if x != a["id"]]
        click.echo(f"advisory {a['id']}" + (f" ({', '.join(others)})" if others else "")
                   + f"  {a['package']}  fixed in {fixed}")
        if a["summary"]:
            click.echo(f"  {_one_line(a['summary'], 100)}")
        for r in a["processes"]:
            patch = f"  patch {r['patch'][:12]}" if r["patch"] else ""
            click.echo(f"  {r['pid']:>7}  {r['version']:<12} {r['state']}{patch}")
            fixes = [x["fix"] for p in report["processes"] if p["pid"] == r["pid"]
                     for x in p["exposed"] if x.get("advisory") == a["id"] and x.get("fix")]
            if fixes:
                click.echo(f"  {'':>7}  {'':<12} fix: {fixes[0]}")
        click.echo()
    errors = report.get("advisory_errors") or []
    if errors:
        click.echo(f"advisories unknown ({report.get('advisory_source')}):")
        for e in errors:
            pids = ", ".join(map(str, e["pids"][:10]))
            click.echo(f"  {e['package']} {e['version']} (pid {pids}): {e['reason']}")
        click.echo()
    elif not rows and report.get("advisory_source") not in (None, "off"):
        click.echo(f"advisories: none for the releases the processes run "
                   f"({report.get('advisory_source')})")
        click.echo()
    notes = report.get("advisory_notes") or []
    if notes:   # answers that need a caveat: a stale cache, a project not on the registry
        click.echo("advisory notes:")
        for n in notes:
            click.echo(f"  {n['package']} {n['version']}: {n['note']}")
        click.echo()


@click.command(context_settings={"ignore_unknown_options": True,
                                "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(command: Sequence[str]) -> None:
    """Run COMMAND with the Suture agent loaded into it and into its Python children.

    The command replaces suture (same pid, its own signals and exit status).
    Use `--` before a command whose options suture should not read.
    """
    from ..host.run import run as do_run

    try:
        do_run(list(command))
    except SutureError as exc:
        _fail(exc, False)

"""CLI, the local patch store and its audit log: ``suture install``, ``list``, ``remove``,
``audit [verify]``, ``bad [clear]`` (logic in runtime/store.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

import click

from ...runtime.errors import SutureError
from ._common import _UNSIGNED_OPT, _emit_json, _fail, _verified, _when


def _signed_by(record: Optional[Dict[str, Any]]) -> str:
    if not record:
        return "NOT VERIFIED (no trust record: agents will not apply it)"
    if record.get("unsigned"):
        return "UNSIGNED (--allow-unsigned)"
    return "signed by " + ", ".join(s.get("name", "?") for s in record.get("signers", []))


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_UNSIGNED_OPT
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def install(file: Path, allow_unsigned: bool, as_json: bool) -> None:
    """Keep the patch FILE on this host: agents started later apply it automatically.

    Its signatures are checked first (as by `suture verify`) and the result is kept with
    it; agents apply only patches installed this way. Processes already running are not
    touched (use `suture apply`). The store is per user: $SUTURE_STATE_DIR, else
    /var/lib/suture for root, else $XDG_STATE_HOME/suture or ~/.local/state/suture.
    Exit codes: 0 installed, 2 no trusted key signed it, 1 an error.
    """
    import os

    from ...runtime import store

    data = file.read_bytes()
    _, record = _verified(data, allow_unsigned, as_json)
    try:
        patch = store.install(data, record)
        store.audit("install", patch.id, "installed", os.getpid(), os.getuid(),
                    f"{file}; {_signed_by(record)}")
        bad = store.bad_patches().get(patch.id)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"id": patch.id, "target": patch.target, "store": store.db_path(),
                    "trust": record, "bad": bad})
        return
    click.echo(f"installed {patch.short_id} ({patch.describe()}), {_signed_by(record)}, in "
               f"{store.db_path()}")
    if bad is not None:
        click.echo(f"warning: {patch.short_id} is marked bad on this host ({bad['reason']}): "
                   f"agents will not apply it until `suture bad clear {patch.short_id}`",
                   err=True)


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_(as_json: bool) -> None:
    """List the patches installed on this host (see `suture install`)."""
    from ...runtime import store

    try:
        rows = store.installed()
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"patches": rows, "store": store.db_path()})
        return
    if not rows:
        click.echo(f"no patch installed ({store.db_path()})")
        return
    click.echo(f"{'ID':<12}  {'TARGET':<32} {'INSTALLED':<19} {'CVES':<20} TRUST")
    for r in rows:
        versions = (f" {r['from_version']}\u2192{r['to_version']}"
                    if r["from_version"] else "")
        click.echo(f"{r['id'][:12]:<12}  {(r['target_name'] + versions):<32} "
                   f"{_when(r['installed_at']):<19} {', '.join(r['cves']) or '-':<20} "
                   f"{_signed_by(r['trust'])}")


@click.command()
@click.argument("patch_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def remove(patch_id: str, as_json: bool) -> None:
    """Remove the installed patch PATCH_ID (or a unique prefix) from the store.

    Processes that already applied it keep it (use `suture revert`).
    """
    import os

    from ...runtime import store

    try:
        full = store.remove(patch_id)
        store.audit("remove", full, "removed", os.getpid(), os.getuid())
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"removed": full})
        return
    click.echo(f"removed {full[:12]}; processes that applied it keep it until "
               f"`suture revert {full[:12]} --all`")


@click.group(invoke_without_command=True)
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="Only the newest N entries.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def audit(ctx: click.Context, limit: Optional[int], as_json: bool) -> None:
    """Show the audit log: every install, remove, apply and revert, oldest first.

    `suture audit verify` checks that no entry was edited, removed or reordered.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ...runtime import store

    try:
        rows = store.audit_log(limit)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"entries": rows, "store": store.db_path()})
        return
    if not rows:
        click.echo(f"the audit log is empty ({store.db_path()})")
        return
    click.echo(f"{'WHEN':<19}  {'UID':>6} {'PID':>7}  {'OP':<10} {'PATCH':<12}  RESULT")
    for r in rows:
        # The first entry of a chain says so: a store deleted and recreated shows here.
        start = "  (chain starts here)" if r["prev"] == store.GENESIS else ""
        click.echo(f"{_when(r['at']):<19}  {r['actor_uid']:>6} {r['pid']:>7}  {r['op']:<10} "
                   f"{(r['patch_id'] or '-')[:12]:<12}  {r['result']}{start}")
        if r["detail"]:
            click.echo(f"{'':<21}\u2514 {r['detail'][:200]}")


@audit.command("verify")
@click.option("--head", metavar="HASH", default=None,
              help="A head hash recorded earlier: it must still be in the chain (catches the "
                   "removal of the newest entries since then).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def audit_verify(head: Optional[str], as_json: bool) -> None:
    """Check the audit log's hash chain.

    Exit codes: 0 intact (and holds --head, if given); 2 tampered (an entry edited,
    removed, reordered or inserted, or --head not in the chain); 3 no chain here (no
    store, no audit log, an empty one, or only entries from before the chain: nothing
    was verified); 1 the store cannot be read (or was written by a newer Suture).
    """
    from ...runtime import store

    try:
        report = store.verify_audit(head)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json(report)
    elif report["state"] == "intact":
        started = report["started"]
        click.echo(f"audit log intact: {report['chained']} chained entries"
                   + (f" (after {report['before_chain']} written before the chain)"
                      if report["before_chain"] else "")
                   + f"; chain started {_when(started['at'])} (entry {started['seq']}, "
                     f"{started['op']} by uid {started['actor_uid']})"
                   + (f"; head {report['head']}" if report["head"] else "")
                   + f" ({report['store']})")
    elif report["state"] == "no chain":
        click.echo(f"NO AUDIT CHAIN here: {report['why']} ({report['store']}); nothing was "
                   f"verified", err=True)
        for p in report["problems"]:
            click.echo(f"  {p['problem']}", err=True)
    else:
        click.echo(f"audit log TAMPERED ({report['store']}):", err=True)
        for p in report["problems"]:
            click.echo(f"  entry {p['seq'] if p['seq'] is not None else '-'}: {p['problem']}",
                       err=True)
    sys.exit(_VERIFY_EXIT[report["state"]])


_VERIFY_EXIT = {"intact": 0, "tampered": 2, "no chain": 3}


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def bad(ctx: click.Context, as_json: bool) -> None:
    """List the patches marked bad on this host (crash-loop protection).

    `suture apply --watch` marks a patch bad when a process died or failed its health
    check after it; agents and `suture apply` then refuse it until `suture bad clear ID`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ...runtime import store

    try:
        marks = store.bad_patches()
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"bad": [{"id": k, **v} for k, v in marks.items()], "store": store.db_path()})
        return
    if not marks:
        click.echo(f"no patch is marked bad ({store.db_path()})")
        return
    for pid_, mark in marks.items():
        click.echo(f"{pid_[:12]}  {_when(mark['at'])}  {mark['reason']}")
        for proc in mark.get("processes") or ():
            how = proc.get("exit") or "no exit recorded: killed by a signal or lost"
            click.echo(f"{'':14}pid {proc.get('pid')}: {how}")


@bad.command("clear")
@click.argument("patch_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def bad_clear(patch_id: str, as_json: bool) -> None:
    """Allow the patch PATCH_ID (or a unique prefix) again after it was marked bad."""
    import os

    from ...runtime import store

    try:
        full = store.clear_bad(patch_id)
        store.audit("clear-bad", full, "cleared", os.getpid(), os.getuid())
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"cleared": full})
        return
    click.echo(f"cleared {full[:12]}: agents and `suture apply` may apply it again")

"""Command line: argument parsing and rendering only; the work happens elsewhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

import click

from ... import __version__
from ...runtime.errors import SutureError, UntrustedPatch
from ...runtime.patchfile import Patch, load, read_envelope

_VERDICT_LABEL = {"live": "live", "caveat": "caveat", "hook": "needs hook",
                  "restart": "RESTART REQUIRED"}


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _render_changes(rows: List[Dict[str, str]]) -> None:
    if not rows:
        click.echo("  no changes (the two versions run the same code)")
    for r in rows:
        where = f"{r['module']}:{r['qualname']}" if r["module"] else r["qualname"]
        if where.endswith(":"):
            where = where[:-1]
        line = f"  {_VERDICT_LABEL[r['verdict']]:<16} {r['kind']:<28} {where}"
        click.echo(line)
        if r["reason"] and r["verdict"] != "live":
            click.echo(f"  {'':<16} {'':<28} \u2514 {r['reason']}")


EX_USAGE = 64      # sysexits.h: bad command line (click's own default, 2, means "refused")
EX_INTERRUPTED = 130


class _Suture(click.Group):
    """The `suture` group: click's standalone mode, with our exit codes.

    Usage errors exit 64, not click's 2 (2 means "refused"/"exposed" here); --help and
    --version 0; Ctrl-C 130; `suture` alone prints the help and exits 64 on every click
    version. Commands set their own codes with sys.exit(), which passes through.
    """

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            exc.show()
            sys.exit(EX_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                sys.exit(EX_INTERRUPTED)
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo(err=True)
            sys.exit(EX_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else 0)   # --help, --version: Exit(0)

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), err=True)
            ctx.exit(EX_USAGE)
        return super().parse_args(ctx, args)


@click.group(cls=_Suture, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="suture")
def main() -> None:
    """Suture: hotpatch running Python processes, with no restart.

    Exit codes of every command: docs/errors.md. A usage error exits 64.
    """


@main.command()
@click.argument("old")
@click.argument("new")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the patch here (default: NAME-FROM-TO.suture or patch.suture).")
@click.option("--cve", "cves", multiple=True, help="CVE id this patch fixes (repeatable).")
@click.option("--summary", default="", help="One line saying what the fix does.")
@click.option("--hooks", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Hook module attached to the patch (pre/post apply/revert, MIGRATIONS).")
@click.option("--allow-restart", is_flag=True,
              help="Build a PARTIAL patch that leaves out modules whose changes need a restart.")
@click.option("--embed-sources", is_flag=True,
              help="Carry each changed module's whole baseline and fixed source (format 1), "
                   "for processes whose source files were replaced by another version. "
                   "Default: only the changed lines and the baseline's hash.")
@click.option("--find-links", multiple=True, help="Passed to pip for name==version.")
@click.option("--index-url", default=None, help="Passed to pip for name==version.")
@click.option("--no-index", is_flag=True, help="Passed to pip for name==version.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--sign", "keys", multiple=True, metavar="KEY",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sign the patch with this private key (repeatable; see `suture keygen`).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build(old: str, new: str, output: Optional[Path], cves: Sequence[str], summary: str,
          hooks: Optional[Path], allow_restart: bool, embed_sources: bool,
          find_links: Sequence[str], index_url: Optional[str], no_index: bool,
          cache_dir: Optional[Path], keys: Sequence[Path], as_json: bool) -> None:
    """Build a hotpatch from OLD (vulnerable) to NEW (fixed).

    OLD and NEW are each a source directory, a wheel, an sdist, or name==version.
    Exit codes: 0 built, 3 a change needs a restart, 4 a change needs a hook, 1 error.
    """
    from ..build import BuildRefused
    from ..build import build as do_build
    from ..trust import sign as sign_patch

    try:
        signers = _signing_keys(keys)
        report = do_build(old, new, cves=cves, summary=summary, hooks=hooks,
                          allow_restart=allow_restart, cache_dir=cache_dir,
                          find_links=find_links, index_url=index_url, no_index=no_index,
                          embed_sources=embed_sources)
    except BuildRefused as exc:
        if as_json:
            _emit_json({**exc.report.to_dict(), "error": exc.to_dict()})
        else:
            _header(exc.report.target)
            _render_changes(exc.report.changes())
            click.echo(f"\nrefused: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except SutureError as exc:
        _fail(exc, as_json)
    assert report.patch is not None and report.data is not None
    if output is None:
        t = report.target
        output = Path(f"{t['name']}-{t.get('from_version')}-{t.get('to_version')}.suture"
                      if t.get("from_version") else "patch.suture")
    data = report.data
    for key in signers:
        data = sign_patch(data, key)
    output.write_bytes(data)
    if as_json:
        _emit_json({**report.to_dict(), "output": str(output), "signatures": len(signers)})
        return
    _header(report.target)
    _render_changes(report.changes())
    partial = " (PARTIAL: left out " + ", ".join(report.excluded) + ")" if report.excluded else ""
    signed = f", signed by {len(signers)} key(s)" if signers else ", unsigned"
    click.echo(f"\nwrote {output} ({len(data)} bytes), id {report.patch.id[:12]}{partial}"
               f"{signed}")


def _header(target: Dict[str, Any]) -> None:
    if target.get("from_version"):
        click.echo(f"{target['name']} {target['from_version']} \u2192 {target['to_version']}")
    else:
        click.echo(f"{target['name']}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect(file: Path, as_json: bool) -> None:
    """Show what a patch file holds, including its id."""
    try:
        data = file.read_bytes()
        patch = load(data)
        keyids = [str(sig.get("keyid", "")) for sig in read_envelope(data)[0]["signatures"]
                  if isinstance(sig, dict)]
    except SutureError as exc:
        _fail(exc, as_json)
    rows = [{"module": m.name, "kind": c.kind, "qualname": c.qualname, "verdict": c.verdict,
             "reason": c.reason} for m in patch.modules for c in m.changes]
    if as_json:
        _emit_json({
            "id": patch.id, "target": patch.target, "meta": patch.meta,
            "modules": [{"name": m.name, "action": m.action,
                         "baseline_sha256": m.baseline.sha256 if m.baseline else None,
                         "fixed_sha256": m.fixed.sha256,
                         "sources": "changed lines" if m.compact else "whole"}
                        for m in patch.modules],
            "changes": rows, "files": list(patch.files), "hooks": patch.hooks is not None,
            "signature_keyids": keyids,
        })
        return
    click.echo(f"id       {patch.id}")
    click.echo(f"target   {patch.describe()} ({patch.target.get('kind')})")
    meta = patch.meta
    if meta.get("cves"):
        click.echo(f"cves     {', '.join(meta['cves'])}")
    if meta.get("summary"):
        click.echo(f"summary  {meta['summary']}")
    click.echo(f"builder  {meta.get('builder', '?')}, python {meta.get('python', '?')}"
               + (", PARTIAL (left out: " + ", ".join(meta.get("excluded", [])) + ")"
                  if meta.get("partial") else ""))
    click.echo(f"hooks    {'yes' if patch.hooks else 'no'}")
    click.echo(f"signed   {', '.join(k[:12] for k in keyids) + ' (keyids)' if keyids else 'no'}")
    click.echo("modules")
    for m in patch.modules:
        base = m.baseline.sha256[:12] if m.baseline else "(new)"
        n = len(m.delta or ())
        lines = f" ({n} hunk{'' if n == 1 else 's'})" if m.compact else ""
        click.echo(f"  {m.action:<7} {m.name:<40} {base} \u2192 {m.fixed.sha256[:12]}{lines}")
    click.echo("changes")
    _render_changes(rows)


# -- signed patches: keygen, sign, verify, trust (logic in trust.py) --------------------

def _signing_keys(paths: Sequence[Path]) -> List[Any]:
    from ..trust import load_private_key

    return [load_private_key(p) for p in paths]


def _signed_by(record: Optional[Dict[str, Any]]) -> str:
    if not record:
        return "NOT VERIFIED (no trust record: agents will not apply it)"
    if record.get("unsigned"):
        return "UNSIGNED (--allow-unsigned)"
    return "signed by " + ", ".join(s.get("name", "?") for s in record.get("signers", []))


@main.command()
@click.option("--out", "prefix", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("suture-signing"), show_default=True,
              help="Write PREFIX.key (private, mode 0600) and PREFIX.pub.")
@click.option("--name", default="", help="A label for the key, kept in PREFIX.pub.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def keygen(prefix: Path, name: str, as_json: bool) -> None:
    """Make an Ed25519 key pair for signing patches; never overwrites a key."""
    from ..trust import keygen as do_keygen

    try:
        key, pub, keyid = do_keygen(prefix, name)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"private_key": str(key), "public_key": str(pub), "keyid": keyid})
        return
    click.echo(f"wrote {key} (private: keep it secret) and {pub}; keyid {keyid[:12]}")
    click.echo(f"sign with:   suture sign FILE --key {key}")
    click.echo(f"trust with:  suture trust add {pub}   (on each host that applies patches)")


@main.command(name="sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "keys", multiple=True, required=True, metavar="KEY",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key file (repeatable: one signature each).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the signed patch here (default: FILE, in place).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def sign_(file: Path, keys: Sequence[Path], output: Optional[Path], as_json: bool) -> None:
    """Add a signature to the patch FILE (its bytes and id do not change)."""
    from ..trust import sign

    try:
        data = file.read_bytes()
        for key in _signing_keys(keys):
            data = sign(data, key)
        patch = load(data)
    except SutureError as exc:
        _fail(exc, as_json)
    output = output or file
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(output)  # a reader never sees half a file
    if as_json:
        _emit_json({"id": patch.id, "output": str(output), "signatures": len(keys)})
        return
    click.echo(f"signed {patch.short_id} ({patch.describe()}) with {len(keys)} key(s): {output}")


@main.command(name="verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def verify_(file: Path, as_json: bool) -> None:
    """Check the patch FILE's signatures against this host's trust policy.

    A key restricted to distributions vouches for the distribution the patch names;
    whether its modules are that distribution's files is checked by each target process
    against its own RECORD, and here too when this environment has the patch's baseline
    release installed (the output says which).
    Exit codes: 0 a trusted key signed it, 2 not trusted (unsigned, unknown or
    restricted key, a signature that does not match, or a module that is not the named
    distribution's file here), 1 bad file or policy.
    """
    from ..trust import check

    try:
        verdict = check(file.read_bytes())
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json(verdict.to_dict())
    else:
        click.echo(f"patch {verdict.patch.short_id} ({verdict.patch.describe()}), "
                   f"policy {verdict.policy.path}")
        for sig in verdict.signatures:
            click.echo(f"  {sig['keyid'][:12] or '(no keyid)':<12}  {sig['name'] or '-':<24} "
                       f"{sig['status']}")
        if verdict.trusted:
            click.echo(f"trusted: signed by {', '.join(verdict.trusted_by)}")
            m = verdict.membership
            if m.distribution is not None:
                scope = (f"only for {verdict.restricted_to}: each target refuses it unless "
                         f"its modules are {m.distribution}'s files there" if
                         verdict.restricted_to else "by a key trusted for any patch")
                click.echo(f"modules: {m.reason if m.checked else 'not checked here: ' + m.reason}"
                           f"; trusted {scope}")
        else:
            click.echo(f"NOT TRUSTED: {verdict.refusal().message}", err=True)
    sys.exit(0 if verdict.trusted else 2)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def trust(ctx: click.Context, as_json: bool) -> None:
    """Show the keys this host trusts to sign patches (see `suture trust add`).

    The policy is trust.toml in $SUTURE_CONFIG_DIR, else /etc/suture for root, else
    $XDG_CONFIG_HOME/suture or ~/.config/suture.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..trust import load_policy

    try:
        policy = load_policy()
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"policy": policy.path, "exists": policy.exists,
                    "keys": [k.to_dict() for k in policy.keys]})
        return
    if not policy.keys:
        click.echo(f"no key is trusted: {policy.path} "
                   f"{'lists none' if policy.exists else 'does not exist'}; every patch is "
                   f"refused unless --allow-unsigned")
        return
    click.echo(f"{policy.path}")
    for k in policy.keys:
        scope = ", ".join(k.distributions) if k.distributions is not None else "any distribution"
        click.echo(f"  {k.keyid[:12]}  {k.name:<24} {scope}")


@trust.command("add")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default="", help="Label (default: the one in the .pub file).")
@click.option("--dist", "dists", multiple=True, metavar="NAME",
              help="Trust this key only for patches of this distribution (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def trust_add(public_key: Path, name: str, dists: Sequence[str], as_json: bool) -> None:
    """Trust the key in PUBLIC_KEY (a .pub file from `suture keygen`) on this host."""
    from ..trust import add_key, policy_path

    try:
        key = add_key(public_key.read_text().strip(), name, dists)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"policy": policy_path(), "key": key.to_dict()})
        return
    scope = ", ".join(dists) if dists else "any distribution"
    click.echo(f"trusted {key.name} ({key.keyid[:12]}) for {scope} in {policy_path()}")


# -- live processes: ps, apply, revert, status (logic in client.py and fanout.py) ---------

_PARALLEL_OPT = click.option(
    "--parallel", type=click.IntRange(min=1), default=None, metavar="N",
    help="Processes patched at once (default: one per CPU; each apply is CPU work in its "
         "process, and more at once only makes every target stall longer).")

_UNSIGNED_OPT = click.option(
    "--allow-unsigned", is_flag=True,
    help="DEVELOPMENT ONLY: accept a patch that no trusted key signed (warns loudly).")


def _verified(data: bytes, allow_unsigned: bool, as_json: bool) -> Tuple[Patch, Dict[str, Any]]:
    """The patch and its trust record (tooling/trust), or exit: 2 untrusted, 1 bad file."""
    from ..trust import require

    try:
        patch, record = require(data, allow_unsigned)
    except UntrustedPatch as exc:
        _fail(exc, as_json, code=2)
    except SutureError as exc:
        _fail(exc, as_json)
    if record.get("unsigned"):
        click.echo(click.style(f"WARNING: patch {patch.short_id} ({patch.describe()}) is not "
                               f"signed by a key this host trusts; --allow-unsigned accepts "
                               f"it. Never use this flag in production.", fg="red", bold=True),
                   err=True)
    return patch, record

_PID_OPT = click.option("--pid", "pids", type=int, multiple=True, metavar="PID",
                        help="A target process (repeatable).")
_ALL_OPT = click.option("--all", "select_all", is_flag=True,
                        help="Every visible Python process whose agent answers.")


def _targets(pids: Sequence[int], select_all: bool, as_json: bool) -> List[int]:
    from ..fleet.fanout import agent_pids

    if bool(pids) == select_all:
        _fail(SutureError("Give the target processes with --pid PID (repeatable) or --all, "
                          "not both and not neither. Nothing was changed."), as_json)
    return list(dict.fromkeys(pids)) if pids else agent_pids()


def _progress(done: int, total: int, row: Any) -> None:
    click.echo(f"[{done}/{total}] PID {row.pid}: {row.outcome}", err=True)


def _render_rows(rows: Sequence[Any], verb: str) -> None:
    if not rows:
        click.echo(f"no process to {verb} (none given, or no Python process with an agent "
                   "answered; see `suture ps`)")
        return
    click.echo(f"{'PID':>7}  {'RESULT':<18} DETAIL")
    for r in rows:
        label = f"{r.outcome} {r.code}" if r.outcome in ("refused", "failed") else r.outcome
        click.echo(f"{r.pid:>7}  {label:<18} {r.reason}")
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    click.echo("\n" + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
               + f" (of {len(rows)} process{'es' if len(rows) != 1 else ''})")


def _audit_notes(rows: Sequence[Any], code: int) -> int:
    """Say on stderr which rows the target's own store did not record (fanout.py wrote them
    in ours), and which no store recorded: then the exit code is 1 unless already 1 or 3
    (docs/errors.md), because a change recorded nowhere must not pass for a clean run."""
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
    if any(r.unaudited for r in rows) and code in (0, 2):
        return 1
    return code


@main.command()
@click.option("--dist", "dists", multiple=True, metavar="NAME",
              help="Only report these distributions (repeatable; default: all, "
                   "shown when imported).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def ps(dists: Sequence[str], as_json: bool) -> None:
    """List the Python processes you may see, their agents and applied patches.

    Processes of other users are listed only when you are root.
    """
    from ..fleet.fanout import ps as do_ps

    rows = do_ps(dists=dists)
    if as_json:
        _emit_json({"processes": rows})
        return
    if not rows:
        click.echo("no Python process visible")
        return
    click.echo(f"{'PID':>7}  {'USER':<10} {'PYTHON':<8} {'AGENT':<6} {'PATCHES':<14} COMMAND")
    hint = False
    for r in rows:
        agent = "yes" if r["agent"] else ("stale" if r.get("socket") else "no")
        patches = ",".join(p[:12] for p in r["patches"]) or "-"
        click.echo(f"{r['pid']:>7}  {r['user']:<10} {r['python']:<8} {agent:<6} {patches:<14} "
                   f"{r['command'][:80]}")
        used = {n: v for n, v in r["dists"].items() if dists or r["loaded"].get(n)}
        if used:
            click.echo(f"{'':>9}uses " + ", ".join(f"{n} {v}" for n, v in sorted(used.items())))
        if r.get("agent_error"):
            click.echo(f"{'':>9}\u2514 {r['agent_error']}")
        hint = hint or not r["agent"]
    if hint:
        click.echo("\nProcesses without an agent cannot be patched: start them under "
                   "`suture run`, call suture.agent.start() in them, or `suture attach PID`.")


@main.command()
@click.argument("pids", type=int, nargs=-1, required=True, metavar="PID...")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              metavar="SECONDS", help="Longest wait for each process to reach a safe point.")
@click.option("--json", "as_json", is_flag=True, help="Print one row per process as JSON.")
def attach(pids: Sequence[int], timeout: float, as_json: bool) -> None:
    """Load the agent into running Python processes started without Suture.

    Uses gdb (sys.remote_exec on Python 3.14) to run a tiny bootstrap at a safe
    point, bounded by --timeout; acts with each target's own uid and gid. Exit
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
                click.echo(f"PID {pid}: already has an agent ({r['socket']})")
            else:
                click.echo(f"PID {pid}: attached with {r['method']} in {r['seconds']:.2f} s, "
                           f"Python {r['python']}; agent at {r['socket']}")
    if as_json:
        _emit_json({"processes": rows})
    sys.exit(1 if any(r["outcome"] == "failed" for r in rows) else 0)


@main.command()
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
    (`suture bad`). With --all, processes that do not have the patch's distribution
    installed are skipped.
    Exit codes: 0 every process applied, already fixed, pending import or skipped;
    2 some process refused (it is unchanged), no trusted key signed the patch, or it is
    marked bad; 3 a process died or the health check failed during --watch, and the
    patch was reverted everywhere this command applied it; 1 some process failed, a
    revert after --watch failed, or an error.
    """

    from ...runtime import store
    from ...runtime.errors import MarkedBad
    from ..fleet import rollout

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
    targets = _targets(pids, select_all, as_json)
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


@main.command()
@click.argument("patch_id")
@_PID_OPT
@_ALL_OPT
@_PARALLEL_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one row per process as JSON.")
def revert(patch_id: str, pids: Sequence[int], select_all: bool, parallel: Optional[int],
           as_json: bool) -> None:
    """Revert PATCH_ID (or a unique prefix) in running processes, in parallel.

    With --all, processes where the patch is not applied are skipped.
    Exit codes: 0 reverted or skipped; 2 some process refused (e.g. a newer patch must be
    reverted first, or the id is unknown); 1 some process failed or an error.
    """
    from ..fleet import fanout

    targets = _targets(pids, select_all, as_json)
    rows = fanout.revert(patch_id, targets, select_all=select_all, progress=_progress,
                        parallel=parallel)
    if as_json:
        _emit_json({"patch": patch_id, "processes": [r.to_dict() for r in rows]})
    else:
        _render_rows(rows, "revert in")
    sys.exit(_audit_notes(rows, fanout.exit_code(rows)))


@main.command()
@_PID_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(pids: Sequence[int], as_json: bool) -> None:
    """What is applied where, and which processes are still exposed.

    Compares every process with an agent (default: every visible one) with the patches
    installed on this host (`suture install`, the store of the user running this). Per
    patch and process: fixed, pending import (patched when imported), exposed (it runs
    the patch's baseline release without the patch, or a module was refused at import),
    not affected (another version, or not installed). Python processes without an agent
    are listed as not inspected and do not change the exit code: what they loaded cannot
    be told. With --pid, a process without an agent is an error.

    Exit codes: 2 some process is exposed (even if another could not be asked); 1 a
    process could not be asked, or the store cannot be read; 0 otherwise.
    """
    from ..fleet import fanout

    try:
        report = fanout.status(pids)
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
            click.echo(f"  {pid:>7}  {a.get('qualname', '?'):<40} in {where} "
                       f"(patch {str(a.get('patch', '?'))[:12]})")
        click.echo()
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
    if report["exposed"]:
        pids = sorted({x["pid"] for x in report["exposed"]})
        click.echo(f"EXPOSED: {len(pids)} process{'es' if len(pids) != 1 else ''}")
        for x in report["exposed"]:
            cves = ", ".join(x["cves"]) or "no CVE listed"
            command = _one_line(procs[x["pid"]]["command"], 60) or "?"
            click.echo(f"  PID {x['pid']} ({command}): {cves} (patch {x['patch'][:12]})")
        if any((e["fix"] or "").startswith("suture apply FILE") for p in report["processes"]
               for e in p["exposed"]):
            click.echo(_NO_FILE_HINT)
    else:
        click.echo(f"nothing exposed ({len(asked)} process{'es' if len(asked) != 1 else ''} "
                   f"asked, {len(failed)} could not be, {len(unknown)} not inspected)")


@main.command()
@click.option("--fast", is_flag=True, help="No pauses between steps.")
def demo(fast: bool) -> None:
    """Live-patch a vulnerable example app, step by step, then revert."""
    from ..demo import run

    sys.exit(run(fast=fast))


# --- the local patch store and audit log (logic in runtime/store.py) ----------------------

@main.command()
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


@main.command(name="list")
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


@main.command()
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


@main.group(invoke_without_command=True)
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


@main.group(invoke_without_command=True)
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


def _when(at: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


# --- suture run (live-processes milestone: the agent) ---------------------------------------

@main.command(context_settings={"ignore_unknown_options": True,
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


def _fail(exc: SutureError, as_json: bool, code: int = 1) -> NoReturn:
    if as_json:
        _emit_json({"error": exc.to_dict()})
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(code)


from .fleet import daemon, feed, metrics, sync, vex  # noqa: E402  (uses the helpers above)

for _command in (daemon, feed, metrics, sync, vex):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()

"""CLI, building patches: ``suture build``, ``inspect``, ``keygen``, ``sign`` (logic in
tooling/build and tooling/trust)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from ...runtime.errors import SutureError
from ...runtime.patchfile import load, read_envelope
from ..build import objects as _objects
from ._common import _emit_json, _fail


_VERDICT_LABEL = {"live": "live", "caveat": "caveat", "hook": "needs hook",
                  "restart": "RESTART REQUIRED"}


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


def _render_dry_run(dry: Optional[Dict[str, Any]]) -> None:
    """What a fresh process of the baseline answered to the patch (build/state.py)."""
    if not isinstance(dry, dict):
        return
    outcome = dry.get("outcome")
    if outcome in ("applied", "pending import", "already fixed"):
        click.echo(f"  dry run  {outcome} and reverted in a fresh process of the baseline")
        for key, what in (("differs", "the patched process differs from a fresh import of "
                                      "the fixed release"),
                          ("revert_differs", "the reverted process differs from the one "
                                             "before the apply")):
            found = dry.get(key)
            if isinstance(found, dict) and found.get("total"):
                click.echo(f"  dry run  WARNING: {what} in {found['total']} path(s):")
                for d in found.get("paths", [])[:6]:
                    click.echo(f"           {d['module']}: {d['path'] or '(module)'} is "
                               f"{d['got']}, expected {d['want']}")
        if dry.get("differs_unknown"):
            click.echo(f"  dry run  whole process not compared: {dry['differs_unknown']}")
    elif outcome == "not run":
        click.echo(f"  dry run  not run: {dry.get('reason', '?')}")
    else:
        click.echo(f"  dry run  WARNING: {outcome} {dry.get('code', '')} in a fresh process of "
                   f"the baseline; every such process will answer the same:")
        click.echo(f"           {dry.get('reason', '?')}")


def _render_state(state: Optional[Dict[str, Any]]) -> None:
    """One line per changed module: is its state after an apply checked, and on how many
    paths (meta.state, docs/patch-format.md)."""
    if not isinstance(state, dict):
        return
    for name, entry in sorted(state.get("modules", {}).items()):
        if not entry.get("verified"):
            click.echo(f"  state    {name}: NOT verified: {entry.get('reason', '?')}")
            continue
        paths = entry.get("paths", [])
        n, unstable = len(paths), entry.get("unstable", 0)
        what = (f"{n} path{' differs' if n == 1 else 's differ'}" if n
                else "no path differs")
        extra = f" ({unstable} unstable ignored)" if unstable else ""
        click.echo(f"  state    {name}: verified: {what}{extra}")
        labels = [str(p.get("label", "?")) for p in paths]
        if labels:
            more = f", \u2026 ({len(labels) - 6} more)" if len(labels) > 6 else ""
            click.echo(f"  {'':<8} \u2514 {', '.join(labels[:6])}{more}")
    # Unchanged modules that import a changed one: those whose state could not be read at
    # build are not in the patch, so what they built from the changed code is not checked.
    for name, reason in sorted((state.get("dependents_not_verified") or {}).items()):
        click.echo(f"  state    {name} (unchanged, imports a changed module): NOT verified: "
                   f"{reason}")
    left_out = state.get("dependents_left_out")
    if left_out:
        click.echo(f"  state    {left_out} more unchanged module(s) importing a changed one "
                   "were not checked (limit reached)")


@click.command()
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
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where downloads and unpacked releases are kept (default: "
                   "$SUTURE_CACHE_DIR, else $XDG_CACHE_HOME/suture or ~/.cache/suture).")
@click.option("--no-import", is_flag=True,
              help="Do not import the releases at build (their import-time code would run "
                   "here): the patch records their state as not verified.")
@click.option("--import-path", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Where the releases' dependencies are, for importing them at build "
                   "(repeatable; after the release itself on sys.path).")
@click.option("--import-env", multiple=True, metavar="NAME=VALUE",
              help="Environment for importing the releases at build, e.g. "
                   "DJANGO_SETTINGS_MODULE=site.settings (repeatable).")
@click.option("--import-python", metavar="PYTHON",
              help="The Python to import the releases with at build (default: the one "
                   "running suture): that of the processes the patch is for, since some "
                   "import-time values come from the standard library and differ between "
                   "versions. It runs without site-packages of its own: name the releases' "
                   "dependencies with --import-path.")
@click.option("--sign", "keys", multiple=True, metavar="KEY",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sign the patch with this private key (repeatable; see `suture keygen`).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build(old: str, new: str, output: Optional[Path], cves: Sequence[str], summary: str,
          hooks: Optional[Path], allow_restart: bool, embed_sources: bool,
          find_links: Sequence[str], index_url: Optional[str], no_index: bool,
          cache_dir: Optional[Path], no_import: bool, import_path: Sequence[str],
          import_env: Sequence[str], import_python: Optional[str], keys: Sequence[Path],
          as_json: bool) -> None:
    """Build a hotpatch from OLD (vulnerable) to NEW (fixed).

    OLD and NEW are each a source directory, a wheel, an sdist, or name==version.
    Each release is imported at build, in fresh interpreters, to record which module
    state the fix changes (the engine checks it after an apply): this runs their
    import-time code here; --no-import does not.
    Downloads and unpacked releases are kept in the cache: --cache-dir, else
    $SUTURE_CACHE_DIR, else $XDG_CACHE_HOME/suture or ~/.cache/suture. On a terminal,
    each slow step is shown on stderr.
    Exit codes: 0 built, 3 a change needs a restart, 4 a change needs a hook, 1 error
    (including OLD and NEW holding the same code: nothing to patch, SUT-E505).
    """
    from ..build import BuildRefused
    from ..build import build as do_build
    from ..trust import sign as sign_patch

    env: Dict[str, str] = {}
    for item in import_env:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--import-env")
        env[name] = value
    try:
        signers = _signing_keys(keys)
        report = do_build(old, new, cves=cves, summary=summary, hooks=hooks,
                          progress=_progress(),
                          allow_restart=allow_restart, cache_dir=cache_dir,
                          find_links=find_links, index_url=index_url, no_index=no_index,
                          embed_sources=embed_sources, verify_state=not no_import,
                          dry_run=not no_import,
                          import_path=import_path, import_env=env,
                          import_python=import_python)
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
    stub_file = _write_stub(report.migration_stub(), output)
    if as_json:
        _emit_json({**report.to_dict(), "output": str(output), "signatures": len(signers),
                    "migration_stub_file": str(stub_file) if stub_file else None})
        return
    _header(report.target)
    _render_changes(report.changes())
    _render_objects(_objects.rows(report.changes(), report.meta))
    _render_state(report.state)
    for line in report.scripts():
        click.echo(f"  script   {line}")
    _render_dry_run(report.dry_run)
    partial = " (PARTIAL: left out " + ", ".join(report.excluded) + ")" if report.excluded else ""
    signed = f", signed by {len(signers)} key(s)" if signers else ", unsigned"
    click.echo(f"\nwrote {output} ({len(data)} bytes), id {report.patch.id[:12]}{partial}"
               f"{signed}")
    if stub_file:
        click.echo(f"objects built before the patch need state the builder cannot derive: "
                   f"fill in {stub_file} and rebuild with --hooks {stub_file}; until then "
                   "apply refuses (SUT-E209) in processes that hold such objects")


def _progress() -> Optional[Callable[[str], None]]:
    """Each slow step on stderr, when stderr is a terminal: a cold download or the imports
    at build take seconds, and a command that prints nothing looks hung. Not otherwise: a
    script or CI log reads the report (or --json) only, and stderr stays for errors."""
    if not sys.stderr.isatty():
        return None

    def say(message: str) -> None:
        click.echo(f"suture build: {message}\u2026", err=True)

    return say


def _write_stub(stub: Optional[str], output: Path) -> Optional[Path]:
    """Write the migration stub beside the patch, never over a file that exists (an
    operator's filled-in copy)."""
    if not stub:
        return None
    path = output.with_name(output.name.rsplit(".", 1)[0] + ".migrations.py")
    if not path.exists():
        path.write_text(stub, encoding="utf-8")
    return path


def _header(target: Dict[str, Any]) -> None:
    if target.get("from_version"):
        click.echo(f"{target['name']} {target['from_version']} \u2192 {target['to_version']}")
    else:
        click.echo(f"{target['name']}")


@click.command()
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
            "objects": _objects.rows(rows, patch.meta),
            "migrations": _objects.migration_tables(patch.hooks.text if patch.hooks else None),
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
    tables = _objects.migration_tables(patch.hooks.text if patch.hooks else None)
    click.echo(f"hooks    {'yes' if patch.hooks else 'no'}"
               + "".join(f"; {name}: {', '.join(keys) or '(empty)'}"
                         for name, keys in sorted(tables.items())))
    click.echo(f"signed   {', '.join(k[:12] for k in keyids) + ' (keyids)' if keyids else 'no'}")
    click.echo("modules")
    for m in patch.modules:
        base = m.baseline.sha256[:12] if m.baseline else "(new)"
        n = len(m.delta or ())
        lines = f" ({n} hunk{'' if n == 1 else 's'})" if m.compact else ""
        click.echo(f"  {m.action:<7} {m.name:<40} {base} \u2192 {m.fixed.sha256[:12]}{lines}")
    _render_state(meta.get("state"))
    _render_objects(_objects.rows(rows, meta))
    click.echo("changes")
    _render_changes(rows)


def _render_objects(object_rows: List[Dict[str, Any]]) -> None:
    """What the patch does for objects and frames that exist before it (engine/_objects)."""
    if not object_rows:
        return
    click.echo("objects before the patch")
    for r in object_rows:
        if r["how"] == "frames":
            click.echo(f"  frames   {r['module']}:{r['caller']} -> {r['callee']}: apply waits "
                       "for running frames of the old caller, then refuses (SUT-E210)")
            continue
        when = "at apply" if r["direction"] == "apply" else "at revert"
        what = ("derived on first read" if r["how"] == "derived"
                else "needs a migration (SUT-E209 while objects lack it)")
        click.echo(f"  {when:<8} {r['module']}:{r['class']}.{r['attribute']}: {what}")


def _signing_keys(paths: Sequence[Path]) -> List[Any]:
    from ..trust import load_private_key

    return [load_private_key(p) for p in paths]


@click.command()
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


@click.command(name="sign")
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

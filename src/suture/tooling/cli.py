"""Command line: argument parsing and rendering only; the work happens elsewhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import click

from .. import __version__
from ..runtime.errors import SutureError
from ..runtime.patchfile import load

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="suture")
def main() -> None:
    """Suture: hotpatch running Python processes, with no restart."""


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
@click.option("--find-links", multiple=True, help="Passed to pip for name==version.")
@click.option("--index-url", default=None, help="Passed to pip for name==version.")
@click.option("--no-index", is_flag=True, help="Passed to pip for name==version.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build(old: str, new: str, output: Optional[Path], cves: Sequence[str], summary: str,
          hooks: Optional[Path], allow_restart: bool, find_links: Sequence[str],
          index_url: Optional[str], no_index: bool, cache_dir: Optional[Path],
          as_json: bool) -> None:
    """Build a hotpatch from OLD (vulnerable) to NEW (fixed).

    OLD and NEW are each a source directory, a wheel, an sdist, or name==version.
    Exit codes: 0 built, 3 a change needs a restart, 4 a change needs a hook, 1 error.
    """
    from .build import BuildRefused
    from .build import build as do_build

    try:
        report = do_build(old, new, cves=cves, summary=summary, hooks=hooks,
                          allow_restart=allow_restart, cache_dir=cache_dir,
                          find_links=find_links, index_url=index_url, no_index=no_index)
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
    output.write_bytes(report.data)
    if as_json:
        _emit_json({**report.to_dict(), "output": str(output)})
        return
    _header(report.target)
    _render_changes(report.changes())
    partial = " (PARTIAL: left out " + ", ".join(report.excluded) + ")" if report.excluded else ""
    click.echo(f"\nwrote {output} ({len(report.data)} bytes), id {report.patch.id[:12]}{partial}")


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
        patch = load(file.read_bytes())
    except SutureError as exc:
        _fail(exc, as_json)
    rows = [{"module": m.name, "kind": c.kind, "qualname": c.qualname, "verdict": c.verdict,
             "reason": c.reason} for m in patch.modules for c in m.changes]
    if as_json:
        _emit_json({
            "id": patch.id, "target": patch.target, "meta": patch.meta,
            "modules": [{"name": m.name, "action": m.action,
                         "baseline_sha256": m.baseline.sha256 if m.baseline else None,
                         "fixed_sha256": m.fixed.sha256} for m in patch.modules],
            "changes": rows, "files": list(patch.files), "hooks": patch.hooks is not None,
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
    click.echo("modules")
    for m in patch.modules:
        base = m.baseline.sha256[:12] if m.baseline else "(new)"
        click.echo(f"  {m.action:<7} {m.name:<40} {base} \u2192 {m.fixed.sha256[:12]}")
    click.echo("changes")
    _render_changes(rows)


@main.command()
@click.option("--fast", is_flag=True, help="No pauses between steps.")
def demo(fast: bool) -> None:
    """Live-patch a vulnerable example app, step by step, then revert."""
    from .demo import run

    sys.exit(run(fast=fast))


def _fail(exc: SutureError, as_json: bool) -> None:
    if as_json:
        _emit_json({"error": exc.to_dict()})
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()

"""CLI, fleets: ``suture feed publish``, ``sync``, ``daemon``, ``metrics``, ``vex`` (logic in
tooling/fleet).

Registered on the ``suture`` group by ``cli/__init__.py``; its output helpers come from
``_common``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Sequence

import click

from ...runtime.errors import SutureError
from ._common import _emit_json, _fail


@click.group()
def feed() -> None:
    """Maintain a patch feed: a directory of signed patches and a signed index."""


@feed.command("publish")
@click.argument("files", nargs=-1,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The feed directory (created if missing).")
@click.option("--key", "key_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key that signs the index (see `suture keygen`).")
@click.option("--channel", type=click.Choice(["canary", "early", "broad"]), default="broad",
              show_default=True, help="Release to hosts of this ring and earlier ones.")
@click.option("--name", "feed_name", default=None,
              help="Feed name for a new feed (default: the directory's name).")
@click.option("--valid-days", type=click.IntRange(min=1), default=30, show_default=True,
              help="The new index expires after this many days; hosts refuse an expired "
                   "index, so publish (with no FILES to renew it) at least that often.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def feed_publish(files: Sequence[Path], to: Path, key_path: Path, channel: str,
                 feed_name: str, valid_days: int, as_json: bool) -> None:
    """Add signed patch FILES to the feed in --to, released to --channel, and sign a new index.

    Each patch must be trusted by this host's own trust policy or signed by --key.
    Publishing a patch already in the feed to a wider channel promotes it; publishing no
    FILES renews the index (a new version and expiry, same patches).
    Exit codes: 0 published, 2 a patch is not trusted, 1 other errors.
    """
    from ..fleet import feed as feed_mod
    from ..trust import load_private_key

    try:
        key = load_private_key(key_path)
        report = feed_mod.publish(files, to, key, channel=channel, feed=feed_name,
                                  valid_days=valid_days)
    except SutureError as exc:
        _fail(exc, as_json, 2 if exc.code == "SUT-E110" else 1)
    if as_json:
        _emit_json(report)
        return
    for p in report["published"]:
        click.echo(f"published {p['id'][:12]} ({p['describe']}) to {p['channel']}")
    click.echo(f"feed {report['feed']} in {report['dir']}: index version {report['version']}, "
               f"{report['patches']} patch(es), expires {report['expires']}")


@click.command()
@click.argument("source")
@click.option("--check", "dry_run", is_flag=True,
              help="Check the index and list what is missing; download and write nothing.")
@click.option("--install", is_flag=True,
              help="Also install every synced patch in the store now (agents started later "
                   "apply it), instead of leaving that to the daemon's ring policy.")
@click.option("--deadline", default="5m", show_default=True,
              help="All downloads of this sync together must finish within this "
                   "duration (30s, 5m): a slow or dripping server is cut off (SUT-E102).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def sync(source: str, dry_run: bool, install: bool, deadline: str, as_json: bool) -> None:
    """Pull new patches from the feed at SOURCE (http(s) URL or directory) to this host.

    Checks the index's signature and that it is not older than the last one accepted,
    and each patch's own signatures, against the trust policy. Patches go to the host's
    feed mirror; the daemon installs them when due (--install: now). Exit codes: 0 synced,
    2 a patch was refused (not trusted or not matching the index), 3 the index is older
    than one already accepted (rollback), 1 a download failed, did not finish by the
    deadline, or the feed is unusable (malformed, unsigned, expired).
    """
    from ..fleet import feed as feed_mod
    from ..fleet.daemon import duration

    try:
        seconds = duration(deadline, "--deadline")
        if seconds <= 0:
            raise feed_mod.FeedError("--deadline must be more than 0 s")
        report = feed_mod.sync(source, dry_run=dry_run, deadline=seconds)
        if install and not dry_run:
            report["installed"] = feed_mod.install_synced(report)
    except feed_mod.FeedRollback as exc:
        _fail(exc, as_json, 3)
    except SutureError as exc:
        _fail(exc, as_json)
    rows = report["patches"]
    code = (1 if any(r["outcome"] == "failed" for r in rows)
            else 2 if any(r["outcome"] == "refused" for r in rows) else 0)
    if as_json:
        _emit_json(report)
        sys.exit(code)
    click.echo(f"feed {report['feed']} from {report['source']}: index version "
               f"{report['version']} (signed by {', '.join(report['signed_by'])})")
    for r in rows:
        click.echo(f"  {r['outcome']:<8} {r['id'][:12]}  {feed_mod.describe(r['target'])}"
                   + (f"  {r['reason']}" if r["reason"] else ""))
    if not report["recorded"] and not dry_run:
        click.echo("some downloads failed: the index version was not recorded; run "
                   "`suture sync` again to fetch what is missing", err=True)
    sys.exit(code)


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the document here (default: standard output).")
@click.option("--format", "fmt", type=click.Choice(["openvex", "cyclonedx"]),
              default="openvex", show_default=True,
              help="OpenVEX v0.2.0, or CycloneDX 1.5 VEX.")
@click.option("--sbom", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="cyclonedx only: a CycloneDX SBOM (JSON) of the scanned system; the VEX "
                   "then refers to its components by BOM-Link, the form `trivy sbom --vex` "
                   "reads.")
def vex(output: Path, fmt: str, sbom: Path) -> None:
    """Write a VEX document for this host: per vulnerability of the installed patches (and
    of the advisories `suture status` knows) and the release it affects, whether that
    release is not affected here (every process that loads it runs the patch, and new
    processes apply it at start) or affected (and what to do). Built from what `suture
    status` sees; feed it to a scanner (`trivy ... --vex FILE`, `grype ... --vex FILE`).
    A changed status gets a later timestamp than the last document's (kept in the state
    directory), so the newer document overrides it.
    Exit codes: 0 written, 1 the store cannot be read, 64 a bad --sbom."""
    import json

    from ...runtime import store
    from ...runtime.patchfile import load
    from ..fleet import fanout
    from ..fleet import vex as vex_mod

    if sbom is not None and fmt != "cyclonedx":
        raise click.UsageError("--sbom needs --format cyclonedx")
    bom = None
    if sbom is not None:
        try:
            bom = json.loads(sbom.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read {sbom} as JSON: {exc}",
                                     param_hint="--sbom") from exc
        if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
            raise click.BadParameter(f"{sbom} is not a CycloneDX JSON document",
                                     param_hint="--sbom")
    try:
        known = [load(d) for d, _ in store.load_installed()]
        report = fanout.status(patches=known)
    except SutureError as exc:
        _fail(exc, True)
    partial = {p.id: [str(x) for x in p.meta.get("excluded") or []]
               for p in known if p.meta.get("partial")}
    doc = vex_mod.document(report, partial=partial, previous=vex_mod.load_state())
    if not doc["statements"]:
        click.echo("suture vex: no statement (no installed patch names a CVE of a released "
                   "version, and no advisory matches a running process)"
                   + ("" if fmt == "cyclonedx" else "; the OpenVEX schema wants at least one, "
                      "so strict validators reject this document"), err=True)
    if fmt == "cyclonedx":
        try:
            text, left_out = vex_mod.cyclonedx(doc, sbom=bom)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--sbom") from exc
        for product in left_out:
            click.echo(f"suture vex: {product} is not in {sbom}: its statements were left "
                       "out", err=True)
    else:
        text = json.dumps(doc, indent=2, sort_keys=True)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
    try:
        vex_mod.save_state(doc)
    except OSError as exc:
        # The document is right; only the next one's timestamps lose their memory (a
        # changed status then gets the time it is written, which is later in practice).
        click.echo(f"suture vex: could not keep this document's statements in "
                   f"{vex_mod.state_path()}: {exc}", err=True)


@click.command()
@click.option("--textfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this .prom file atomically (node-exporter's textfile "
                   "collector) instead of standard output.")
def metrics(textfile: Path) -> None:
    """Print this host's Prometheus metrics: processes by state, exposed processes per CVE,
    per-patch states, processes per public advisory and state (source: SUTURE_ADVISORIES,
    as `suture status --advisories`), audited operations, apply pauses, feed syncs.
    Exit codes: 0 written, 1 the store cannot be read."""
    from ...runtime import store
    from ...runtime.patchfile import load
    from ..fleet import fanout
    from ..fleet import metrics as metrics_mod

    try:
        known = [load(d) for d, _ in store.load_installed()]
        report = fanout.status(patches=known)
        audit = store.audit_log()
    except SutureError as exc:
        _fail(exc, False)
    text = metrics_mod.render(report, audit,
                              metrics_mod.feed_states(Path(store.state_dir()) / "feeds"))
    if textfile is None:
        click.echo(text, nl=False)
    else:
        metrics_mod.write_textfile(textfile, text)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="daemon.toml (default: in the config directory, beside trust.toml).")
@click.option("--once", is_flag=True, help="Run one cycle and exit (cron, tests).")
@click.option("--check", "dry_run", is_flag=True,
              help="With --once: say what the cycle would install and apply, exactly (it "
                   "syncs into a throw-away copy of the mirrors); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the cycle's report.")
def daemon(config_file: str, once: bool, dry_run: bool, as_json: bool) -> None:
    """Keep this host patched: sync the feeds, install patches when they are due for this
    host's ring (delay, maintenance window), apply them to exposed processes (health watch,
    revert and mark bad on failure). State: <state dir>/daemon.json. See docs/fleet.md.
    Exit codes: 0 stopped (SIGTERM) or --once done, 1 configuration or cycle error."""
    import signal
    import threading

    from ..fleet import daemon as daemon_mod

    if dry_run and not once:
        # Without --once the daemon would run for real, every interval: the opposite of
        # what --check asks for.
        raise click.UsageError("--check needs --once (one cycle, computed, nothing changed)")
    try:
        cfg = daemon_mod.load_config(config_file)
    except SutureError as exc:
        _fail(exc, as_json)
    if once:
        try:
            report = daemon_mod.cycle(cfg, dry_run=dry_run,
                                      log=lambda m: click.echo(m, err=True))
        except SutureError as exc:
            _fail(exc, as_json)
        if as_json:
            _emit_json(report)
        else:
            _render_cycle(report)
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"suture daemon: ring {cfg.ring}, {len(cfg.feeds)} feed(s), every "
               f"{cfg.interval:g} s ({cfg.path})", err=True)
    sys.exit(daemon_mod.run(cfg, stop=stop))


def _render_cycle(report: Dict[str, Any]) -> None:
    """One `daemon --once` report as text: feeds, patches, what was (or would be) applied,
    and each process's state per patch (--json has the same, whole)."""
    from ..fleet.feed import describe

    check = bool(report.get("dry_run"))
    click.echo(f"daemon cycle at {report['at']}, ring {report['ring']}"
               + (": --check, nothing was changed" if check else ""))
    for f in report["feeds"]:
        if f.get("code"):
            click.echo(f"  feed {f['source']}: FAILED {f['code']} {f.get('error', '')}")
        else:
            click.echo(f"  feed {f['source']}: {f.get('feed')} index version {f.get('version')}"
                       + (f", refused {', '.join(i[:12] for i in f['refused'])}"
                          if f.get("refused") else "")
                       + (f", failed {', '.join(i[:12] for i in f['failed'])}"
                          if f.get("failed") else ""))
    targets: Dict[str, str] = {}
    if report["patches"]:
        click.echo("patches:")
    for p in report["patches"]:
        targets[p["id"]] = describe(p["target"])
        cves = ", ".join(p["cves"]) or "no CVE"
        state = ("would install" if p["reason"] == "would install"
                 else "installed now" if p.get("installed_now")
                 else p["state"] + (f": {p['reason']}" if p["reason"] else ""))
        click.echo(f"  {p['id'][:12]}  {targets[p['id']]}  {cves}  {state}")
    if check:
        click.echo("would apply:" if report["would_apply"] else "would apply: nothing")
        for w in report["would_apply"]:
            pids = ", ".join(str(pid) for pid in w["pids"])
            click.echo(f"  {w['patch'][:12]} to {len(w['pids'])} process"
                       f"{'es' if len(w['pids']) != 1 else ''}: {pids}")
    else:
        click.echo("applied:" if report["applied"] else "applied: nothing")
        for a in report["applied"]:
            rows = ", ".join(f"{r['pid']} {r['outcome']}" for r in a["processes"])
            watch = a.get("watch")
            click.echo(f"  {a['patch'][:12]}: {rows}"
                       + (f"; watch {watch['result']}" if watch else ""))
    retire = report.get("would_retire" if check else "retired") or []
    if retire:
        click.echo("would retire:" if check else "retired:")
    for r in retire:
        click.echo(f"  {r['patch'][:12]}  {r['reason']}")
    if report["processes"]:
        click.echo("processes:")
    for proc in report["processes"]:
        command = " ".join(str(proc.get("command", "")).split())[:60]
        click.echo(f"  {proc['pid']:>7}  {command}")
        for p in proc["patches"]:
            click.echo(f"  {'':>7}    {p['patch'][:12]}  {p['state']}"
                       + (f": {p['reason']}" if p["reason"] else ""))

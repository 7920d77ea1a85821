"""OpenVEX for a host: per CVE and product, what its running processes are (docs/fleet.md).

Built from the report of ``fleet.status()`` (the one source of ``suture status --json``),
so a scanner reading it sees exactly what ``suture status`` sees. OpenVEX v0.2.0
(https://github.com/openvex/spec): one statement per (CVE, product), the product being
the vulnerable release as a purl, ``pkg:pypi/<name>@<version>``.

Status, from the processes that have the agent (the only ones whose code is known):

* ``affected``: a process runs that release without the patch, or with the patch reverted
  by the application (action: apply it); or the patch is applied but frames that started
  before it still run the old code (``draining``; action: wait for them, or restart): the
  one rule for draining, shared with ``suture status`` and the metrics, is that a process
  is not protected until they finished; or the patch is partial and the rest needs a
  restart (action: restart on the fixed release);
* ``fixed``: every such process has the patch applied (or applies it on import);
* ``not_affected`` (``vulnerable_code_not_in_execute_path``): no process with the agent
  runs that release.

Python processes without the agent cannot be inspected; each statement's notes say how
many there were, so a reader knows what the statement does not cover.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
from typing import Any, Dict, List, Optional, Tuple

from packaging.utils import canonicalize_name

from ... import __version__

CONTEXT = "https://openvex.dev/ns/v0.2.0"


def purl(name: str, version: str) -> str:
    return f"pkg:pypi/{canonicalize_name(name)}@{version}"


def document(report: Dict[str, Any], *, partial: Optional[Dict[str, List[str]]] = None,
             host: Optional[str] = None, now: Optional[str] = None) -> Dict[str, Any]:
    """The OpenVEX document for ``report`` (``fleet.status()``). ``partial`` maps the id of
    a partial patch to the modules it left out (they need a restart)."""
    host = host or socket.gethostname()
    now = now or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    partial = partial or {}
    blind = [p["pid"] for p in report["processes"] if p["state"] == "unknown"]
    statements: List[Dict[str, Any]] = []
    for entry in sorted(report["patches"], key=lambda e: e["id"]):
        t = entry["target"]
        if t.get("kind") != "distribution" or not t.get("from_version") or not entry["cves"]:
            continue
        status, notes = _judge(entry, partial.get(entry["id"]))
        if blind:
            notes["status_notes"] = (notes.get("status_notes", "") + (" " if notes.get(
                "status_notes") else "") + f"{len(blind)} Python process(es) without the "
                "Suture agent were not inspected (pids " + ", ".join(map(str, blind[:20]))
                + (", ..." if len(blind) > 20 else "") + ").")
        for cve in sorted(entry["cves"]):
            statements.append(dict({
                "vulnerability": {"name": cve},
                "products": [{"@id": purl(t["name"], t["from_version"])}],
                "status": status}, **notes))
    body = json.dumps(statements, sort_keys=True).encode("utf-8")
    return {
        "@context": CONTEXT,
        "@id": f"urn:suture:vex:{host}:{hashlib.sha256(body).hexdigest()[:16]}",
        "author": f"Suture {__version__} on {host}",
        "role": "Host hotpatch status",
        "timestamp": now,
        "version": 1,
        "tooling": f"suture {__version__} (suture vex)",
        "statements": statements,
    }


def _judge(entry: Dict[str, Any], excluded: Optional[List[str]]) -> Tuple[str, Dict[str, Any]]:
    t, short = entry["target"], entry["id"][:12]
    rel = f"{t['name']} {t['from_version']}"
    procs = entry["processes"]
    exposed = [p["pid"] for p in procs if p["state"] == "exposed"]
    draining = [p["pid"] for p in procs if p["state"] == "draining"]
    fixed = [p["pid"] for p in procs if p["state"] in ("fixed", "pending import")]
    pids = ", ".join(map(str, (exposed or draining or fixed)[:20]))
    if exposed:
        return "affected", {"action_statement": (
            f"{len(exposed)} running process(es) (pids {pids}) run {rel} without Suture patch "
            f"{short}: apply it (`suture apply FILE --pid PID`), or restart them on "
            f"{t['name']} {t.get('to_version')}.")}
    if draining:
        return "affected", {"action_statement": (
            f"Suture patch {short} is applied in {len(draining)} process(es) (pids {pids}), "
            f"but frames that started before it still run the vulnerable code of {rel} "
            f"(`suture status` names them); they are protected once those finish. Wait, or "
            f"restart them on {t['name']} {t.get('to_version')}.")}
    if fixed and excluded:
        return "affected", {"action_statement": (
            f"Suture patch {short} fixes the Python code of {rel} in memory in {len(fixed)} "
            f"process(es) (pids {pids}), but it is partial: {', '.join(excluded)} changed in "
            f"ways that need a restart. Restart them on {t['name']} {t.get('to_version')}.")}
    if fixed:
        return "fixed", {"status_notes": (
            f"Fixed in memory by Suture patch {short} in every running process that loads "
            f"{rel} ({len(fixed)}: pids {pids}). The installed files are still {rel}: "
            f"processes started with the Suture agent apply the installed patch; others load "
            f"the vulnerable code until {t['name']} is upgraded to {t.get('to_version')}.")}
    return "not_affected", {
        "justification": "vulnerable_code_not_in_execute_path",
        "impact_statement": f"No running process with the Suture agent loads {rel}."}

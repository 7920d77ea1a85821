"""VEX for a host: per vulnerability and release, what its running processes are
(docs/fleet.md, "VEX").

Built from the report of ``fleet.status()`` (the one source of ``suture status --json``),
so a scanner reading it sees exactly what ``suture status`` sees. OpenVEX v0.2.0
(https://github.com/openvex/spec), and CycloneDX VEX made from the same statements.

Scanners (Trivy, Grype) read the *installed* files: they report the vulnerable release
that is on disk. So each statement's product is that release as a purl,
``pkg:pypi/<name>@<version>`` with no qualifiers (Trivy matches a product that has
qualifiers only when the package has them all, and its Python packages have none), and
the status says whether running code from that release is still vulnerable here:

* ``not_affected`` (justification ``inline_mitigations_already_exist``, the impact
  statement naming the patch id, which is the sha256 of the patch payload): every process
  that loads the release has the patch applied, or applies it on import, *and* the patch
  is installed in the store, so that a process started later with the agent applies it at
  start. With no process loading the release at all, that second half alone holds.
* ``affected`` (with an ``action_statement``): a process runs the release without the
  patch, or with it reverted by the application, or not applied in one of its
  interpreters, or has an interpreter Suture could not inspect (exposed); the patch is applied but
  frames that started before it still run the old code (draining: the one rule, shared
  with ``suture status`` and the metrics, is that a process is not protected until they
  finished); the patch is partial and the rest needs a restart; or the patch is applied
  by hand but not installed, so a new process would load the vulnerable code.

``fixed`` is never said: to a scanner it means that the release itself is fixed, which
is false for every copy of it on disk. ``under_investigation`` is said once, to withdraw
a ``not_affected`` claim that Suture can no longer make (its patch removed from the store).

Statements come from the installed (and hand-applied) patches with their CVEs, and, when
the report has them, from its ``advisories`` (PyPI's advisory data joined with the
processes): one statement per (vulnerability, release), the advisory's other ids in
``aliases``. One statement per pair matters: with two, Trivy takes the latest and Grype
the earliest.

Revocation: a document may be superseded by a later one ("latest statement wins"), so
each statement carries its own timestamp: that of the document that first said its
current status. When the status changed since the last document this host wrote, the
timestamp is strictly later than the previous statement's. The last document's
statements are kept in the host's state directory (``vex.json`` beside the store).

Python processes without the agent cannot be inspected; each statement's notes say how
many there were, so a reader knows what the statement does not cover.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple
from urllib.parse import quote, quote_plus

from packaging.utils import canonicalize_name

from ... import __version__
from ...runtime import store

CONTEXT = "https://openvex.dev/ns/v0.2.0"
STATE_FILE = "vex.json"
INLINE = "inline_mitigations_already_exist"
_FMT = "%Y-%m-%dT%H:%M:%SZ"
# Process states of the patch entries (fleet.fanout.PATCH_STATES) that are protected.
_PROTECTED = ("fixed", "pending import")


def purl(name: str, version: str) -> str:
    """The purl scanners give an installed Python distribution.

    The purl-spec's rule for ``pypi`` (lowercase, ``_`` becomes ``-``), which is exactly
    what Trivy applies to a package's name (pkg/purl, ``parsePyPI``) and what the
    package-url parser that Trivy and Grype compare purls with applies. It is *not*
    PEP 503's: a ``.`` stays a ``.`` (``pkg:pypi/zope.interface@7.2``), as it does in
    the scanners' purls. The version is percent-encoded as the purl-spec's canonical form
    has it (``1.0+local`` is ``1.0%2Blocal``); scanners compare parsed purls, so the
    decoded version is what must match.
    """
    return f"pkg:pypi/{name.lower().replace('_', '-')}@{quote(str(version), safe='.')}"


# ------------------------------------------------------------------------------ state

def state_path() -> Path:
    return Path(store.state_dir()) / STATE_FILE


def load_state(path: Optional[Path] = None) -> Dict[str, Any]:
    """The last document's statements, as ``previous`` for ``document()``; empty when there
    is none or it cannot be read (then every timestamp is simply now)."""
    try:
        state = json.loads((path or state_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(doc: Dict[str, Any], path: Optional[Path] = None) -> None:
    """Keep what the next document needs to give a changed status a later timestamp."""
    from .feed import _write_atomic
    state = {"timestamp": doc["timestamp"], "@id": doc["@id"],
             "statements": {_key(s): {"vulnerability": s["vulnerability"],
                                      "product": s["products"][0]["@id"],
                                      "status": s["status"],
                                      "justification": s.get("justification"),
                                      "timestamp": s["timestamp"]}
                            for s in doc["statements"]}}
    _write_atomic(path or state_path(), json.dumps(state, indent=1, sort_keys=True)
                  .encode("utf-8"), 0o600)


def _key(statement: Dict[str, Any]) -> str:
    return f"{statement['vulnerability']['name']} {statement['products'][0]['@id']}"


def _parse(text: Any) -> Optional[_dt.datetime]:
    try:
        return _dt.datetime.strptime(str(text), _FMT).replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None


# --------------------------------------------------------------------------- document

def document(report: Dict[str, Any], *, partial: Optional[Dict[str, List[str]]] = None,
             host: Optional[str] = None, now: Optional[str] = None,
             previous: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The OpenVEX document for ``report`` (``fleet.status()``). ``partial`` maps the id of
    a partial patch to the modules it left out (they need a restart). ``previous`` is
    ``load_state()``: the last document's statements, whose timestamps are kept while
    their status is the same and exceeded when it changed."""
    host = host or socket.gethostname()
    now = now or _dt.datetime.now(_dt.timezone.utc).strftime(_FMT)
    partial = partial or {}
    blind = [p["pid"] for p in report["processes"] if p["state"] == "unknown"]
    found: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for entry in sorted(report["patches"], key=lambda e: e["id"]):
        t = entry["target"]
        if t.get("kind") != "distribution" or not t.get("from_version") or not entry["cves"]:
            continue
        status, notes = _judge(entry, partial.get(entry["id"]))
        product = purl(t["name"], t["from_version"])
        for cve in sorted(entry["cves"]):
            found[(cve, product)] = dict({"vulnerability": {"name": cve},
                                          "products": [{"@id": product}],
                                          "status": status}, **notes)
    patches = {e["id"]: e for e in report["patches"]}
    # An advisory names its package canonically (PEP 503: "zope-interface"), but the
    # scanners' purl keeps the distribution's dots ("zope.interface"): spell it as the
    # patches and the agents' answers do when they know it.
    names = [e["target"].get("name") for e in report["patches"]] + [
        n for p in report["processes"] for n in p.get("dists") or {}]
    spelled: Dict[str, str] = {canonicalize_name(str(n)): str(n) for n in names if n}
    for adv in report.get("advisories") or []:
        for statement in _from_advisory(adv, patches, partial, spelled):
            _merge(found, statement)
    before: Dict[str, Any] = (previous or {}).get("statements") or {}
    _withdraw(found, before)
    statements = [found[k] for k in sorted(found)]
    caveats: List[str] = []
    if blind:
        caveats.append(f"{len(blind)} Python process(es) without the Suture agent were not "
                     f"inspected (pids {_pids(blind)}).")
    # Processes with an interpreter their agent could not reach (issue 22): a statement
    # whose release they have is affected (_judge); for the others, the interpreter's own
    # imports are unknown, as a process without an agent's are.
    partly = [p["pid"] for p in report["processes"] if p.get("uninspectable")]
    if partly:
        caveats.append(f"{len(partly)} process(es) have an interpreter Suture could not "
                     f"inspect (pids {_pids(partly)}); they count as exposed.")
    for note in caveats:
        for s in statements:
            s["status_notes"] = (s["status_notes"] + " " + note if s.get("status_notes")
                                 else note)
    stamp = _stamper(now, before)
    for s in statements:
        s["timestamp"] = stamp(s)
    issued = max([now] + [s["timestamp"] for s in statements])
    # The id names the claims, not when they were first made: the same statements, the
    # same id (a reader can tell that nothing changed).
    body = json.dumps([{k: v for k, v in s.items() if k != "timestamp"} for s in statements],
                      sort_keys=True).encode("utf-8")
    return {
        "@context": CONTEXT,
        "@id": f"urn:suture:vex:{host}:{hashlib.sha256(body).hexdigest()[:16]}",
        "author": f"Suture {__version__} on {host}",
        "role": "Host hotpatch status",
        "timestamp": issued,
        "version": 1,
        "tooling": f"suture {__version__} (suture vex)",
        "statements": statements,
    }


def _withdraw(found: Dict[Tuple[str, str], Dict[str, Any]], before: Dict[str, Any]) -> None:
    """A ``not_affected`` claim of the last document that Suture can no longer make (its
    patch was removed from the store, the advisory withdrawn) is not simply dropped: a
    reader that merges documents would keep the old claim as the latest word. It becomes
    ``under_investigation`` once, with a later timestamp; the document after that drops it."""
    made = {f"{k[0]} {k[1]}" for k in found}
    for key, old in sorted(before.items()):
        if (key in made or not isinstance(old, dict) or old.get("status") != "not_affected"
                or not isinstance(old.get("vulnerability"), dict) or not old.get("product")):
            continue
        found[(str(old["vulnerability"].get("name")), str(old["product"]))] = {
            "vulnerability": old["vulnerability"], "products": [{"@id": old["product"]}],
            "status": "under_investigation", "status_notes": (
                "The previous document said not_affected; Suture no longer knows a patch "
                "that protects this release here (removed from the store, or no longer "
                "matched to this vulnerability), so that claim is withdrawn.")}


def _stamper(now: str, before: Dict[str, Any]) -> Any:
    """A statement's timestamp: the previous one while its status (and justification) is
    the same, else now, made strictly later than the previous one (two documents in the
    same second, or a clock that stepped back, must still order the revocation after the
    claim it revokes)."""
    current = _parse(now)

    def stamp(s: Dict[str, Any]) -> str:
        old = before.get(_key(s))
        if not isinstance(old, dict):
            return now
        then = _parse(old.get("timestamp"))
        if then is None:
            return now
        if (old.get("status"), old.get("justification")) == (s["status"],
                                                               s.get("justification")):
            return str(old["timestamp"])
        if current is not None and current > then:
            return now
        return (then + _dt.timedelta(seconds=1)).strftime(_FMT)

    return stamp


def _pids(pids: Sequence[Any]) -> str:
    return ", ".join(map(str, pids[:20])) + (", ..." if len(pids) > 20 else "")


def _judge(entry: Dict[str, Any], excluded: Optional[List[str]]) -> Tuple[str, Dict[str, Any]]:
    t, pid = entry["target"], entry["id"]
    rel = f"{t['name']} {t['from_version']}"
    procs = entry["processes"]
    # exposed because an interpreter could not be inspected (issue 22): it may run anything
    hidden = [p["pid"] for p in procs if p["state"] == "exposed" and p.get("uninspectable")]
    exposed = [p["pid"] for p in procs if p["state"] == "exposed" and p["pid"] not in hidden]
    draining = [p["pid"] for p in procs if p["state"] == "draining"]
    fixed = [p["pid"] for p in procs if p["state"] in _PROTECTED]
    upgrade = f"{t['name']} {t.get('to_version')}"
    if exposed or hidden:
        actions = []
        if exposed:
            actions.append(
                f"{len(exposed)} running process(es) (pids {_pids(exposed)}) run {rel} "
                f"without Suture patch {pid[:12]}: apply it (`suture apply FILE --pid PID`), "
                f"or restart them on {upgrade}.")
        if hidden:
            actions.append(
                f"{len(hidden)} running process(es) (pids {_pids(hidden)}) have {rel} and an "
                f"interpreter Suture could not inspect (`suture status` names it), which may "
                f"run it without Suture patch {pid[:12]}: restart them on {upgrade}.")
        return "affected", {"action_statement": " ".join(actions)}
    if draining:
        return "affected", {"action_statement": (
            f"Suture patch {pid[:12]} is applied in {len(draining)} process(es) (pids "
            f"{_pids(draining)}), but frames that started before it still run the vulnerable "
            f"code of {rel} (`suture status` names them); they are protected once those "
            f"finish. Wait, or restart them on {upgrade}.")}
    if excluded:
        return "affected", {"action_statement": (
            f"Suture patch {pid[:12]} fixes the Python code of {rel} in memory, but it is "
            f"partial: {', '.join(excluded)} changed in ways that need a restart. Restart "
            f"the processes that load {rel} on {upgrade}.")}
    if not entry.get("installed"):
        return "affected", {"action_statement": (
            f"Suture patch {pid[:12]} was applied by hand"
            + (f" (in pids {_pids(fixed)})" if fixed else "") + " but is not installed, so "
            f"a process started later loads the vulnerable code of {rel}: install it "
            f"(`suture install FILE`), or upgrade to {upgrade}.")}
    # not seen in the interpreters asked, while another could not be asked: no claim
    unseen = [p["pid"] for p in procs if p["state"] == "unknown" and p.get("uninspectable")]
    if unseen:
        return "under_investigation", {"status_notes": (
            f"{len(unseen)} running process(es) (pids {_pids(unseen)}) have an interpreter "
            f"Suture could not inspect (`suture status` names it), which may load {rel}.")}
    return "not_affected", {"justification": INLINE, "impact_statement": _impact(
        rel, [pid], fixed, upgrade)}


def _impact(rel: str, patches: Sequence[str], fixed: Sequence[Any], upgrade: str) -> str:
    which = ", ".join(patches)
    running = (f"Fixed in memory in every running process that loads {rel} ({len(fixed)}: "
               f"pids {_pids(fixed)})" if fixed else f"No running process loads {rel}")
    return (f"{running}; Suture patch {which} (the sha256 of the patch payload) is installed "
            f"on this host, so processes started with the Suture agent apply it at start. "
            f"The installed files are still {rel}: a process started without the agent "
            f"loads the vulnerable code until upgraded to {upgrade}.")


def _from_advisory(adv: Dict[str, Any], patches: Dict[str, Dict[str, Any]],
                   partial: Dict[str, List[str]], spelled: Dict[str, str]
                   ) -> Iterable[Dict[str, Any]]:
    """One statement per release of the advisory's package that a process runs and that
    the advisory affects (releases it does not affect are left to the scanner, which knows
    them as well: Suture adds nothing there)."""
    name, vid = str(adv.get("package") or ""), str(adv.get("id") or "")
    if not name or not vid:
        return
    name = spelled.get(canonicalize_name(name), name)
    aliases = sorted({str(a) for a in adv.get("aliases") or []} - {vid})
    by_version: Dict[str, List[Dict[str, Any]]] = {}
    for p in adv.get("processes") or []:
        if p.get("version") and p.get("state") != "not affected":
            by_version.setdefault(str(p["version"]), []).append(p)
    fixed_in = ", ".join(str(v) for v in adv.get("fixed_in") or []) or "a fixed release"
    for version in sorted(by_version):
        procs = by_version[version]
        rel, upgrade = f"{name} {version}", f"{name} {fixed_in}"
        vuln: Dict[str, Any] = {"name": vid}
        if aliases:
            vuln["aliases"] = aliases
        status, notes = _judge_advisory(rel, upgrade, procs, patches, partial)
        yield dict({"vulnerability": vuln, "products": [{"@id": purl(name, version)}],
                    "status": status}, **notes)


def _judge_advisory(rel: str, upgrade: str, procs: List[Dict[str, Any]],
                    patches: Dict[str, Dict[str, Any]], partial: Dict[str, List[str]]
                    ) -> Tuple[str, Dict[str, Any]]:
    def state_in_patch(p: Dict[str, Any]) -> Optional[str]:
        """The process's state in the patch's own entry (it knows draining and reverts)."""
        entry = patches.get(str(p.get("patch")))
        for q in (entry or {}).get("processes") or []:
            if q.get("pid") == p.get("pid"):
                return str(q.get("state"))
        return None

    no_patch = [p["pid"] for p in procs if p.get("state") == "exposed, no patch"]
    available = [p for p in procs if p.get("state") == "exposed, patch available"]
    fixed = [p for p in procs if p.get("state") == "fixed in memory"]
    unknown = [p["pid"] for p in procs if p.get("state") not in (
        "exposed, no patch", "exposed, patch available", "fixed in memory")]
    draining = [p for p in fixed if state_in_patch(p) in ("draining", "exposed")]
    ids = sorted({str(p.get("patch")) for p in fixed if p.get("patch")})
    cut = sorted({m for i in ids for m in partial.get(i) or []})
    missing = [i for i in ids if not (patches.get(i) or {}).get("installed")]
    actions: List[str] = []
    if no_patch:
        actions.append(f"{len(no_patch)} running process(es) (pids {_pids(no_patch)}) run "
                       f"{rel} and no Suture patch for it is known: upgrade to {upgrade} and "
                       f"restart them.")
    if available:
        offered = sorted({str(p.get("patch"))[:12] for p in available if p.get("patch")})
        actions.append(f"{len(available)} running process(es) (pids "
                       f"{_pids([p['pid'] for p in available])}) run {rel} without Suture "
                       f"patch {', '.join(offered) or '(available)'}: apply it (`suture "
                       f"apply FILE --pid PID`), or upgrade to {upgrade} and restart them.")
    if draining:
        actions.append(f"A Suture patch is applied in {len(draining)} process(es) (pids "
                       f"{_pids([p['pid'] for p in draining])}) but the vulnerable code of "
                       f"{rel} still runs there (`suture status` says where): wait for it to "
                       f"finish, or restart them on {upgrade}.")
    if cut:
        actions.append(f"Suture patch {', '.join(i[:12] for i in ids)} is partial: "
                       f"{', '.join(cut)} changed in ways that need a restart. Restart the "
                       f"processes that load {rel} on {upgrade}.")
    if fixed and missing and not actions:
        actions.append(f"Suture patch {', '.join(i[:12] for i in missing)} was applied by "
                       f"hand but is not installed, so a process started later loads the "
                       f"vulnerable code of {rel}: install it (`suture install FILE`), or "
                       f"upgrade to {upgrade}.")
    if unknown and not actions:
        actions.append(f"{len(unknown)} process(es) (pids {_pids(unknown)}) run {rel} in a "
                       f"state Suture cannot judge: upgrade to {upgrade} and restart them.")
    if actions or not ids:
        return "affected", {"action_statement": " ".join(actions) or (
            f"No Suture patch protects {rel}: upgrade to {upgrade}.")}
    return "not_affected", {"justification": INLINE, "impact_statement": _impact(
        rel, ids, [p["pid"] for p in fixed], upgrade)}


def _merge(found: Dict[Tuple[str, str], Dict[str, Any]], new: Dict[str, Any]) -> None:
    """Add an advisory's statement, replacing the statements the patches made about the
    same release under any of its ids: one statement per (vulnerability, release). The
    status is the worse of the two (``affected`` wins), so neither view can hide the
    other's exposure."""
    product = new["products"][0]["@id"]
    names: Set[str] = {new["vulnerability"]["name"], *new["vulnerability"].get("aliases", [])}
    same = [k for k in found if k[1] == product and k[0] in names]
    olds = [found.pop(k) for k in same]
    affected = [s for s in [new] + olds if s["status"] == "affected"]
    if affected and new["status"] != "affected":
        new = dict(new, status="affected")
        new.pop("justification", None)
        new.pop("impact_statement", None)
    if affected:
        new["action_statement"] = " ".join(dict.fromkeys(
            s["action_statement"] for s in affected))
    found[(new["vulnerability"]["name"], product)] = new


# -------------------------------------------------------------------------- CycloneDX

def cyclonedx(doc: Dict[str, Any], *, sbom: Optional[Dict[str, Any]] = None
              ) -> Tuple[str, List[str]]:
    """The OpenVEX document ``doc`` as a CycloneDX 1.5 VEX (JSON text), built with
    cyclonedx-python-lib, and the products it left out.

    Each statement becomes a vulnerability with ``analysis.state`` ``not_affected``
    (justification ``protected_at_runtime``, the impact statement as ``detail``) or
    ``exploitable`` (the action as ``recommendation`` and ``detail``), the aliases as
    ``references`` and the statement's timestamp as ``analysis.lastUpdated``.

    Without ``sbom`` the document lists the releases as its own components (``bom-ref``
    = the purl) and ``affects`` refers to them. With ``sbom`` (a CycloneDX SBOM of the
    scanned system, as JSON) it is an independent VEX for that SBOM: ``affects`` are
    BOM-Links ``urn:cdx:SERIAL/VERSION#BOM-REF`` to the SBOM's components with the same
    purl (name compared as ``purl()`` writes it, qualifiers ignored), which is the only
    form Trivy reads (``trivy sbom --vex``); statements about releases the SBOM does not
    have are left out and returned.
    """
    from cyclonedx.model import XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.impact_analysis import (ImpactAnalysisJustification,
                                                 ImpactAnalysisState)
    from cyclonedx.model.vulnerability import (BomTarget, Vulnerability, VulnerabilityAnalysis,
                                               VulnerabilityReference, VulnerabilitySource)
    from cyclonedx.output.json import JsonV1Dot5
    from packageurl import PackageURL

    def source(vid: str) -> VulnerabilitySource:
        # Where each kind of id is published (a reference needs a source).
        if vid.startswith("CVE-"):
            return VulnerabilitySource(name="NVD", url=XsUri(
                f"https://nvd.nist.gov/vuln/detail/{vid}"))
        if vid.startswith("GHSA-"):
            return VulnerabilitySource(name="GitHub", url=XsUri(
                f"https://github.com/advisories/{vid}"))
        return VulnerabilitySource(name="OSV", url=XsUri(f"https://osv.dev/vulnerability/{vid}"))

    links: Dict[str, List[str]] = {}
    if sbom is not None:
        serial = str(sbom.get("serialNumber") or "")
        if not serial.startswith("urn:uuid:"):
            raise ValueError("the SBOM has no serialNumber (urn:uuid:...), so no BOM-Link "
                             "can refer to it")
        head = f"urn:cdx:{serial[len('urn:uuid:'):].lower()}/{int(sbom.get('version') or 1)}#"
        for comp in _components(sbom.get("components") or []):
            try:
                p = PackageURL.from_string(str(comp.get("purl") or ""))
            except ValueError:
                continue
            if p.type == "pypi" and p.version and comp.get("bom-ref"):
                links.setdefault(purl(p.name, p.version), []).append(
                    head + quote_plus(str(comp["bom-ref"])))

    bom = Bom()
    bom.metadata.timestamp = _parse(doc["timestamp"]) or bom.metadata.timestamp
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION,
                                                name="suture", version=__version__))
    products: Dict[str, Any] = {}
    left_out: List[str] = []
    for s in doc["statements"]:
        product = s["products"][0]["@id"]
        if sbom is not None:
            refs = links.get(product, [])
            if not refs:
                left_out.append(product)
                continue
        else:
            if product not in products:
                p = PackageURL.from_string(product)
                products[product] = Component(
                    type=ComponentType.LIBRARY, name=p.name, version=p.version,
                    purl=p, bom_ref=product)
                bom.components.add(products[product])
            refs = [product]
        vid = s["vulnerability"]["name"]
        when = _parse(s["timestamp"])
        if s["status"] == "not_affected":
            analysis = VulnerabilityAnalysis(
                state=ImpactAnalysisState.NOT_AFFECTED,
                justification=ImpactAnalysisJustification.PROTECTED_AT_RUNTIME,
                detail=_detail(s, "impact_statement"), last_updated=when)
            recommendation = None
        elif s["status"] == "under_investigation":
            analysis = VulnerabilityAnalysis(state=ImpactAnalysisState.IN_TRIAGE,
                                             detail=s.get("status_notes"),
                                             last_updated=when)
            recommendation = None
        else:
            analysis = VulnerabilityAnalysis(
                state=ImpactAnalysisState.EXPLOITABLE,
                detail=_detail(s, "action_statement"), last_updated=when)
            recommendation = s.get("action_statement")
        bom.vulnerabilities.add(Vulnerability(
            bom_ref=f"{vid} {product}", id=vid, source=source(vid),
            references=[VulnerabilityReference(id=a, source=source(a))
                        for a in s["vulnerability"].get("aliases", [])],
            recommendation=recommendation, analysis=analysis,
            affects=[BomTarget(ref=r) for r in refs]))
    return JsonV1Dot5(bom).output_as_string(indent=2), sorted(set(left_out))


def _detail(s: Dict[str, Any], field: str) -> str:
    return " ".join(t for t in (s.get(field), s.get("status_notes")) if t)


def _components(items: Sequence[Any]) -> Iterable[Dict[str, Any]]:
    for c in items:
        if isinstance(c, dict):
            yield c
            yield from _components(c.get("components") or [])

"""Known vulnerabilities per released distribution, from PyPI's advisory data (docs/fleet.md).

PyPI's JSON API lists, per release, the OSV advisories that affect it (field
``vulnerabilities``: ``id``, ``aliases``, ``fixed_in``, ``withdrawn``, ``summary``,
``details``, ``link``). One vulnerability is often listed two or three times, once per
database (PYSEC, GHSA, each naming the others and the CVE in ``aliases``): those are
merged into one advisory here, whose id is the CVE when there is one, else the GHSA,
else the PYSEC id. Withdrawn ones are dropped.

Where the data comes from (``Source``):

* ``pypi`` (the default): the cache when its entry is younger than the expiry, else the
  registry (``https://pypi.org/pypi/NAME/VERSION/json``); when the registry cannot be
  reached, a cached entry of any age (reported as stale), else the release's
  advisories are unknown, with the reason.
* ``cache``: the cache only, whatever its age (offline).
* a file: a mirror, for air-gapped hosts (and the tests): a PyPI JSON response (its
  ``info.name``/``info.version`` say which release), a list of them, or
  ``{"releases": {"NAME==VERSION": [vulnerabilities...] or a PyPI response}}``.
* ``off``: no advisories.

The per-release page is the only one that lists a release's advisories: the project page
(``/pypi/NAME/json``) lists those of the latest release only. When the per-release page
answers 404, the project page tells why: the project or the release is not on PyPI (then
it has no advisories there, and that is cached), or the release is the latest (its
advisories are on the project page), or the release exists and a proxy between here and
PyPI passes only project pages: then the advisories are unknown, said so, never "none".

pip-audit's PyPI service does the same requests (and pip-audit is not a dependency of
Suture); what is here adds the cache, the mirror file and the merging by alias.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from packaging.version import InvalidVersion, Version

from ...runtime._members import canonical as canonicalize_name   # packaging's rule (PEP 503)
from ...runtime.errors import SutureError

__all__ = ["Advisory", "AdvisorySourceError", "Lookup", "Source", "merge", "primary_id", "lookup", "cache_dir",
           "DEFAULT_TTL", "PYPI_URL"]

PYPI_URL = "https://pypi.org/pypi"
DEFAULT_TTL = 24 * 3600.0      # seconds a cached answer is used without asking again
TIMEOUT = 10.0                 # seconds per request
PARALLEL = 8

Release = Tuple[str, str]      # (canonical name, version)


@dataclass
class Advisory:
    id: str
    aliases: List[str]           # every id of it, its own included, sorted
    package: str                 # canonical name
    summary: str
    fixed_in: List[str]
    link: Optional[str]

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "aliases": list(self.aliases), "package": self.package,
                "summary": self.summary, "fixed_in": list(self.fixed_in), "link": self.link}


@dataclass
class Lookup:
    """Per release: its advisories, or why they are unknown (``errors``); ``notes``: how
    an answer was had when that matters (a stale cache entry)."""
    found: Dict[Release, List[Advisory]] = field(default_factory=dict)
    errors: Dict[Release, str] = field(default_factory=dict)
    notes: Dict[Release, str] = field(default_factory=dict)
    source: str = "off"


@dataclass
class Source:
    kind: str                    # "pypi", "cache", "file" or "off"
    path: Optional[Path] = None  # the mirror file (kind "file")
    ttl: float = DEFAULT_TTL
    url: str = PYPI_URL
    cache: Optional[Path] = None

    @classmethod
    def parse(cls, text: Optional[str]) -> "Source":
        """From ``--advisories`` / ``SUTURE_ADVISORIES``: pypi (default), cache, off, or a
        file path. ``SUTURE_ADVISORIES_TTL`` (seconds) and ``SUTURE_PYPI_URL`` (the JSON
        API's base, for a mirror that serves it) apply to ``pypi``."""
        text = text if text is not None else os.environ.get("SUTURE_ADVISORIES") or "pypi"
        try:
            ttl = float(os.environ.get("SUTURE_ADVISORIES_TTL") or DEFAULT_TTL)
        except ValueError:
            ttl = DEFAULT_TTL
        url = (os.environ.get("SUTURE_PYPI_URL") or PYPI_URL).rstrip("/")
        if text in ("pypi", "cache", "off"):
            return cls(text, ttl=ttl, url=url)
        return cls("file", path=Path(text), ttl=ttl, url=url)

    def describe(self) -> str:
        if self.kind == "file":
            return f"mirror file {self.path}"
        if self.kind == "cache":
            return f"cache {self.cache or cache_dir()} (offline)"
        if self.kind == "pypi":
            return f"{self.url} (cache {self.cache or cache_dir()})"
        return "off"


def cache_dir() -> Path:
    """``<cache>/advisories``, ``<cache>`` as `suture build` has it: ``$SUTURE_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/suture``, else ``~/.cache/suture`` (the rule of
    build/sources.py's ``default_cache_dir``, which fleet may not import)."""
    explicit = os.environ.get("SUTURE_CACHE_DIR")
    if explicit:
        base = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "suture" if xdg and os.path.isabs(xdg) else (
            Path.home() / ".cache" / "suture")
    return base / "advisories"


_PREFERENCE = ("CVE-", "GHSA-", "PYSEC-")


def primary_id(ids: Iterable[str]) -> str:
    """The CVE id when there is one, else the GHSA id, else the PYSEC id, else the first
    (each kind: the smallest, so that the choice does not depend on order)."""
    ids = sorted(set(ids))
    for prefix in _PREFERENCE:
        mine = [i for i in ids if i.upper().startswith(prefix)]
        if mine:
            return mine[0]
    return ids[0]


def _version_key(text: str) -> Tuple[int, Any]:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def merge(vulnerabilities: Sequence[Dict[str, Any]], package: str) -> List[Advisory]:
    """PyPI's ``vulnerabilities`` of one release as advisories: withdrawn entries dropped,
    entries that share an id or alias merged (transitively) into one."""
    groups: List[Tuple[Set[str], List[Dict[str, Any]]]] = []
    for v in vulnerabilities:
        if not isinstance(v, dict) or not isinstance(v.get("id"), str) or v.get("withdrawn"):
            continue
        ids = {v["id"]} | {a for a in v.get("aliases") or [] if isinstance(a, str)}
        joined = [g for g in groups if g[0] & ids]
        for g in joined:
            groups.remove(g)
            ids |= g[0]
        groups.append((ids, [x for g in joined for x in g[1]] + [v]))
    out = []
    for ids, entries in groups:
        first = primary_id(ids)
        # the summary and link of the entry the primary id names, else of any
        entries = sorted(entries, key=lambda e: (e["id"] != first, e["id"]))
        summary = next((str(e.get("summary") or e.get("details") or "") for e in entries
                        if e.get("summary") or e.get("details")), "")
        fixed = sorted({str(f) for e in entries for f in e.get("fixed_in") or []},
                       key=_version_key)
        link = next((str(e["link"]) for e in entries if e.get("link")), None)
        out.append(Advisory(first, sorted(ids), canonicalize_name(package),
                            " ".join(summary.split())[:300], fixed, link))
    return sorted(out, key=lambda a: a.id)


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


# -- sources ------------------------------------------------------------------------------

class AdvisorySourceError(SutureError):
    """The advisory mirror file given cannot be read, or is not PyPI's format."""
    code = "SUT-E660"


def _mirror(path: Path) -> Dict[Release, List[Dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdvisorySourceError(
            f"cannot read the advisory mirror file {path}: {exc}. Give a file in PyPI's JSON "
            "format (docs/fleet.md, \"Advisories\"), or --advisories pypi, cache or off.",
            details={"path": str(path)}) from exc
    out: Dict[Release, List[Dict[str, Any]]] = {}

    def response(r: Any) -> None:
        info = r.get("info") if isinstance(r, dict) else None
        if isinstance(info, dict) and info.get("name") and info.get("version"):
            out[(canonicalize_name(str(info["name"])), str(info["version"]))] = list(
                r.get("vulnerabilities") or [])

    if isinstance(data, list):
        for r in data:
            response(r)
    elif isinstance(data, dict) and isinstance(data.get("releases"), dict) and "info" not in data:
        for key, value in data["releases"].items():
            name, _, version = str(key).partition("==")
            if isinstance(value, dict):
                value = value.get("vulnerabilities") or []
            if name and version and isinstance(value, list):
                out[(canonicalize_name(name), version)] = list(value)
    else:
        response(data)
    if not out:
        raise AdvisorySourceError(
            f"the advisory mirror file {path} names no release: expected a PyPI JSON response "
            "(with info.name, info.version and vulnerabilities), a list of them, or "
            "{\"releases\": {\"NAME==VERSION\": [vulnerabilities]}} (docs/fleet.md)",
            details={"path": str(path)})
    return out


def _cache_file(root: Path, release: Release) -> Path:
    name, version = release
    safe = "".join(c if c.isalnum() or c in ".-_+!" else "_" for c in version)
    return root / name / f"{safe}.json"


def _read_cache(root: Path, release: Release) -> Optional[Dict[str, Any]]:
    try:
        entry = json.loads(_cache_file(root, release).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(entry, dict) and isinstance(entry.get("fetched"), (int, float))
          and isinstance(entry.get("vulnerabilities"), list))
    return entry if ok else None


def _write_cache(root: Path, release: Release, entry: Dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written costs a request next time, no more."""
    path = _cache_file(root, release)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


# A release whose page the registry does not serve (a proxy: ``_Fetcher.release``) is not
# asked again for this long, so that every `suture status` does not repeat two requests
# per release that are known to fail.
BLOCKED_TTL = 3600.0


def _blocked_file(root: Path, release: Release) -> Path:
    path = _cache_file(root, release)
    return path.with_name(path.stem + ".unknown.json")


def _read_blocked(root: Path, release: Release) -> Optional[Dict[str, Any]]:
    try:
        entry = json.loads(_blocked_file(root, release).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(entry, dict) and isinstance(entry.get("fetched"), (int, float))
          and isinstance(entry.get("reason"), str))
    return entry if ok else None


def _write_blocked(root: Path, release: Release, now: float, reason: str) -> None:
    path = _blocked_file(root, release)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fetched": now, "reason": reason}), encoding="utf-8")
    except OSError:
        pass


def _when(fetched: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(fetched))


def _fallback(result: "Lookup", release: Release, stale: Optional[Dict[str, Any]],
              reason: str) -> None:
    """No fresh answer: a cached one of any age (noted), else the release is unknown."""
    if stale is not None:
        result.found[release] = merge(stale["vulnerabilities"], release[0])
        result.notes[release] = f"from the cache, fetched {_when(stale['fetched'])}: {reason}"
    else:
        result.errors[release] = reason


class Unreachable(Exception):
    """The registry did not answer (network, proxy, TLS, 5xx): nothing is known."""


class _Fetcher:
    def __init__(self, url: str) -> None:
        self.url = url
        self.down: Optional[str] = None          # first "unreachable": the rest fail fast
        self.projects: Dict[str, Optional[Dict[str, Any]]] = {}

    def _get(self, path: str) -> Optional[Dict[str, Any]]:
        """The JSON at ``path``, None on 404; raises ``Unreachable``."""
        if self.down is not None:
            raise Unreachable(self.down)
        import urllib.error   # here: `suture status` imports this module, maybe offline
        import urllib.request

        request = urllib.request.Request(f"{self.url}/{path}",
                                         headers={"Accept": "application/json",
                                                  "User-Agent": "suture (advisories)"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
                data = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise Unreachable(f"{self.url}/{path} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            self.down = f"{self.url} is unreachable: {reason}"
            raise Unreachable(self.down) from exc
        return data if isinstance(data, dict) else {}

    def release(self, release: Release) -> Tuple[str, List[Dict[str, Any]]]:
        """("ok" | "absent", vulnerabilities); raises ``Unreachable`` or ``LookupError``
        (the release exists, but its page cannot be had: a reason)."""
        name, version = release
        quoted = urllib.parse.quote(name), urllib.parse.quote(version)
        data = self._get(f"{quoted[0]}/{quoted[1]}/json")
        if data is not None:
            return "ok", list(data.get("vulnerabilities") or [])
        if name not in self.projects:
            self.projects[name] = self._get(f"{quoted[0]}/json")
        project = self.projects[name]
        if project is None:
            return "absent", []          # not on PyPI: a private or local distribution
        info = project.get("info") or {}
        if _same(str(info.get("version")), version):
            return "ok", list(project.get("vulnerabilities") or [])
        releases = project.get("releases") or {}
        if any(_same(str(v), version) for v in releases):
            raise LookupError(
                f"PyPI has {name} {version}, but its page {self.url}/{name}/{version}/json "
                "answered 404 (a proxy that passes only project pages?); the project page "
                "lists the advisories of the latest release only")
        return "absent", []              # a release PyPI does not have (a local build)


def lookup(releases: Iterable[Release], source: Source, *, now: Optional[float] = None
           ) -> Lookup:
    """Advisories of each (name, version) from ``source``. Never raises for one release:
    its reason goes into ``errors``; a mirror file that cannot be read raises
    ``SutureError``."""
    wanted = sorted({(canonicalize_name(n), v) for n, v in releases})
    result = Lookup(source=source.describe())
    if source.kind == "off":
        return result
    if source.kind == "file":
        assert source.path is not None
        mirror = _mirror(source.path)
        for release in wanted:
            match = next((vs for (n, v), vs in mirror.items()
                          if n == release[0] and _same(v, release[1])), None)
            if match is None:
                result.errors[release] = f"not in the mirror file {source.path}"
            else:
                result.found[release] = merge(match, release[0])
        return result
    root = source.cache or cache_dir()
    now = time.time() if now is None else now
    todo: List[Release] = []
    for release in wanted:
        entry = _read_cache(root, release)
        blocked = _read_blocked(root, release)
        not_there = entry is not None and entry.get("status") == "absent"
        if entry is not None and (source.kind == "cache" or now - entry["fetched"] < (
                min(source.ttl, BLOCKED_TTL) if not_there else source.ttl)):
            result.found[release] = merge(entry["vulnerabilities"], release[0])
            if not_there:
                result.notes[release] = _absent_note(source.url, entry["fetched"])
        elif (source.kind == "pypi" and blocked is not None
              and 0 <= now - blocked["fetched"] < min(source.ttl, BLOCKED_TTL)):
            _fallback(result, release, entry, f"{blocked['reason']} (remembered from "
                      f"{_when(blocked['fetched'])}; asked again an hour after that)")
        elif source.kind == "cache":
            result.errors[release] = f"not in the cache {root} (offline)"
        else:
            todo.append(release)
    if not todo:
        return result
    fetcher = _Fetcher(source.url)
    answered: List[Release] = []
    absent: List[Release] = []

    def fetch(release: Release) -> None:
        try:
            status, vulns = fetcher.release(release)
        except (Unreachable, LookupError) as exc:
            if isinstance(exc, LookupError):   # a fact about the path to PyPI: remember it
                _write_blocked(root, release, now, str(exc))
            _fallback(result, release, _read_cache(root, release), str(exc))
            return
        if status == "absent":
            absent.append(release)
            return
        answered.append(release)
        _write_cache(root, release, {"fetched": now, "status": status,
                                     "vulnerabilities": vulns})
        result.found[release] = merge(vulns, release[0])

    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(todo))) as pool:
        list(pool.map(fetch, todo))
    # "Not on the registry" is said of a private or local distribution. Said of every
    # project asked, it is rather a registry URL that serves no such pages (the simple
    # index, a mirror of another kind): nothing is known, and nothing is cached.
    if len(absent) >= 2 and not answered and not any(r in result.found for r in wanted):
        for gone in absent:
            _fallback(result, gone, None, (
                f"{source.url} knows none of the {len(absent)} projects asked (all answered "
                f"404): is it PyPI's JSON API (https://pypi.org/pypi, or $SUTURE_PYPI_URL)?"))
        return result
    for gone in absent:
        _write_cache(root, gone, {"fetched": now, "status": "absent", "vulnerabilities": []})
        result.found[gone] = []
        result.notes[gone] = _absent_note(source.url, now)
    return result


def _absent_note(url: str, fetched: float) -> str:
    return (f"not on {url} (answered 404 on {_when(fetched)}): a private or local "
            f"distribution? No advisories are known for it; asked again after an hour")


# -- the join: per process and advisory, one of four states -------------------------------

STATES = ("fixed in memory", "exposed, patch available", "exposed, no patch", "not affected")
EXPOSED = ("exposed, patch available", "exposed, no patch")


@dataclass
class Candidate:
    """A patch that could fix a release: known (the store), applied somewhere, or synced
    from a feed (``where`` says which)."""
    id: str
    target: Dict[str, Any]
    cves: List[str]
    where: str


def covers(c: Candidate, advisory: Advisory, version: str) -> bool:
    """Whether patch ``c`` fixes ``advisory`` in a process that runs ``version``: built
    from exactly that release of the advisory's package, and naming one of its ids, or
    (naming none) moving to a release at or past one the advisory is fixed in."""
    t = c.target
    if (t.get("kind") != "distribution" or not t.get("from_version")
            or canonicalize_name(str(t.get("name"))) != advisory.package
            or not _same(str(t["from_version"]), version)):
        return False
    if c.cves:
        return bool({x.upper() for x in c.cves} & {a.upper() for a in advisory.aliases})
    try:
        old, new = Version(version), Version(str(t.get("to_version")))
        return any(old < Version(f) <= new for f in advisory.fixed_in
                   if _version_key(f)[0] == 0)
    except InvalidVersion:
        return False


def _unite(into: List[Advisory], more: Sequence[Advisory]) -> None:
    """Add ``more`` to ``into``, merging advisories of one package that share an id
    (one advisory seen through two releases)."""
    for a in more:
        same = next((b for b in into if b.package == a.package
                     and set(b.aliases) & set(a.aliases)), None)
        if same is None:
            into.append(Advisory(a.id, list(a.aliases), a.package, a.summary,
                                 list(a.fixed_in), a.link))
            continue
        same.aliases = sorted(set(same.aliases) | set(a.aliases))
        same.id = primary_id(same.aliases)
        same.fixed_in = sorted(set(same.fixed_in) | set(a.fixed_in), key=_version_key)
        same.summary = same.summary or a.summary
        same.link = same.link or a.link


def join(processes: Sequence[Dict[str, Any]], found: Lookup,
         candidates: Sequence[Candidate],
         protected: Dict[Tuple[int, str], str]) -> List[Dict[str, Any]]:
    """The report's ``advisories`` (docs/live-processes.md). ``processes``: status rows
    with an ``inventory`` from their agent; ``protected``: (pid, patch id) -> state of a
    patch applied in that process (fanout's per-patch states). Each exposed process also
    gets an entry in its ``exposed`` list (so exit code and metrics follow)."""
    every: List[Advisory] = []
    for release in sorted(found.found):
        _unite(every, found.found[release])
    out: List[Dict[str, Any]] = []
    for adv in sorted(every, key=lambda a: (a.package, a.id)):
        rows: List[Dict[str, Any]] = []
        for p in processes:
            for d in (p.get("inventory") or {}).get("dists") or []:
                if (canonicalize_name(str(d.get("name"))) != adv.package
                        or d.get("version_uncertain")):
                    continue          # unknown release: in advisory_errors
                version = str(d.get("version"))
                release = (adv.package, version)
                listed = next((r for n, r in found.found.items()
                               if n[0] == adv.package and _same(n[1], version)), None)
                if listed is None:
                    continue          # unknown for this release: in advisory_errors
                hit = any(set(a.aliases) & set(adv.aliases) for a in listed)
                rows.append(_verdict(p, adv, version, hit, candidates, protected, release))
        out.append(dict(adv.to_dict(), processes=rows))
    return out


def _verdict(p: Dict[str, Any], adv: Advisory, version: str, hit: bool,
             candidates: Sequence[Candidate], protected: Dict[Tuple[int, str], str],
             release: Release) -> Dict[str, Any]:
    pid = p["pid"]
    row: Dict[str, Any] = {"pid": pid, "version": version, "state": "not affected",
                           "patch": None}
    if not hit:
        return row
    mine = [c for c in candidates if covers(c, adv, version)]
    fixed = [c for c in mine if protected.get((pid, c.id)) in ("fixed", "pending import")]
    if fixed:
        row.update(state="fixed in memory", patch=fixed[0].id)
        return row
    applied = [c for c in mine if (pid, c.id) in protected]
    usable = applied + [c for c in mine if c not in applied]
    upgrade = f"upgrade {adv.package} to {' or '.join(adv.fixed_in)} and restart" if (
        adv.fixed_in) else f"no fixed release of {adv.package} is known"
    if usable:
        c = usable[0]
        row.update(state="exposed, patch available", patch=c.id)
        why = (f"runs {adv.package} {version}; patch {c.id[:12]} ({c.where}) is "
               + (f"applied but {protected[(pid, c.id)]}" if (pid, c.id) in protected
                  else "not applied"))
        fix = f"suture apply FILE --pid {pid} (patch {c.id[:12]}); or {upgrade}"
    else:
        row["state"] = "exposed, no patch"
        why = f"runs {adv.package} {version}; no patch for {adv.id} is known here"
        fix = upgrade
    p["exposed"].append({"patch": row["patch"], "cves": [adv.id], "advisory": adv.id,
                         "reason": why, "fix": fix})
    p["state"] = "exposed"
    return row

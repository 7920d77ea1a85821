#!/usr/bin/env python3
"""Patch size against the fixed release's wheel, for each pair of the CVE corpus.

For each entry of the corpus (default ``../shared/corpus/public.json``, as
``benchmarks/cve``) it builds the patch in this interpreter (``build``: releases from
PyPI through the builder's cache, ``~/.cache/suture/sources-v1``; the state manifest
from importing both releases here, with no extra dependencies: a module whose import
fails is recorded as not verified, so manifests can be smaller than the harness's,
which imports in the entry's own environment) and reports:

* the patch file's bytes as written today (deflated payload) and as before issue 19
  (the same payload uncompressed, ``dump(compress=False)``), against the bytes of the
  fixed release's wheel (else its sdist): "smaller by" = wheel / patch;
* the median of those ratios over the built pairs;
* where the bytes go: the uncompressed payload split by part (the changed lines of the
  deltas, whole sources, hashes, the change list, the state manifest's fingerprints,
  ``describe`` strings, literals, ...; "structure" is the JSON around them), base64 and
  the envelope; and for the deflated payload, how many bytes each part costs (leave
  one out: the stream's size with that part's strings emptied);
* alternatives measured on the same payload: lzma, and base85 instead of base64.

Patch size is deterministic (building twice gives the same bytes), so one round is
enough; nothing here is a timing.

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/patch_size.py --corpus ../shared/corpus/public.json
    PYTHONPATH=src python3 benchmarks/patch_size.py --json out.json
    PYTHONPATH=src python3 benchmarks/patch_size.py --quick   # urllib3, offline
    PYTHONPATH=src python3 benchmarks/patch_size.py --pair Django:4.2.17:4.2.18
"""

from __future__ import annotations

import argparse
import base64
import json
import lzma
import os
import platform
import statistics
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import _provenance  # benchmarks/_provenance.py (this script's directory)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "public.json"
HOOKS = REPO / "benchmarks" / "cve" / "hooks"

# The parts of the payload, by where a string sits in it. Every string or number of the
# payload belongs to exactly one part; "structure" is what is left (keys, brackets).
PARTS = ("delta removed", "delta inserted", "whole sources", "hashes", "changes",
         "state fingerprints", "state describe", "state literal", "state label+path",
         "state other", "hooks", "meta other", "files", "structure")


def _part(path: Tuple[Any, ...]) -> str:
    keys = [k for k in path if isinstance(k, str)]
    if not keys:
        return "structure"
    top = keys[0]
    if top == "modules":
        if "delta" in keys:
            return "delta removed" if path[-1] == 1 else "delta inserted"
        if keys[-1] == "source":
            return "whole sources"
        if keys[-1] == "sha256":
            return "hashes"
        if "changes" in keys:
            return "changes"
        return "structure"
    if top == "meta" and len(keys) > 1 and keys[1] == "state":
        if "paths" in keys:
            if keys[-1] in ("baseline", "fixed"):
                return "state fingerprints"
            for k in ("describe", "literal"):
                if k in keys:
                    return f"state {k}"
            return "state label+path"
        return "state other"
    if top == "meta":
        return "meta other"
    if top in ("hooks", "files"):
        return top
    return "structure"


def _leaves(obj: Any, path: Tuple[Any, ...] = ()) -> List[Tuple[Tuple[Any, ...], Any]]:
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += _leaves(v, path + (k,))
        return out
    if isinstance(obj, list):
        out = []
        for i, v in enumerate(obj):
            out += _leaves(v, path + (i,))
        return out
    return [(path, obj)]


def _json_len(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _blank(obj: Any, part: str, path: Tuple[Any, ...] = ()) -> Any:
    """``obj`` with the strings of ``part`` emptied (numbers and keys kept)."""
    if isinstance(obj, dict):
        return {k: _blank(v, part, path + (k,)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_blank(v, part, path + (i,)) for i, v in enumerate(obj)]
    if isinstance(obj, str) and _part(path) == part:
        return ""
    return obj


def breakdown(data: bytes) -> Dict[str, Any]:
    """Where the bytes of the patch file ``data`` go (see the module docstring)."""
    from suture.runtime.patchfile import canonical_json, payload_json, read_envelope, seal

    envelope, payload = read_envelope(data)
    body_bytes = payload_json(envelope, payload)
    body = json.loads(body_bytes)
    raw: Dict[str, int] = dict.fromkeys(PARTS, 0)
    for path, value in _leaves(body):
        raw[_part(path)] += _json_len(value)
    raw["structure"] += len(body_bytes) - sum(raw.values())

    def deflate(body: bytes) -> int:   # as the writer does it (level 9, the dictionary)
        return len(base64.b64decode(seal(body)["payload"]))

    deflated = deflate(body_bytes)
    cost = {}
    for part in PARTS[:-1]:
        if raw[part]:
            cost[part] = deflated - deflate(canonical_json(_blank(body, part)))
    # What no format could go below while carrying the fix's lines both ways (the text of
    # the deltas and whole sources, deflated alone) and the hashes that pin each source
    # (32 bytes each as raw bytes), in a binary file with no envelope.
    texts = "".join(v for path, v in _leaves(body) if isinstance(v, str) and _part(path) in
                    ("delta removed", "delta inserted", "whole sources", "hooks"))
    hashes = sum(1 for path, v in _leaves(body) if _part(path) == "hashes")
    floor = len(zlib.compress(texts.encode("utf-8"), 9)) + 32 * hashes
    return {"payload_json": len(body_bytes), "payload_json_parts": raw,
            "payload_deflated": deflated, "deflated_cost_leave_one_out": cost,
            "envelope_payload": len(payload),
            "base64_overhead": len(envelope["payload"]) - len(payload),
            "envelope_overhead": len(data) - len(envelope["payload"]),
            "floor": floor,
            "alternatives": {
                "zlib_without_dictionary": len(zlib.compress(body_bytes, 9)),
                "lzma_raw": len(lzma.compress(body_bytes, format=lzma.FORMAT_RAW, filters=[
                    {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])),
                "base85_file": len(data) - len(envelope["payload"])
                + len(base64.b85encode(payload))},
            }


def corpus_pairs(corpus: Path) -> List[Dict[str, Any]]:
    entries = json.loads(corpus.read_text(encoding="utf-8"))["entries"]
    return [{"name": e["package"], "old": e["old"], "new": e["new"], "role": e["role"],
             "cves": e.get("cve", []),
             "allow_restart": e["role"] == "unverified" and e.get("native_or_data_changed")}
            for e in entries]


def wheel_bytes(name: str, version: str, cache: Optional[Path]) -> Optional[int]:
    """Bytes of the release's file the builder downloaded (its wheel, else its sdist)."""
    from suture.tooling.build.sources import default_cache_dir
    import re

    root = (cache or default_cache_dir()) / "sources-v1" / "download"
    norm = re.sub(r"[-_.]+", "-", name).lower()
    files = [f for d in root.glob("*") if d.name.lower().startswith(f"{norm}-{version}-")
             or re.sub(r"[-_.]+", "-", d.name).lower().startswith(f"{norm}-{version}-")
             for f in d.iterdir()]
    files = sorted([f for f in files if f.suffix == ".whl"] or files)
    return files[0].stat().st_size if files else None


def measure(pair: Dict[str, Any], old: str, new: str, cache: Optional[Path],
            fixed_bytes: Callable[[], Optional[int]], verify_state: bool) -> Dict[str, Any]:
    from suture.runtime.patchfile import dump, load
    from suture.tooling.build import BuildRefused, build

    hooks = HOOKS / f"{pair['name']}-{pair['new']}.py"
    row: Dict[str, Any] = {"pair": f"{pair['name']} {pair['old']} -> {pair['new']}",
                           "role": pair.get("role", ""), "hooks": hooks.exists()}
    try:
        report = build(old, new, cves=pair.get("cves", ()), cache_dir=cache,
                       hooks=hooks if hooks.exists() else None,
                       allow_restart=bool(pair.get("allow_restart")),
                       verify_state=verify_state)
    except BuildRefused as exc:
        row["refused"] = exc.message.splitlines()[0]
        return row
    assert report.data is not None and report.patch is not None
    patch = load(report.data)
    before = dump(patch, compress=False)   # the format of the corpus table before issue 19
    assert load(before).id == patch.id
    state = patch.meta.get("state", {}).get("modules", {})
    row.update({
        "patch_id": patch.id, "modules": len(patch.modules),
        "compact_modules": sum(1 for m in patch.modules if m.compact),
        "state_verified": sum(1 for s in state.values() if s.get("verified")),
        "state_not_verified": sum(1 for s in state.values() if not s.get("verified")),
        "fixed_wheel_bytes": fixed_bytes(),
        "patch_bytes": len(report.data), "patch_bytes_before": len(before),
        "breakdown": breakdown(report.data),
    })
    if row["fixed_wheel_bytes"]:
        row["smaller_by"] = row["fixed_wheel_bytes"] / row["patch_bytes"]
        row["smaller_by_before"] = row["fixed_wheel_bytes"] / row["patch_bytes_before"]
        row["smaller_by_floor"] = row["fixed_wheel_bytes"] / row["breakdown"]["floor"]
    return row


def summary(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    built = [r for r in rows if "smaller_by" in r]
    out: Dict[str, Any] = {"pairs": len(rows), "built": len(built)}
    if built:
        for key in ("smaller_by", "smaller_by_before", "smaller_by_floor"):
            values = [r[key] for r in built]
            out[key] = {"median": statistics.median(values), "min": min(values),
                        "max": max(values)}
        out["at_least_100x"] = sum(1 for r in built if r["smaller_by"] >= 100)
        parts: Dict[str, int] = dict.fromkeys(PARTS, 0)
        for r in built:
            for k, v in r["breakdown"]["payload_json_parts"].items():
                parts[k] += v
        out["payload_json_parts_total"] = parts
        out["totals"] = {k: sum(r[k] for r in built) for k in
                         ("patch_bytes", "patch_bytes_before")}
    return out


def markdown(result: Dict[str, Any]) -> str:
    rows = result["pairs"]
    out = ["| pair | modules (state verified) | fixed wheel | patch before | smaller by "
           "before | patch now | smaller by now | floor | smaller by at the floor |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "refused" in r:
            out.append(f"| {r['pair']} | refused: {r['refused'][:80]} | | | | | | | |")
            continue
        w = r.get("fixed_wheel_bytes")
        out.append(f"| {r['pair']} | {r['modules']} ({r['state_verified']}) | {w or '-':,} | "
                   f"{r['patch_bytes_before']:,} | {r.get('smaller_by_before', 0):.1f}× | "
                   f"{r['patch_bytes']:,} | {r.get('smaller_by', 0):.1f}× | "
                   f"{r['breakdown']['floor']:,} | {r.get('smaller_by_floor', 0):.1f}× |")
    s = result["summary"]
    if s.get("built"):
        out += ["", f"Median over {s['built']} built pairs: {s['smaller_by_before']['median']:.1f}×"
                f" before, {s['smaller_by']['median']:.1f}× now ({s['at_least_100x']} at 100× "
                f"or more); {s['smaller_by_floor']['median']:.1f}× at the floor.", "",
                "Uncompressed payload by part (all built pairs):", "",
                "| part | bytes | share |", "|---|---:|---:|"]
        total = sum(s["payload_json_parts_total"].values())
        for k, v in sorted(s["payload_json_parts_total"].items(), key=lambda kv: -kv[1]):
            out.append(f"| {k} | {v:,} | {100 * v / total:.1f}% |")
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--cache", type=Path, default=None,
                    help="the builder's cache directory (default ~/.cache/suture)")
    ap.add_argument("--pairs", default="", help="comma-separated package names (default: all)")
    ap.add_argument("--pair", action="append", default=[], metavar="NAME:OLD:NEW",
                    help="measure this release pair instead of the corpus (repeatable)")
    ap.add_argument("--no-import", action="store_true",
                    help="no state manifest (faster; patches are smaller than real ones)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: urllib3 1.26.17 -> 1.26.18 from tests/data, offline")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE",
                    help="write JSON to FILE (or stdout with no FILE, instead of markdown)")
    args = ap.parse_args(argv)
    rows = []
    if args.quick:
        pair = {"name": "urllib3", "old": "1.26.17", "new": "1.26.18",
                "cves": ["CVE-2023-45803"]}
        whl = DATA / "urllib3-{}-py2.py3-none-any.whl"
        rows.append(measure(pair, str(whl).format("1.26.17"), str(whl).format("1.26.18"),
                            args.cache, lambda: Path(str(whl).format("1.26.18")).stat().st_size,
                            not args.no_import))
    else:
        wanted = {p.lower() for p in args.pairs.split(",") if p}
        pairs = [dict(zip(("name", "old", "new"), spec.split(":")), role="extra")
                 for spec in args.pair] or corpus_pairs(args.corpus)
        for pair in pairs:
            if wanted and pair["name"].lower() not in wanted:
                continue
            print(f"... {pair['name']} {pair['old']} -> {pair['new']}", file=sys.stderr)
            rows.append(measure(pair, f"{pair['name']}=={pair['old']}",
                                f"{pair['name']}=={pair['new']}", args.cache,
                                lambda p=pair: wheel_bytes(p["name"], p["new"], args.cache),
                                not args.no_import))
    result = {"suture": _provenance.git_state(REPO), "python": sys.version.split()[0],
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "config": {"corpus": str(args.corpus), "quick": args.quick,
                         "state_manifest": not args.no_import, "rounds": 1,
                         "why_one_round": "patch bytes are deterministic"},
              "pairs": rows}
    result["summary"] = summary(rows)
    _provenance.emit(result, args.json, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

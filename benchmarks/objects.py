#!/usr/bin/env python3
"""What objects built before a patch cost (issue 21): first reads, counting, the pause.

In one fresh interpreter (the one running this script), side by side, variants
interleaved, ROUNDS rounds, medians reported:

1. **Commit pause.** A class with 100 methods; v2 changes every method. Variant A: no new
   instance state. Variant B: ``__init__`` also sets ``self.limit = limit`` (a new keyword
   with a default) that every fixed method reads, so the commit also installs one
   ``LazyAttr``. Each round applies and reverts A and B in turn (separate modules) and
   records ``Result.pause_ns``; the ratio B/A is the cost of the derived attribute in the
   stop-the-world step.
2. **First read.** N objects of a patched class that lack the derived attribute (built as
   the old ``__init__`` built them); per object, the first read (descriptor: evaluate the
   ``__init__`` expression, ``dict.setdefault``) vs the second read (a plain ``__dict__``
   hit) vs the read of an attribute every object always had. Fresh objects each round.
3. **Counting live objects** (``_objects.at_risk``, what refuses SUT-E209, outside the
   pause): with 1,000,000 other gc-tracked objects and 10 objects of the class, and with
   1,000,000 objects of the class; against one ``gc.get_objects()`` for scale.

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/objects.py [--rounds 7] [--n 100000] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

from suture import runtime
from suture.runtime.engine import _objects
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

METHODS = 100


def _module(with_state: bool, fixed: bool) -> str:
    init = "    def __init__(self, name):\n        self.name = name\n"
    if fixed and with_state:
        init = ("    def __init__(self, name, limit=LIMIT):\n        self.name = name\n"
                "        self.limit = limit\n")
    body = []
    for i in range(METHODS):
        if fixed:
            read = "self.limit" if with_state else "LIMIT"
            body.append(f"    def m{i}(self, x):\n        return min(x, {read}) + {i}\n")
        else:
            body.append(f"    def m{i}(self, x):\n        return x + {i}\n")
    return "LIMIT = 3\n\n\nclass C:\n" + init + "\n" + "\n".join(body)


def _patches(root: Path) -> Dict[str, Any]:
    out = {}
    for label, state in (("plain", False), ("derived", True)):
        name = f"objbench_{label}"
        for tag, fixed in (("v1", False), ("v2", True)):
            d = root / label / tag
            d.mkdir(parents=True)
            (d / f"{name}.py").write_text(_module(state, fixed), encoding="utf-8")
        report = build_trees(materialize(str(root / label / "v1")),
                             materialize(str(root / label / "v2")))
        sys.path.insert(0, str(root / label / "v1"))
        module = importlib.import_module(name)
        out[label] = (report.data, module)
    return out


def pause(rounds: int, root: Path) -> Dict[str, Any]:
    patches = _patches(root)
    keep = {k: [m.C("kept") for _ in range(10)] for k, (_, m) in patches.items()}
    samples: Dict[str, List[int]] = {"plain": [], "derived": []}
    for _ in range(rounds):
        for label in ("plain", "derived"):
            data, _ = patches[label]
            r = runtime.apply(data)
            samples[label].append(r.pause_ns)
            runtime.revert(r.patch_id)
    assert all(not hasattr(o, "limit") or "limit" in vars(o) for o in keep["derived"])
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"methods": METHODS, "rounds": rounds,
            "pause_us_median": {k: round(v / 1000, 2) for k, v in med.items()},
            "ratio_derived_over_plain": round(med["derived"] / med["plain"], 3),
            "samples_ns": samples}


def first_read(rounds: int, n: int) -> Dict[str, Any]:
    src = textwrap.dedent('''
        LIMIT = 3
        class C:
            def __init__(self, name, limit=LIMIT):
                self.name = name
                self.limit = limit
    ''')
    ns: Dict[str, Any] = {"__name__": "objbench_first"}
    exec(compile(src, "<objbench>", "exec"), ns)  # noqa: S102 - the benchmark's own class
    cls = ns["C"]
    code = compile("limit", "<objbench limit>", "eval")
    cls.limit = _objects.LazyAttr(cls, "limit", code, ("limit",), ns)
    rows: Dict[str, List[float]] = {"first": [], "second": [], "always_there": []}
    for _ in range(rounds):
        objs = []
        for i in range(n):
            o = object.__new__(cls)
            o.name = i      # what the old __init__ set
            objs.append(o)
        for label in ("first", "second", "always_there"):
            attr = "name" if label == "always_there" else "limit"
            t0 = time.perf_counter_ns()
            for o in objs:
                getattr(o, attr)
            rows[label].append((time.perf_counter_ns() - t0) / n)
        assert all(vars(o)["limit"] == 3 for o in objs)
    med = {k: round(statistics.median(v), 1) for k, v in rows.items()}
    return {"objects": n, "rounds": rounds, "ns_per_read_median": med,
            "first_over_plain": round(med["first"] / med["always_there"], 2),
            "samples_ns": rows}


def counting(rounds: int) -> Dict[str, Any]:
    class Other:
        pass

    class Target:
        def __init__(self) -> None:
            self.name = "x"

    from suture.runtime._defs.instances import StateDelta
    delta = StateDelta("Target", "limit", "apply", "migration", why="bench")
    out: Dict[str, Any] = {}
    for label, others, targets in (("1M others, 10 targets", 1_000_000, 10),
                                   ("1M targets", 0, 1_000_000)):
        heap = [Other() for _ in range(others)] + [Target() for _ in range(targets)]
        walk, objects = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            found = _objects.at_risk([(Target, delta)])
            walk.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            gc.get_objects()
            objects.append(time.perf_counter() - t0)
        assert found and found[0]["objects"] == targets, found
        out[label] = {"at_risk_ms": round(statistics.median(walk) * 1000, 1),
                      "gc_get_objects_ms": round(statistics.median(objects) * 1000, 1),
                      "gc_objects": len(gc.get_objects())}
        del heap
        gc.collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"python": platform.python_version(), "machine": platform.machine(),
                  "pause": pause(args.rounds, Path(tmp)),
                  "first_read": first_read(args.rounds, args.n),
                  "counting": counting(max(3, args.rounds // 2))}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    show = {k: ({kk: vv for kk, vv in v.items() if kk != "samples_ns"}
                if isinstance(v, dict) else v) for k, v in result.items()}
    print(json.dumps(show, indent=1))


if __name__ == "__main__":
    main()

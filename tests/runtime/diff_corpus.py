"""The definition diff's outputs over a corpus, to show a change to it keeps every result.

Run it with two source trees (``--reference SRC``: the commit before the change) and it
prints the pairs whose ``ModulePlan`` differs, with the first difference; with ``--write``
it writes the digests of one tree's plans. The corpus: every module pair of the hard
cases (tests/cases), generated packages (tests/generated: ``gen.py`` and
``gen_objects.py`` seeds), the real releases in tests/data (wheels of the same project,
each module of one version against the next), each pair also reversed (what revert
diffs) and each module against itself.

    PYTHONPATH=src python tests/runtime/diff_corpus.py --reference /tmp/old/src --gen 300

A plan is rendered whole: the changes, the statements to evaluate (with line numbers,
and whether each is a node of the new tree: the engine compiles those very nodes), the
names, the class plans, the defaults, the instance deltas, the call hazards and both
trees. Not a test: ``test_diff_corpus.py`` runs a small part of it.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parents[2]
WHEELS = [("urllib3-1.26.17", "urllib3-1.26.18"), ("asyncssh-2.14.1", "asyncssh-2.14.2"),
          ("pypdf-6.21.2", "pypdf-6.21.3"), ("pymdown_extensions-9.11", "pymdown_extensions-10.0"),
          ("cbor2-5.7.1", "cbor2-5.8.0")]


def _wheel(prefix: str) -> Dict[str, str]:
    [path] = [p for p in (ROOT / "tests" / "data").glob(prefix + "-*.whl")]
    out = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(".py"):
                out[name] = z.read(name).decode("utf-8", "replace")
    return out


def pairs(seeds: int) -> Iterator[Tuple[str, str, str]]:
    """(id, old source, new source)."""
    base: List[Tuple[str, str, str]] = []
    for case in sorted((ROOT / "tests" / "cases").iterdir()):
        v1, v2 = case / "v1", case / "v2"
        if not v1.is_dir() or not v2.is_dir():
            continue
        for f in sorted(v2.rglob("*.py")):
            rel = f.relative_to(v2)
            old = v1 / rel
            if old.exists():
                base.append((f"case {case.name} {rel}", old.read_text(encoding="utf-8"),
                             f.read_text(encoding="utf-8")))
    for a, b in WHEELS:
        wa, wb = _wheel(a), _wheel(b)
        for name in sorted(wa.keys() & wb.keys()):
            base.append((f"wheel {a} {name}", wa[name], wb[name]))
    sys.path.insert(0, str(ROOT / "tests" / "generated"))
    import gen
    import gen_objects
    for seed in range(seeds):
        case = gen.generate(seed)
        s1, s2 = case.sources(case.v1), case.sources(case.v2)
        for rel in sorted(s1.keys() & s2.keys()):
            base.append((f"gen {seed} {rel}", s1[rel], s2[rel]))
        oc = gen_objects.generate(seed)
        base.append((f"gen_objects {seed}", oc.v1, oc.v2))
        for m, (o, n) in sorted(oc.others.items()):
            base.append((f"gen_objects {seed} {m}", o, n))
    for ident, old, new in base:
        yield ident, old, new
        if old != new:
            yield ident + " (reversed)", new, old
            yield ident + " (itself)", new, new


def render(old: str, new: str) -> str:
    from suture.runtime import _defs
    try:
        plan = _defs.diff_module(old, new, "pkg.mod")
    except SyntaxError as exc:
        return f"SyntaxError {exc}"
    except Exception as exc:   # an error is a result too: it must stay the same
        return f"{type(exc).__name__} {exc}"
    tree = plan.new_tree
    nodes = {id(n) for n in ast.walk(tree)} if tree is not None else set()

    def d(n: Any) -> str:
        return ast.dump(n, include_attributes=True) + ("" if id(n) in nodes else " <not in tree>")

    out: Dict[str, Any] = {
        "changes": [repr(c) for c in plan.changes],
        "exec_stmts": [d(s) for s in plan.exec_stmts],
        "bind": plan.bind, "delete": plan.delete,
        "classes": [[cp.qualname, [d(m) for m in cp.exec_members], cp.bind, cp.delete,
                     None if cp.new_bases is None else [d(b) for b in cp.new_bases],
                     cp.regenerate] for cp in plan.classes],
        "recompute_defaults": plan.recompute_defaults,
        "future_flags": [d(s) for s in plan.future_flags],
        "instance_state": [repr(s) for s in plan.instance_state],
        "call_hazards": [repr(h) for h in plan.call_hazards],
        "old_tree": ast.dump(plan.old_tree, include_attributes=True),
        "new_tree": ast.dump(plan.new_tree, include_attributes=True),
    }
    return json.dumps(out)


def digests(seeds: int) -> Dict[str, str]:
    return {ident: hashlib.sha256(render(old, new).encode()).hexdigest()
            for ident, old, new in pairs(seeds)}


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gen", type=int, default=100, help="generated seeds (each generator)")
    ap.add_argument("--reference", help="a src tree to compare with (in a subprocess)")
    ap.add_argument("--write", help="write this tree's digests (JSON) here")
    args = ap.parse_args(argv)
    if os.environ.get("PYTHONHASHSEED") != "0":   # the order of some changes follows set order
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  dict(os.environ, PYTHONHASHSEED="0"))
    mine = digests(args.gen)
    if args.write:
        Path(args.write).write_text(json.dumps(mine, indent=0, sort_keys=True))
    if not args.reference:
        print(f"{len(mine)} pairs")
        return 0
    env = dict(os.environ, PYTHONPATH=args.reference, PYTHONHASHSEED="0")
    theirs = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
         "import diff_corpus; print(json.dumps(diff_corpus.digests(int(sys.argv[2]))))",
         str(Path(__file__).parent), str(args.gen)],
        env=env, check=True, capture_output=True, text=True).stdout)
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    for k in differ:
        print("DIFFERS:", k)
    print(f"{len(mine)} pairs, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

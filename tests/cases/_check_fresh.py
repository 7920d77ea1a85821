"""Sanity-check the hard-case corpus without the engine: fresh runs only.

Usage: python _check_fresh.py [-p PYTHON ...] [CASE_DIR ...]

For every case directory (default: all of them, next to this file) and every
interpreter (default: this one), run `_runner.py CASE ROOT fresh` for v1 and v2
and check that:

* neither run crashes, and each has four phases;
* the four phases of one run are equal (observe() depends only on the code in
  place, not on earlier phases; this is what lets a patched run match), unless
  expect.json says ``"phased": true`` (observe uses some modules only from a later
  phase on, to load them after apply or after revert: tests/cases/82);
* the same run under another PYTHONHASHSEED gives the same phases (determinism);
* v1's phases differ from v2's (otherwise the case proves nothing);
* nothing is written to stderr (warnings would be noise in the real test);

and statically that expect.json is well formed, the top-level names of v1/ and
v2/ are unique across cases, and driver.py / hooks.py import only the standard
library and the case's own modules. Prints one line per case and interpreter;
exits 1 if any check failed. Stdlib only.
"""

import argparse
import ast
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "..", "src"))
RUNNER = os.path.join(HERE, "_runner.py")
VERDICTS = ("live", "caveat", "restart", "hook")


def case_dirs():
    return sorted(
        os.path.join(HERE, d) for d in os.listdir(HERE)
        if os.path.isfile(os.path.join(HERE, d, "expect.json")))  # as tests/test_cases.py


def top_level_names(root):
    names = set()
    for entry in os.listdir(root):
        if entry == "__pycache__":
            continue
        if entry.endswith(".py"):
            names.add(entry[:-3])
        elif os.path.isdir(os.path.join(root, entry)):
            names.add(entry)
    return names


def stdlib_names():
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:  # Python < 3.10: a good enough approximation
        names = set(sys.builtin_module_names) | {
            "asyncio", "dataclasses", "enum", "functools", "json", "os", "posixpath",
            "re", "threading", "types", "typing", "collections", "itertools", "inspect",
            "dis"}
    return set(names)


def imported_top_levels(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def python_matches(spec, version=None):
    """Does ``version`` (default: this interpreter's X.Y) satisfy expect.json's
    ``"python"``, a comma-separated list of ``>=X.Y``, ``>X.Y``, ``<=X.Y``, ``<X.Y``,
    ``==X.Y``, ``!=X.Y``? (tests/test_cases.py reads it with packaging; this is stdlib.)"""
    here = tuple(version or sys.version_info[:2])
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
           "!=": lambda a, b: a != b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
    for clause in (spec or "").split(","):
        clause = clause.strip()
        if not clause:
            continue
        op = next(o for o in (">=", "<=", "==", "!=", ">", "<") if clause.startswith(o))
        if not ops[op](here, tuple(int(x) for x in clause[len(op):].strip().split("."))):
            return False
    return True


def python_of(python):
    out = subprocess.run([python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=60).stdout.split()
    return int(out[0]), int(out[1])


def static_problems(case, seen_names):
    problems = []
    name = os.path.basename(case)
    try:
        expect = json.load(open(os.path.join(case, "expect.json"), encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return ["expect.json unreadable: %s" % exc]
    outcome = expect.get("outcome")
    if outcome not in ("applied", "refused"):
        problems.append("expect.json outcome %r" % (outcome,))
    if outcome == "refused" and not str(expect.get("code", "")).startswith("SUT-E"):
        problems.append("refused case without a SUT-E code")
    if outcome == "applied" and "code" in expect:
        problems.append("applied case with a code")
    if "refused_by" in expect and (expect["refused_by"] != "engine" or outcome != "refused"):
        problems.append("refused_by must be \"engine\" and only on a refused case")
    for qualname, verdict in expect.get("verdicts", {}).items():
        if verdict not in VERDICTS:
            problems.append("verdict %r for %s" % (verdict, qualname))
    try:
        python_matches(expect.get("python"), (3, 0))
    except (StopIteration, ValueError):
        problems.append("python %r is not a version specifier" % (expect.get("python"),))
    hooks = expect.get("hooks")
    if hooks and not os.path.isfile(os.path.join(case, hooks)):
        problems.append("hooks file %s missing" % hooks)
    if os.path.isfile(os.path.join(case, "hooks.py")) and not hooks:
        problems.append("hooks.py present but expect.json does not name it")
    own = set()
    for version in ("v1", "v2"):
        root = os.path.join(case, version)
        if not os.path.isdir(root):
            problems.append("%s/ missing" % version)
            continue
        own |= top_level_names(root)
    for top in sorted(own):
        other = seen_names.setdefault(top, name)
        if other != name:
            problems.append("top-level name %s also used by %s" % (top, other))
    allowed = stdlib_names() | own | {"suture", "__future__"}
    for script in ("driver.py", "hooks.py"):
        path = os.path.join(case, script)
        if os.path.isfile(path):
            bad = imported_top_levels(path) - allowed
            if bad:
                problems.append("%s imports %s" % (script, ", ".join(sorted(bad))))
    return problems


def run_fresh(python, case, version, hashseed):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=SRC, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED=str(hashseed))
    env.update(json.load(open(os.path.join(case, "expect.json"), encoding="utf-8"))
               .get("env", {}))
    proc = subprocess.run(
        [python, RUNNER, case, os.path.join(case, version), "fresh"],
        capture_output=True, text=True, timeout=60, env=env, cwd=case)
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = {"crash": "no report: rc=%s stdout=%r" % (proc.returncode, proc.stdout[-500:])}
    return report, proc.stderr


def check_runs(python, case):
    problems = []
    expect = json.load(open(os.path.join(case, "expect.json"), encoding="utf-8"))
    phases = {}
    for version in ("v1", "v2"):
        runs = []
        for seed in (0, 12345):
            report, stderr = run_fresh(python, case, version, seed)
            if "crash" in report:
                problems.append("%s crashed:\n%s" % (version, report["crash"]))
                break
            if stderr.strip():
                problems.append("%s wrote to stderr: %s" % (version, stderr.strip()[-300:]))
            runs.append(report["phases"])
        if len(runs) < 2:
            continue
        first = runs[0]
        if len(first) != 4:
            problems.append("%s has %d phases" % (version, len(first)))
        elif any(p != first[0] for p in first[1:]) and not expect.get("phased"):
            problems.append("%s phases differ within one run" % version)
        if runs[1] != first:
            problems.append("%s is not deterministic across hash seeds" % version)
        phases[version] = first
    if len(phases) == 2 and phases["v1"] == phases["v2"]:
        problems.append("v1 and v2 observe the same: the case proves nothing")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--python", action="append", dest="pythons")
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    pythons = args.pythons or [sys.executable]
    cases = [os.path.abspath(c) for c in args.cases] or case_dirs()
    seen = {}
    failed = 0
    for case in cases:
        name = os.path.basename(case)
        expect = json.load(open(os.path.join(case, "expect.json"), encoding="utf-8"))
        label = expect.get("outcome", "?") + (":" + expect["code"] if "code" in expect else "")
        label += " (engine)" if expect.get("refused_by") else ""
        problems = static_problems(case, seen)
        if problems:
            failed += 1
            print("FAIL %-36s static      %s" % (name, "; ".join(problems)))
        for python in pythons:
            if not python_matches(expect.get("python"), python_of(python)):
                print("skip %-36s %-11s needs Python %s" % (name, os.path.basename(python),
                                                         expect["python"]))
                continue
            started = time.monotonic()
            problems = check_runs(python, case)
            took = time.monotonic() - started
            status = "FAIL" if problems else "ok  "
            failed += bool(problems)
            print("%s %-36s %-11s %-26s %4.1fs %s" % (
                status, name, os.path.basename(python), label, took,
                "; ".join(problems) if problems else "v1 != v2, stable, deterministic"))
    print("%d problem(s)" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

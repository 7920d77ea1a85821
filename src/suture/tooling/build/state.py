"""The state manifest: which paths of each changed module a fresh import of the fixed
release leaves different from a fresh import of the baseline (issue 15).

Enters: the two source roots and the changed modules' names. Leaves: ``meta["state"]``
(docs/patch-format.md): per module either ``{"verified": true, "paths": [...],
"unstable": N}``, each path with the baseline's and the fixed release's fingerprints, or
``{"verified": false, "reason": ...}``. The engine checks, after an apply, that the live
module's state matches the fixed fingerprints on those paths (docs/engine.md).

How: each release is imported in two fresh interpreters of the builder's Python (hash
seeds 1 and 2), all four at once, each running ``_state_driver.py``, which loads
``runtime/_fingerprint.py`` by path (never Suture itself). A path whose fingerprint
differs between the two imports of one release is *unstable* (a time, a random number,
a hash order): it is left out and counted.

Importing a release runs its import-time code on the build machine (README.md, Build);
``verify_state=False`` (``suture build --no-import``) does not import anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ...runtime import _fingerprint

MAX_PATHS = 2000                 # differing paths in one module: more is not verified
DRIVER = Path(__file__).with_name("_state_driver.py")
FINGERPRINT = Path(_fingerprint.__file__)
NO_IMPORT = "not imported at build (--no-import)"

Paths = Dict[str, Tuple[List[Any], str, str, Any]]   # label -> (segments, fp, description, literal)


class _Run:
    """One fresh interpreter importing one release; its results once it has ended."""

    def __init__(self, root: Path, modules: Sequence[str], seed: int, work: Path,
                 import_path: Sequence[str], import_env: Mapping[str, str],
                 timeout: float, dependents: Sequence[str] = ()) -> None:
        self.work = work
        work.mkdir()
        self.out = work / "state.jsonl"
        self.log = work / "stderr.txt"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PYTHON") or k == "PYTHONHOME"}
        env.update(PYTHONHASHSEED=str(seed), PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
        env.update(import_env)
        args = [sys.executable, "-s", "-B", str(DRIVER), str(FINGERPRINT), str(self.out),
                repr(timeout), str(Path(root).resolve()),
                *(str(Path(p).resolve()) for p in import_path), "--", *modules,
                *(["--", *dependents] if dependents else [])]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=str(work), env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.killed = False

    def wait(self, deadline: float) -> None:
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.killed = True

    def results(self, modules: Sequence[str], timeout: float) -> Dict[str, Any]:
        """Module -> ``Paths``, or the reason (str) it has none."""
        errors: Dict[str, str] = {}
        states: Dict[str, Any] = {}
        imported: Set[str] = set()
        try:
            lines = self.out.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue   # the last line of a process killed while writing
            if "imported" in row:
                imported.add(row["imported"])
                if row["error"]:
                    errors.setdefault(row["imported"], row["error"])
            elif "module" in row and "error" in row:
                errors.setdefault(row["module"], row["error"])
            elif "module" in row:
                states[row["module"]] = {label: (segs, fp, desc, lit)
                                         for label, segs, fp, desc, lit in row["paths"]}
        culprit = next((name for name in modules if name not in imported), None)
        ended = (f"did not finish within {timeout:g}s" if self.killed
                 else "crashed the interpreter" + self._tail())
        out: Dict[str, Any] = {}
        for name in modules:
            if name in errors:
                out[name] = errors[name]
            elif name in states:
                out[name] = states[name]
            elif name == culprit:
                out[name] = f"the import {ended}"
            else:
                out[name] = f"the import of {culprit or 'its state'} {ended}"
        return out

    def _tail(self) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""
        last = text.splitlines()[-1][:300] if text else ""
        return f" (exit {self.proc.returncode}{': ' + last if last else ''})"


def manifest(old_root: Path, new_root: Path, modules: Sequence[str], *,
             import_path: Sequence[str] = (), import_env: Optional[Mapping[str, str]] = None,
             timeout: float = 60.0, dependents: Sequence[str] = (),
             skip_globals: Optional[Mapping[str, Sequence[str]]] = None) -> Dict[str, Any]:
    """``meta["state"]`` for the changed ``modules`` of two source roots, and for the
    unchanged ``dependents`` (modules that import a changed one): those are imported and
    fingerprinted after the changed modules' state is read, so they change nothing in it.
    ``skip_globals``: per module, globals left out of its state (not walked)."""
    primary = sorted(set(modules))
    later = [n for n in dict.fromkeys(dependents) if n not in primary]
    names = primary + later
    state: Dict[str, Any] = {"python": python_tag(), "modules": {}}
    if not names:
        return state
    lined = {name: _fingerprint.defined_twice(*(_source(root, name)
                                                for root in (old_root, new_root)))
             for name in names}
    with tempfile.TemporaryDirectory(prefix="suture-state-") as tmp:
        lined_file = Path(tmp) / "lined.json"
        lined_file.write_text(json.dumps(lined), encoding="utf-8")
        import_env = dict(import_env or {}, SUTURE_STATE_LINED=str(lined_file))
        if skip_globals:
            skip_file = Path(tmp) / "skip.json"
            skip_file.write_text(json.dumps({k: sorted(v) for k, v in skip_globals.items()}),
                                 encoding="utf-8")
            import_env["SUTURE_STATE_SKIP"] = str(skip_file)
        # Started baseline, fixed, baseline, fixed: a clock value that ticks over while
        # they start (int(time.time())) makes one release's two imports differ, so it is
        # unstable rather than a difference between the releases.
        fixed_root = _with_installed_metadata(Path(new_root), Path(old_root), Path(tmp) / "fixed")
        order = [(old_root, 1), (fixed_root, 1), (old_root, 2), (fixed_root, 2)]
        runs = [_Run(root, primary, seed, Path(tmp) / f"run{i}", import_path, import_env,
                     timeout, later) for i, (root, seed) in enumerate(order)]
        deadline = time.monotonic() + timeout * len(names) + 30.0
        for run in runs:
            run.wait(deadline)
        base1, fixed1, base2, fixed2 = (run.results(names, timeout) for run in runs)
    for name in names:
        entry = _compare(name, (base1[name], base2[name]), (fixed1[name], fixed2[name]))
        if entry.get("verified") and lined[name]:
            entry["lined"] = lined[name]   # the engine fingerprints these functions alike
        state["modules"][name] = entry
    return state


_METADATA = (".dist-info", ".egg-info")


def _with_installed_metadata(new_root: Path, old_root: Path, where: Path) -> Path:
    """``new_root`` as a patched process sees it: the fixed release's code, but the
    distribution metadata installed on its disk, the baseline's (``*.dist-info``): what is
    read from it at import (pkg_resources' working set, a package's own version from
    ``importlib.metadata``) stays the baseline's in every patched process, so the fixed
    import is held to it too. Made of symbolic links under ``where``; ``new_root`` itself
    when neither release has metadata."""
    old_meta = [p for p in old_root.iterdir() if p.name.endswith(_METADATA)] \
        if old_root.is_dir() else []
    new_meta = [p for p in new_root.iterdir() if p.name.endswith(_METADATA)] \
        if new_root.is_dir() else []
    if not old_meta and not new_meta:
        return new_root
    where.mkdir()
    for entry in new_root.iterdir():
        if not entry.name.endswith(_METADATA):
            (where / entry.name).symlink_to(entry.resolve())
    for entry in old_meta:
        (where / entry.name).symlink_to(entry.resolve())
    return where


def _source(root: Path, module: str) -> str:
    """The source text of ``module`` under ``root`` ("" when there is none)."""
    base = Path(root).joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return ""


def not_imported(modules: Sequence[str], reason: str = NO_IMPORT) -> Dict[str, Any]:
    """``meta["state"]`` when the releases are not imported at build."""
    return {"python": python_tag(),
            "modules": {name: {"verified": False, "reason": reason} for name in sorted(modules)}}


def _compare(name: str, baseline: Tuple[Any, Any], fixed: Tuple[Any, Any]) -> Dict[str, Any]:
    for which, (a, b) in (("baseline", baseline), ("fixed release", fixed)):
        for result in (a, b):
            if isinstance(result, str):
                return {"verified": False, "reason": f"{which}: {result}"}
    unstable = _unstable(*baseline) | _unstable(*fixed)
    unencodable: Set[str] = set()
    paths = []
    for label in sorted((set(baseline[0]) | set(fixed[0])) - unstable):
        old, new = baseline[0].get(label), fixed[0].get(label)
        old_fp, new_fp = old[1] if old else "absent", new[1] if new else "absent"
        if old_fp == new_fp:
            continue
        segments = (old or new)[0]
        if not _encodable(segments):
            unencodable.add(label)   # a key with a lone surrogate: not in a patch's UTF-8
            continue
        entry = {"path": [[kind, key] for kind, key in segments], "label": label,
                 "baseline": old_fp, "fixed": new_fp,
                 "describe": [old[2] if old else "(absent)", new[2] if new else "(absent)"]}
        if new is not None and new[3] is not None:
            entry["literal"] = new[3]   # the fixed value, for the engine to set
        paths.append(entry)
    if len(paths) > MAX_PATHS:
        return {"verified": False,
                "reason": f"state differs in {len(paths)} paths: too many to verify"}
    return {"verified": True, "paths": paths, "unstable": len(unstable) + len(unencodable)}


def _unstable(first: Paths, second: Paths) -> Set[str]:
    return {label for label in set(first) | set(second)
            if (first.get(label) or (None, None))[1] != (second.get(label) or (None, None))[1]}


def _encodable(segments: List[Any]) -> bool:
    try:
        json.dumps(segments, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


# -- the dry run: the patch applied to a fresh process of its own baseline ---------------

_DRY_RUN = r'''
import json, sys
out, suture_dir, root, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sep = sys.argv.index("--")
sys.path[:0] = [root] + sys.argv[5:sep]
sys.path.append(suture_dir)
modules, patch_file = sys.argv[sep + 1:-1], sys.argv[-1]
import importlib, os
from suture import runtime
def done(obj):
    with open(out, "w") as f:
        json.dump(obj, f)
    sys.stdout.flush()
    os._exit(0)
missing = {}
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException as exc:  # as in a process without it: pending import there
        missing[name] = f"{type(exc).__name__}: {exc}"[:300]
if len(missing) == len(modules):
    done({"outcome": "not run", "reason": "no changed module imports: " + "; ".join(
        f"{k}: {v}" for k, v in missing.items())[:500]})
try:
    with open(patch_file, "rb") as f:
        res = runtime.apply(runtime.load_patch(f.read()))
except runtime.SutureError as exc:
    done({"outcome": "refused", "code": exc.code, "reason": exc.message[:2000]})
try:
    runtime.revert(res.patch_id)
except runtime.SutureError as exc:
    done({"outcome": "revert failed", "code": exc.code, "reason": exc.message[:2000]})
done({"outcome": res.state, "modules": res.modules, "verified": res.verified,
      "not_imported": missing})
'''


def dry_run(old_root: Path, data: bytes, modules: Sequence[str], *,
            import_path: Sequence[str] = (), import_env: Optional[Mapping[str, str]] = None,
            timeout: float = 120.0) -> Dict[str, Any]:
    """Apply the patch ``data`` to a fresh interpreter that imported ``modules`` of the
    baseline, then revert it: what every process of the baseline will answer, known at
    build. ``{"outcome": "applied" | "refused" | "revert failed" | "not run", ...}``."""
    import suture

    suture_dir = str(Path(suture.__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="suture-dry-run-") as tmp:
        patch_file, out = Path(tmp) / "patch.suture", Path(tmp) / "out.json"
        patch_file.write_bytes(data)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "SUTURE_")) or k == "PYTHONHOME"}
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", **(import_env or {}))
        args = [sys.executable, "-s", "-B", "-c", _DRY_RUN, str(out), suture_dir,
                str(Path(old_root).resolve()), repr(timeout),
                *(str(Path(p).resolve()) for p in import_path), "--", *modules,
                str(patch_file)]
        try:
            proc = subprocess.run(args, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"outcome": "not run", "reason": f"did not finish within {timeout:g} s"}
        if not out.exists():
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            return {"outcome": "not run",
                    "reason": f"the process ended (exit {proc.returncode}) {tail[0][:300]}"}
        result: Dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result

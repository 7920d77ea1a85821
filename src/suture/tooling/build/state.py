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

import contextlib
import contextvars
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

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
        args = [interpreter(), *_flags(), str(DRIVER), str(FINGERPRINT), str(self.out),
                repr(timeout), str(Path(root).resolve()),
                *(str(Path(p).resolve()) for p in import_path), "--", *modules,
                *(["--", *dependents] if dependents else [])]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=str(work), env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.killed = False
        self.aliases: Optional[Dict[str, str]] = None   # results(): sys.modules names
        self.warnings: Optional[List[Any]] = None         # and warnings.filters

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
            elif "aliases" in row:
                self.aliases = row["aliases"]
            elif "warnings" in row:
                self.warnings = row["warnings"]
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
    # names several defs share -> their lines in each release: each release's imports tell
    # its functions apart by its own lines
    lined = {name: _fingerprint.lined_defs(_source(old_root, name), _source(new_root, name))
             for name in names}
    with tempfile.TemporaryDirectory(prefix="suture-state-") as tmp:
        envs = {}
        for release in ("baseline", "fixed"):
            lined_file = Path(tmp) / f"lined-{release}.json"
            lined_file.write_text(json.dumps({name: {q: lines[release] for q, lines in
                                                     lined[name].items()} for name in names}),
                                  encoding="utf-8")
            envs[release] = dict(import_env or {}, SUTURE_STATE_LINED=str(lined_file))
        if skip_globals:
            skip_file = Path(tmp) / "skip.json"
            skip_file.write_text(json.dumps({k: sorted(v) for k, v in skip_globals.items()}),
                                 encoding="utf-8")
            for env in envs.values():
                env["SUTURE_STATE_SKIP"] = str(skip_file)
        # Started baseline, fixed, baseline, fixed: a clock value that ticks over while
        # they start (int(time.time())) makes one release's two imports differ, so it is
        # unstable rather than a difference between the releases.
        fixed_root = _with_installed_metadata(Path(new_root), Path(old_root), Path(tmp) / "fixed")
        order = [(old_root, 1, "baseline"), (fixed_root, 1, "fixed"), (old_root, 2, "baseline"),
                 (fixed_root, 2, "fixed")]
        runs = [_Run(root, primary, seed, Path(tmp) / f"run{i}", import_path, envs[release],
                     timeout, later) for i, (root, seed, release) in enumerate(order)]
        deadline = time.monotonic() + timeout * len(names) + 30.0
        for run in runs:
            run.wait(deadline)
        base1, fixed1, base2, fixed2 = (run.results(names, timeout) for run in runs)
        aliases = _new_aliases(*(run.aliases for run in runs))
        if aliases:
            state["aliases"] = aliases
        filters = _filter_changes(*(run.warnings for run in runs))
        if filters:
            state["warnings"] = filters
    for name in names:
        entry = _compare(name, (base1[name], base2[name]), (fixed1[name], fixed2[name]))
        same = _same_values(_changed_assignments(_source(old_root, name), _source(new_root, name)),
                            (base1[name], base2[name], fixed1[name], fixed2[name]))
        if entry.get("verified") and same:
            entry["same"] = same   # the engine keeps these live values (prepare.py)
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


def _new_aliases(base1: Optional[Dict[str, str]], fixed1: Optional[Dict[str, str]],
                 base2: Optional[Dict[str, str]], fixed2: Optional[Dict[str, str]]
                 ) -> Dict[str, List[str]]:
    """``sys.modules`` names that a fresh import of the fixed release binds to another
    module than one of the baseline does, or that only the fixed release has, as ``{name:
    [fixed place, baseline place or ""]}`` (two imports of each release agreeing):
    requests 2.32's ``requests.packages`` aliases, setuptools 70's vendored packages
    loaded under ``pkg_resources._vendor`` rather than ``pkg_resources.extern``. The
    engine binds those whose module is loaded (engine/verify.py ``aliases``)."""
    if base1 is None or fixed1 is None or base2 is None or fixed2 is None:
        return {}
    return {key: [place, base1.get(key, "")] for key, place in sorted(fixed1.items())
            if fixed2.get(key) == place and base1.get(key) == base2.get(key)
            and base1.get(key) != place}


def _filter_changes(base1: Optional[List[Any]], fixed1: Optional[List[Any]],
                    base2: Optional[List[Any]], fixed2: Optional[List[Any]]
                    ) -> Dict[str, Any]:
    """The warning filters a fresh import of the fixed release has and one of the baseline
    lacks (``added``, each with its index in the fixed release's list) and the other way
    round (``removed``), when two imports of each release agree: requests 2.31 filtered
    charset_normalizer's "Trying to detect" warnings at import, 2.32 does not. The engine
    makes the live list match (engine/verify.py ``filters``)."""
    if base1 is None or fixed1 is None or base1 != base2 or fixed1 != fixed2 \
            or ["?"] in base1 + fixed1:
        return {}
    removed, left = [], list(fixed1)
    for entry in base1:
        if entry in left:
            left.remove(entry)
        else:
            removed.append(entry)
    added, left = [], list(base1)
    for i, entry in enumerate(fixed1):
        if entry in left:
            left.remove(entry)
        else:
            added.append([i, entry])
    return {"removed": removed, "added": added} if removed or added else {}


def _changed_assignments(old: str, new: str) -> List[str]:
    """Names that a top-level ``NAME = expr`` (or ``NAME: T = expr``) of ``new`` binds where ``old`` has no such
    statement, word for word: the statements a patch would evaluate again."""
    import ast
    try:
        before = {ast.dump(st) for st in ast.parse(old).body}
        after = ast.parse(new).body
    except (SyntaxError, ValueError):
        return []
    out = set()
    for st in after:
        target = (st.targets[0] if isinstance(st, ast.Assign) and len(st.targets) == 1
                  else st.target if isinstance(st, ast.AnnAssign) and st.value is not None
                  else None)
        if isinstance(target, ast.Name) and ast.dump(st) not in before:
            out.add(target.id)
    return sorted(out)


def _same_values(names: Sequence[str], runs: Sequence[Any]) -> Dict[str, str]:
    """``{name: fingerprint}`` for the globals among ``names`` that all four imports (both
    releases, twice each) hold with one and the same fingerprint: a changed statement that
    gives what the baseline's import gave. The engine keeps the live object rather than
    evaluating the statement again (setuptools 70's registries, made by a new
    ``_declare_state`` call and filled by calls that ran at import)."""
    if any(isinstance(r, str) for r in runs):
        return {}
    out: Dict[str, str] = {}
    for name in names:
        got = [r.get(name) for r in runs]
        if all(g is not None for g in got) and len({g[1] for g in got}) == 1:
            out[name] = got[0][1]
    return out


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


_INTERPRETER: contextvars.ContextVar[str] = contextvars.ContextVar("interpreter",
                                                                  default=sys.executable)
_TAGS: Dict[str, str] = {}


def interpreter() -> str:
    """The Python the releases are imported with (``importing_with``): the builder's own
    unless the build names another, the version the patched processes run: values the
    standard library computes at import (``typing``'s aliases, a dataclass's generated
    ``__doc__``) differ between versions, and the engine holds a process to the manifest."""
    return _INTERPRETER.get()


@contextlib.contextmanager
def importing_with(python: Optional[str]) -> Iterator[None]:
    """Import the releases with ``python`` (a path or a command on PATH) in this block."""
    if not python:
        yield
        return
    found = shutil.which(python) or python
    token = _INTERPRETER.set(found)
    try:
        try:
            python_tag()   # it must run
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            from .sources import SourceError
            raise SourceError(f"--import-python {python}: {exc}") from exc
        yield
    finally:
        _INTERPRETER.reset(token)


def _flags() -> List[str]:
    """No user site, no bytecode; with another interpreter (``--import-python``), no
    site-packages of its own either: a virtual environment of the baseline holds the
    release installed, whose metadata would claim the modules imported from the build's
    tree. Its dependencies come from ``--import-path``."""
    return ["-s", "-B"] if interpreter() == sys.executable else ["-S", "-B"]


def python_tag() -> str:
    """``X.Y`` of ``interpreter()``."""
    exe = interpreter()
    if exe == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    if exe not in _TAGS:
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or not out.stdout.strip():
            raise ValueError(f"{exe} is not a Python interpreter that runs here "
                             f"({(out.stderr.strip().splitlines() or ['no output'])[-1]})")
        _TAGS[exe] = out.stdout.strip()
    return _TAGS[exe]


# -- the dry run: the patch applied to a fresh process of its own baseline ---------------

_DRY_RUN = r'''
import json, sys
# Every parameter comes from ./args.json: the processes compared have the same argv.
with open("args.json") as f:
    args = json.load(f)
sys.path[:0] = [args["root"]] + args["import_path"] + [args["suture_dir"]]
import importlib, os
from suture import runtime
from suture.runtime import _fingerprint
def done(obj):
    with open("out.json", "w") as f:
        json.dump(obj, f)
    sys.stdout.flush()
    os._exit(0)
def snapshot():
    return _fingerprint.process_state(skip=("suture",))
def stdlib():
    import sysconfig
    lib = tuple(os.path.realpath(sysconfig.get_paths()[k]) + os.sep
                for k in ("stdlib", "platstdlib"))
    out = []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not isinstance(f, str) or (os.path.realpath(f).startswith(lib)
                                      and "site-packages" not in f):
            out.append(name)
    return out
missing = {}
for name in args["modules"]:
    try:
        importlib.import_module(name)
    except BaseException as exc:  # as in a process without it: pending import there
        missing[name] = f"{type(exc).__name__}: {exc}"[:300]
if args["mode"] == "fresh":   # a fresh import, in the same kind of process
    done({"outcome": "imported", "not_imported": missing, "process": snapshot(),
          "stdlib": stdlib()})
if len(missing) == len(args["modules"]):
    done({"outcome": "not run", "reason": "no changed module imports: " + "; ".join(
        f"{k}: {v}" for k, v in missing.items())[:500]})
pre = snapshot()
try:
    with open(args["patch"], "rb") as f:
        res = runtime.apply(runtime.load_patch(f.read()))
except runtime.SutureError as exc:
    done({"outcome": "refused", "code": exc.code, "reason": exc.message[:2000]})
except BaseException as exc:  # a defect of the engine: say where
    import traceback
    done({"outcome": "not run", "reason": "the apply raised " + "".join(
        traceback.format_exception_only(type(exc), exc)).strip()[:500] + " at "
        + " <- ".join(f"{f.name} ({os.path.basename(f.filename)}:{f.lineno})" for f in
                      reversed(traceback.extract_tb(exc.__traceback__)[-4:]))})
post = snapshot()
try:
    runtime.revert(res.patch_id)
except runtime.SutureError as exc:
    done({"outcome": "revert failed", "code": exc.code, "reason": exc.message[:2000]})
done({"outcome": res.state, "modules": res.modules, "verified": res.verified,
      "not_imported": missing, "process": {"pre": pre, "post": post, "reverted": snapshot()},
      "stdlib": stdlib()})
'''


def dry_run(old_root: Path, data: bytes, modules: Sequence[str], *,
            new_root: Optional[Path] = None, import_path: Sequence[str] = (),
            import_env: Optional[Mapping[str, str]] = None,
            timeout: float = 120.0) -> Dict[str, Any]:
    """Apply the patch ``data`` to a fresh interpreter that imported ``modules`` of the
    baseline, then revert it: what every process of the baseline will answer, known at
    build. ``{"outcome": "applied" | "refused" | "revert failed" | "not run", ...}``.

    With ``new_root``, two more fresh interpreters (hash seeds 1 and 2) import the same
    modules of the fixed release, and the *whole* patched process (every module in
    ``sys.modules``, ``_fingerprint.process_state``) is compared with them: ``differs``
    lists what the patched process holds that a fresh import of the fixed release does
    not, whatever module a statement acted on; ``revert_differs`` what the revert left
    different from the process before the apply. Paths that differ between the two fresh
    imports are unstable and not compared."""
    import suture

    suture_dir = str(Path(suture.__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="suture-dry-run-") as tmp:
        patch_file = Path(tmp) / "patch.suture"
        patch_file.write_bytes(data)
        runs = [("apply", Path(old_root), 1)]
        if new_root is not None:
            fixed_root = _with_installed_metadata(Path(new_root), Path(old_root),
                                                  Path(tmp) / "fixed-root")
            runs += [("fresh", Path(old_root), 2), ("fresh", fixed_root, 1),
                     ("fresh", fixed_root, 2)]
        procs = []
        for i, (mode, root, seed) in enumerate(runs):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            (work / "args.json").write_text(json.dumps({
                "mode": mode, "root": str(root.resolve()), "suture_dir": suture_dir,
                "import_path": [str(Path(p).resolve()) for p in import_path],
                "modules": list(modules), "patch": str(patch_file)}), encoding="utf-8")
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("PYTHON", "SUTURE_")) or k == "PYTHONHOME"}
            env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1",
                       PYTHONHASHSEED=str(seed), **(import_env or {}))
            procs.append((work, subprocess.Popen(
                [interpreter(), *_flags(), "-c", _DRY_RUN], cwd=str(work), env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        deadline = time.monotonic() + timeout
        results: List[Dict[str, Any]] = []
        for work, proc in procs:
            try:
                _, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                results.append({"outcome": "not run",
                                "reason": f"did not finish within {timeout:g} s"})
                continue
            out = work / "out.json"
            if not out.exists():
                tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
                results.append({"outcome": "not run", "reason":
                                f"the process ended (exit {proc.returncode}) {tail[0][:300]}"})
                continue
            results.append(json.loads(out.read_text(encoding="utf-8")))
    result = results[0]
    process = result.pop("process", None)
    if not isinstance(process, dict):
        return result
    stdlib = set(result.pop("stdlib", None) or ()) | {"sys.modules"}
    fresh: List[Dict[str, Any]] = [r.get("process") or {} for r in results[1:]]
    if fresh and not all(isinstance(r.get("process"), dict) for r in results[1:]):
        bad = next(r for r in results[1:] if not isinstance(r.get("process"), dict))
        result["differs_unknown"] = "a fresh import: " + str(bad.get("reason")
                                                             or bad.get("outcome"))
        fresh = []
    release: Set[Key] = set()
    unstable: Set[Key] = set()
    if fresh:
        base, fixed1, fixed2 = fresh
        # What two imports of one release differ in (times, thread ids, hash orders):
        unstable = _delta(fixed1, fixed2) | _delta(base, process["pre"])
        release = _delta(base, fixed1)
    # The standard library's state moves with Suture's own work in the patched process
    # (caches, an enum's pseudo-members, submodules it imported): there, only what the
    # releases made differ counts (warnings filters, copyreg, sys.modules aliases).
    for name in stdlib:
        mine = {lab for mod, lab in release if mod == name}
        unstable |= {(name, lab) for which in process.values() for lab in which.get(name, {})
                     if lab not in mine}
    result["revert_differs"] = _differences(process["reverted"], process["pre"], unstable)
    if fresh:
        # The patched process must equal a fresh import of the fixed release everywhere:
        # where the releases differ, and where they do not (what the apply must leave
        # alone).
        result["differs"] = _differences(process["post"], fresh[1], unstable)
    return result


# Where a process's state says where the release was imported from, or what Suture's own
# work left behind (caches of compiled regexes and sources, the threads it looked at):
# not state of the application. (module, first segment of the path)
_FOOTPRINT = frozenset({("sys", "path"), ("sys", "path_importer_cache"), ("sys", "modules"),
                        ("sys", "meta_path"),   # Suture's finder of pending imports
                        ("re", "_cache"), ("re", "_cache2"), ("linecache", "cache"),
                        ("threading", "_active"), ("threading", "_limbo")})
MAX_DIFFERS = 20

Key = Tuple[str, str]   # (module, path label)


def _first(label: str) -> str:
    return re.split(r"[.\[]", label, maxsplit=1)[0]


_PLACEHOLDER = re.compile(r"Logger\.manager\.loggerDict\[('[^']*')\]")
_PSEUDO = re.compile(r"\._value2member_map_\[[^\]]*\]$")


def _excused(found: List[Tuple[int, str, str, str, str]]
             ) -> List[Tuple[int, str, str, str, str]]:
    """``found`` without what says nothing about the application's state: logging's
    placeholders (a ``PlaceHolder`` stands for a logger name's parents, made from the names
    of the loggers there are: a vendored package's logger under its place has parents
    named after the name it was loaded under), a flag enum's pseudo-members (combinations
    cached in ``_value2member_map_`` the first time they are made, by whoever makes them),
    and then any path that differs only through paths below it that were all left out (a
    container whose differing items were)."""
    roots = {(mod, lab) for _, mod, lab, a, b in found
             if (mod == "logging" and _PLACEHOLDER.fullmatch(lab)
                 and "logging.PlaceHolder instance" in (a, b))
             or (_PSEUDO.search(lab) and "(absent)" in (a, b))}
    left = [f for f in found if not any(
        f[1] == mod and (f[2] == r or f[2].startswith((r + ".", r + "[")))
        for mod, r in roots)]
    gone = {(f[1], f[2]) for f in found} - {(f[1], f[2]) for f in left}
    if len(found) > 5000:
        return left   # many differences: no container is excused (quadratic below)
    keys = {(f[1], f[2]) for f in found}
    out = []
    for f in sorted(left, key=lambda f: -f[0]):   # deepest first: containers after items
        below = [(m, x) for m, x in keys if m == f[1] and f[2]
                 and x.startswith((f[2] + ".", f[2] + "["))]
        if below and all(k in gone for k in below):
            gone.add((f[1], f[2]))
        else:
            out.append(f)
    return out


def _delta(first: Dict[str, Any], second: Dict[str, Any]) -> Set[Key]:
    """The (module, path) pairs whose fingerprint differs between two process states; a
    module only one of them loaded differs as ``(module, "")``."""
    out: Set[Key] = set()
    for name in set(first) | set(second):
        a, b = first.get(name), second.get(name)
        if a is None or b is None:
            out.add((name, ""))
            continue
        out.update((name, lab) for lab in set(a) | set(b)
                   if (a.get(lab) or [None])[0] != (b.get(lab) or [None])[0])
    return out


def _differences(got: Dict[str, Any], want: Dict[str, Any], unstable: Set[Key]
                 ) -> Dict[str, Any]:
    """Where process state ``got`` differs from ``want`` (both ``process_state``), as
    ``{"total": N, "paths": [{"module", "path", "got", "want"}...]}`` (the first
    ``MAX_DIFFERS``, shallowest first), leaving out ``unstable`` paths, Suture's footprint,
    and modules ``got`` loaded that ``want`` did not (what the baseline imported stays
    loaded)."""
    found: List[Tuple[int, str, str, str, str]] = []
    for (name, lab) in sorted(_delta(got, want) - unstable):
        if (name, _first(lab)) in _FOOTPRINT or (name not in want):
            continue
        if name == "sys.modules" and lab not in want[name]:
            continue   # loaded by the baseline, or by Suture's own work: stays loaded
        if lab == "" or name not in got:
            found.append((0, name, "", "(not loaded)", "loaded"))
            continue
        a, b = got[name].get(lab), want[name].get(lab)
        found.append((lab.count(".") + lab.count("[") + 1, name, lab,
                      a[1] if a else "(absent)", b[1] if b else "(absent)"))
    found = _excused(found)
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    shown = [{"module": n, "path": lab, "got": a, "want": b}
             for _, n, lab, a, b in found[:MAX_DIFFERS]]
    return {"total": len(found), "paths": shown}

"""Shared helpers for the runtime and engine tests (tests/runtime/, tests/runtime/engine/).

Target code is never imported into the pytest process: every test that loads
target modules builds a real patch with the real builder, then runs a short
script in a fresh ``sys.executable`` whose path holds only ``src/`` and the
version's source root. The script prints one JSON line that the test checks.
Tests that stay in-process (``_commit``, ``load_patch``, ``shadow``, ``ast``
scans) touch no import state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import pytest

from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

SRC = Path(__file__).resolve().parents[2] / "src"

# Helpers every target script gets. Stdlib and suture.runtime only.
PRELUDE = '''\
import json
import sys

from suture import runtime
from suture.runtime import _hook, engine

ARGS = json.loads(sys.argv[1])


def load(path):
    with open(path, "rb") as f:
        return runtime.load_patch(f.read())


def refusal(fn, *args, **kwargs):
    """Call fn; return the SutureError it raised as data (None if it returned)."""
    try:
        fn(*args, **kwargs)
    except runtime.SutureError as exc:
        return {"error": type(exc).__name__, "code": exc.code, "message": str(exc),
                "details": exc.details,
                "cause": type(exc.__cause__).__name__ if exc.__cause__ else None}
    return None


def codes(*objs):
    """Every function of these modules/classes (one level of classes) by qualified name."""
    import types
    out = {}
    for owner in objs:
        for name, value in vars(owner).items():
            if isinstance(value, types.FunctionType):
                out[value.__qualname__] = value
            elif isinstance(value, type) and value.__module__ == getattr(owner, "__name__", None):
                for mname, m in vars(value).items():
                    if isinstance(m, types.FunctionType):
                        out[m.__qualname__] = m
    return {q: f.__code__ for q, f in out.items()}


def same_codes(before, objs):
    """True when every function still has exactly (``is``) the code it had."""
    now = codes(*objs)
    return now.keys() == before.keys() and all(now[q] is before[q] for q in before)


def emit(obj):
    sys.stdout.flush()
    sys.stdout.write("\\n" + json.dumps(obj, default=repr) + "\\n")
    sys.stdout.flush()

'''


class Workspace:
    """Source trees, patches and target scripts under one ``tmp_path``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._n = 0

    def _next(self, stem: str) -> Path:
        self._n += 1
        return self.root / f"{stem}_{self._n}"

    def tree(self, name: str, files: Dict[str, str]) -> Path:
        """Write ``files`` (relative path -> dedented source) under a new source root."""
        root = self.root / name
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        root.mkdir(parents=True, exist_ok=True)
        return root

    def patch(self, old: Path, new: Path, *, hooks: Optional[str] = None,
              refuse: bool = True, embed: bool = False, state: bool = False) -> Path:
        """Build old -> new with the real builder; return the patch file's path.

        ``embed``: whole sources (format 1) instead of compact modules (the default).
        ``state``: with the state manifest (the releases imported at build, as ``suture
        build`` does): the tests of the state check ask for it; the others test the
        engine's other steps, and skip the four interpreters a manifest costs per build.
        """
        hooks_path = None
        if hooks is not None:
            hooks_path = self._next("hooks").with_suffix(".py")
            hooks_path.write_text(textwrap.dedent(hooks).lstrip("\n"), encoding="utf-8")
        report = build_trees(materialize(str(old)), materialize(str(new)), hooks=hooks_path,
                             refuse=refuse, embed_sources=embed, verify_state=state)
        assert report.data is not None
        out = self._next("patch").with_suffix(".suture")
        out.write_bytes(report.data)
        return out

    def run(self, script: str, roots: Iterable[Path] = (), args: Optional[Dict[str, Any]] = None,
            *, timeout: float = 60, check_stderr: bool = True) -> Dict[str, Any]:
        """Run PRELUDE + ``script`` in a fresh interpreter; return its last JSON line."""
        scripts = self.root / "scripts"
        scripts.mkdir(exist_ok=True)
        path = self._next("script").with_suffix(".py")
        path = scripts / path.name
        path.write_text(PRELUDE + textwrap.dedent(script).lstrip("\n"), encoding="utf-8")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=os.pathsep.join([str(SRC)] + [str(r) for r in roots]))
        env.pop("PYTHONSTARTUP", None)
        proc = subprocess.run([sys.executable, str(path), json.dumps(args or {}, default=str)],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=str(scripts))
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            pytest.fail(f"target script failed (exit {proc.returncode}):\n"
                        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        if check_stderr:
            assert proc.stderr == "", f"target wrote to stderr:\n{proc.stderr}"
        return json.loads(lines[-1])  # type: ignore[no-any-return]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)

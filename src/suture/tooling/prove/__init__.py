"""``suture prove``: does a patch make the fixed release's own tests pass inside a live
process, and does its revert bring the old behaviour back?

What a patch author runs before publishing. In: a patch file, a Python whose environment
has the *vulnerable* release installed, and a test command (the fixed release's
regression tests, or any script that fails on the vulnerable code). Out: a
:class:`Proof`, one step at a time:

1. **start**: a long-running process (``target.py``) under ``suture run`` in that Python,
   which imports the modules the patch touches (and, optionally, keeps using the package
   on a thread, so objects built before the patch are exercised after it);
2. **before**: the tests, run *inside* that process, must fail (else nothing is proven);
   ``before="sibling"`` runs them in a separate process of the same environment instead
   (for tests that hang or crash on the vulnerable code, or that can run only once per
   process), ``"skip"`` does not run them;
3. **apply**: ``suture apply FILE --pid P``, the command a host would run, with this
   caller's trust policy (checked with ``suture verify`` before anything starts;
   ``--allow-unsigned`` passes through);
4. **after**: the same tests in the same process must pass;
5. **revert**: ``suture revert``, then the tests must fail again (the revert is exact),
   unless ``check_revert`` is off.

The target gets private runtime and state directories: a proof leaves nothing in this
host's store or audit log. Each step records its exit status, time and log file; the
outcome is ``proven``, ``not proven`` (with the step that broke it) or ``error`` (the
proof could not run). benchmarks/cve runs the public corpus through :func:`prove`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...runtime.patchfile import load

TARGET = Path(__file__).resolve().parent / "target.py"

Judge = Callable[[Optional[int], str], bool]


def exit_zero(rc: Optional[int], log: str) -> bool:
    """The default verdict on a test run: it passed when it exited 0."""
    return rc == 0


@dataclass
class Tests:
    """A test command: ``runner`` "pytest" (``pytest.main(args)``) or "script" (``args[0]``
    run as ``__main__`` with ``args[1:]``), run with ``cwd`` as the working directory."""
    runner: str
    args: List[str]
    cwd: Path
    env: Dict[str, str] = field(default_factory=dict)
    timeout: float = 300.0
    judge: Judge = exit_zero

    @classmethod
    def parse(cls, command: List[str], cwd: Path, timeout: float = 300.0) -> "Tests":
        """``pytest ARGS...`` or ``python -m pytest ARGS...``, else ``SCRIPT ARGS...``."""
        if not command:
            raise ValueError("no test command")
        if command[0] == "pytest":
            return cls("pytest", command[1:], cwd, timeout=timeout)
        if command[:3] in (["python", "-m", "pytest"], ["python3", "-m", "pytest"]):
            return cls("pytest", command[3:], cwd, timeout=timeout)
        if command[0] in ("python", "python3"):
            command = command[1:]
        if not command or not command[0].endswith(".py"):
            raise ValueError("the test command is `pytest ARGS...` or `SCRIPT.py ARGS...` "
                             f"(got {' '.join(command) or 'nothing'!r})")
        return cls("script", command, cwd, timeout=timeout)


@dataclass
class Proof:
    outcome: str = "error"              # proven | not proven | error
    why: str = ""
    steps: Dict[str, Any] = field(default_factory=dict)

    def step(self, name: str, **data: Any) -> None:
        self.steps[name] = data

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def patch_modules(patch: Path) -> List[str]:
    """The modules the patch touches, to import up front so the patch meets them live.
    Not ``__main__`` modules: those are scripts (importing ``gunicorn.__main__`` starts a
    server)."""
    return sorted({m.name for m in load(patch.read_bytes()).modules
                   if not m.name.endswith(".__main__") and m.name != "__main__"})


def _clean_env() -> Dict[str, str]:
    """This environment minus what would point the target at another Python's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV",
                                                             "PYTHONHOME")}


class Target:
    """The live process: ``target.py`` under ``suture run`` in ``python``."""

    def __init__(self, python: str, modules: List[str], usage: str, logs: Path,
                 config_dir: Optional[Path] = None, start_timeout: float = 120.0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="suture-prove-"))
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.ctl = str(self.dir / "ctl.sock")
        script = self.dir / "target.py"
        shutil.copyfile(TARGET, script)
        self.env = _clean_env()
        self.env.update(SUTURE_RUNTIME_DIR=str(self.dir / "run"),
                        SUTURE_STATE_DIR=str(self.dir / "state"), PYTHONDONTWRITEBYTECODE="1")
        if config_dir is not None:
            self.env["SUTURE_CONFIG_DIR"] = str(config_dir)
        # `suture run` is this Python's Suture; the target is the other Python.
        argv = [*_suture(), "run", "--", python, str(script), self.ctl, str(self.dir),
                ",".join(modules), usage]
        self.stderr = open(self.dir / "stderr.log", "w+")
        self.proc = subprocess.Popen(argv, env=self.env,
                                     cwd=str(self.dir), stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, text=True, start_new_session=True)
        end = time.monotonic() + start_timeout
        while not os.path.exists(self.ctl):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.kill()
                raise RuntimeError("the target process did not start: " + self._stderr(800))
            time.sleep(0.05)

    def _stderr(self, n: int) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()[-n:].strip()

    def ask(self, timeout: float, **req: Any) -> Dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.ctl)
            s.sendall(json.dumps(req).encode() + b"\n")
            line = s.makefile().readline()
        if not line:
            raise RuntimeError("the target process closed the control socket: "
                               + self._stderr(800))
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def run_tests(self, tests: Tests, name: str) -> Tuple[bool, Dict[str, Any]]:
        """Run ``tests`` inside the process; (passed, details). A run that outlasts
        ``tests.timeout`` (vulnerable code that hangs) counts as failed."""
        log = self.logs / f"{name}.log"
        try:
            answer = self.ask(tests.timeout, op="run", runner=tests.runner, args=tests.args,
                              cwd=str(tests.cwd), env=tests.env, log=str(log))
        except socket.timeout:
            return False, {"rc": None, "timed_out": True, "log": str(log)}
        text = log.read_text(errors="replace") if log.exists() else ""
        answer["tail"] = text.strip().splitlines()[-3:]
        answer["log"] = str(log)
        return tests.judge(answer["rc"], text), answer

    def suture(self, *args: str) -> Tuple[int, Dict[str, Any]]:
        out = subprocess.run([*_suture(), *args, "--pid", str(self.proc.pid), "--json"],
                             capture_output=True, text=True, timeout=300, env=self.env)
        try:
            doc: Dict[str, Any] = json.loads(out.stdout)
        except ValueError:
            doc = {"stderr": out.stderr[-800:]}
        return out.returncode, doc

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> Dict[str, Any]:
        """Stop the process; what it imported, what failed to import, how its own use of the
        package went, and the end of its stderr."""
        info: Dict[str, Any] = {}
        try:
            info = self.ask(10, op="info")
            self.ask(10, op="quit")
            self.proc.wait(timeout=30)
        except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired):
            pass
        self.kill()
        info["stderr"] = self._stderr(2000).splitlines()[-3:]
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return info


def _suture() -> List[str]:
    """The command line of this Suture, whether installed or run from a source checkout,
    without a PYTHONPATH that ``suture run`` would pass on to the target's Python."""
    import suture

    where = str(Path(suture.__file__).resolve().parents[1])
    return [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from suture.tooling.cli import main; main(prog_name='suture')", where]


def sibling(python: str, tests: Tests) -> Tuple[bool, str]:
    """Run the tests in a separate process of the same environment, bounded."""
    argv = [python] + (["-m", "pytest"] if tests.runner == "pytest" else []) + tests.args
    env = dict(_clean_env(), **tests.env)
    p = subprocess.Popen(argv, cwd=str(tests.cwd), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=tests.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return False, f"timed out after {tests.timeout:g} s"
    ok = tests.judge(p.returncode, out)
    errors = [line.strip() for line in out.splitlines()
              if re.match(r"\s*(E\s+)?\w*(Error|Exception)\b", line)]
    return ok, f"exit status {p.returncode}" + (f"; {errors[0][:200]}" if errors and not ok
                                                  else "")


def prove(patch: Path, python: str, tests: Optional[Tests], *, modules: Optional[List[str]] = None,
          usage: str = "", before: str = "live", check_revert: bool = True,
          allow_unsigned: bool = False, logs: Optional[Path] = None,
          config_dir: Optional[Path] = None,
          progress: Callable[[str], None] = lambda line: None) -> Proof:
    """Prove ``patch`` in a live process of ``python`` (steps in the module docstring).

    ``tests`` None only applies the patch to the live process (and reverts it): a proof
    that it applies, not that it fixes. ``logs`` keeps the test logs (default: a new
    temporary directory, named in the proof).
    """
    if before not in ("live", "sibling", "skip"):
        raise ValueError(f"before is live, sibling or skip, not {before!r}")
    proof = Proof()
    if not allow_unsigned:
        # What `suture apply` will check anyway, before a process is started for nothing.
        env = _clean_env() if config_dir is None else dict(_clean_env(),
                                                           SUTURE_CONFIG_DIR=str(config_dir))
        out = subprocess.run([*_suture(), "verify", str(patch), "--json"], capture_output=True,
                             text=True, timeout=120, env=env)
        trusted = out.returncode == 0
        proof.step("trust", trusted=trusted, detail=(out.stdout or out.stderr)[-1500:])
        if out.returncode not in (0, 2):
            try:
                message = json.loads(out.stdout)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = (out.stdout + out.stderr).strip()[-600:]
            proof.why = f"`suture verify` failed: {message}"
            return proof
        if not trusted:
            proof.outcome, proof.why = "not proven", (
                "the patch is not trusted here (`suture verify` exit "
                f"{out.returncode}): sign it with a key of this host's trust policy "
                "(`suture trust`), or pass --allow-unsigned to try it (development only)")
            return proof
    logs = logs or Path(tempfile.mkdtemp(prefix="suture-prove-logs-"))
    proof.step("logs", dir=str(logs))
    mods = patch_modules(patch) if modules is None else modules
    progress(f"starting {python} under `suture run` (imports {len(mods)} module(s))")
    started = time.monotonic()
    try:
        target = Target(python, mods, usage, logs, config_dir)
    except RuntimeError as exc:
        proof.why = str(exc)
        return proof
    proof.step("start", pid=target.proc.pid, seconds=round(time.monotonic() - started, 2))
    try:
        _prove(proof, target, patch, python, tests, before, check_revert, allow_unsigned,
               progress)
    except (OSError, RuntimeError, ValueError) as exc:
        proof.outcome, proof.why = "error", f"{type(exc).__name__}: {exc}"
    finally:
        proof.step("target", **target.close())
        used = proof.steps["target"].get("usage") or {}
        if proof.outcome == "proven" and used.get("errors"):
            # the process's own use of the package broke somewhere along the way
            proof.outcome, proof.why = "not proven", (
                f"the live process's own use of the package failed {used['errors']} times "
                f"(last: {str(used.get('last_error', ''))[:200]})")
    return proof


def _prove(proof: Proof, target: Target, patch: Path, python: str, tests: Optional[Tests],
           before: str, check_revert: bool, allow_unsigned: bool,
           progress: Callable[[str], None]) -> None:
    if tests is not None and before != "skip":
        progress(f"before: running the tests {'in a sibling process' if before == 'sibling' else 'live'}")
        if before == "sibling":
            ok, why = sibling(python, tests)
            proof.step("before", where="sibling process", passed=ok, why=why)
        else:
            ok, answer = target.run_tests(tests, "before")
            proof.step("before", where="live process", passed=ok, **answer)
        if ok:
            proof.outcome, proof.why = "not proven", (
                "the tests pass on the vulnerable code: they prove nothing about the fix")
            return
    progress("apply: suture apply")
    unsigned = ("--allow-unsigned",) if allow_unsigned else ()
    rc, applied = target.suture("apply", str(patch), *unsigned)
    row = (applied.get("processes") or [{}])[0]
    result = row.get("result") or {}
    proof.step("apply", rc=rc, outcome=row.get("outcome"), reason=row.get("reason"),
               result={k: result.get(k) for k in ("state", "modules", "pause_ns")},
               error=(applied.get("error") or {}).get("message") or applied.get("stderr"))
    if rc != 0 or row.get("outcome") != "applied":
        proof.outcome, proof.why = "not proven", "the apply did not succeed: " + str(
            row.get("reason") or (applied.get("error") or {}).get("message")
            or applied.get("stderr") or f"exit {rc}")
        return
    if tests is not None:
        progress("after: running the tests live")
        ok, answer = target.run_tests(tests, "after")
        proof.step("after", passed=ok, **answer)
        if not ok:
            proof.outcome, proof.why = "not proven", "the tests fail in the patched process"
            return
    if not check_revert:
        proof.outcome, proof.why = "proven", "passed live after apply (revert not checked)"
        return
    progress("revert: suture revert")
    rc, reverted = target.suture("revert", str(result.get("patch", "")))
    rrow = (reverted.get("processes") or [{}])[0]
    proof.step("revert", rc=rc, outcome=rrow.get("outcome"), reason=rrow.get("reason"))
    if rc != 0:
        proof.outcome, proof.why = "not proven", "the revert failed: " + str(
            rrow.get("reason") or reverted)
        return
    if tests is None:
        proof.outcome, proof.why = "proven", "applied and reverted live (no tests given)"
        return
    progress("reverted: running the tests live")
    ok, answer = target.run_tests(tests, "reverted")
    proof.step("reverted", passed=ok, **answer)
    if ok:
        proof.outcome, proof.why = "not proven", "the tests still pass after the revert"
        return
    proof.outcome, proof.why = "proven", ("failed live, passed after apply, failed after revert"
                                          if before == "live" else
                                          "passed live after apply, failed after revert")

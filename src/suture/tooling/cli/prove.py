"""CLI, proving a patch before publishing it: ``suture prove`` (logic in tooling/prove)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import click

from ...runtime.errors import SutureError
from ._common import _emit_json, _fail

_STEPS = ("start", "before", "apply", "after", "revert", "reverted")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--python", "python", required=True, metavar="PYTHON",
              help="The interpreter whose environment has the VULNERABLE release installed "
                   "(e.g. venv/bin/python).")
@click.option("--cwd", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Run the tests from this directory.")
@click.option("--module", "modules", multiple=True, metavar="NAME",
              help="Import this module in the live process before the patch (repeatable; "
                   "default: the modules the patch touches).")
@click.option("--usage", default="", metavar="CODE",
              help="Python statements the live process runs in a loop on a thread, the "
                   "whole time (objects they keep in globals live across the patch).")
@click.option("--before", type=click.Choice(["live", "sibling", "skip"]), default="live",
              show_default=True,
              help="Where the tests must first FAIL: in the live process, in a separate one "
                   "(tests that hang or crash on the vulnerable code), or not checked.")
@click.option("--no-revert-check", is_flag=True,
              help="Do not revert and re-run the tests (for test runners that run once).")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              metavar="SECONDS", help="Per test run; a run that outlasts it failed.")
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the test logs here (default: a new temporary directory).")
@click.option("--allow-unsigned", is_flag=True,
              help="DEVELOPMENT ONLY: accept a patch that no trusted key signed.")
@click.option("--json", "as_json", is_flag=True, help="Print the proof as JSON.")
def prove(file: Path, command: Sequence[str], python: str, cwd: Path, modules: Sequence[str],
          usage: str, before: str, no_revert_check: bool, timeout: float,
          logs: Optional[Path], allow_unsigned: bool, as_json: bool) -> None:
    """Prove the patch FILE in a live process before publishing it.

    Starts a process of --python under `suture run`, runs COMMAND in it (`pytest ARGS...`
    or `SCRIPT.py ARGS...`, typically the fixed release's regression test), which must
    fail; applies FILE with `suture apply`; runs COMMAND again, which must pass; reverts;
    runs it once more, which must fail again. Without COMMAND it only applies and
    reverts. Use `--` before COMMAND. The live process has its own store: nothing is
    recorded on this host. The patch must be trusted here, as for `suture apply`.

    Exit codes: 0 proven; 2 not proven (the step that broke it is named); 1 the proof
    could not run.
    """
    from ..prove import Tests, prove as do_prove

    found = shutil.which(python) if os.sep not in python else (
        str(Path(python).absolute()) if Path(python).exists() else None)
    if found is None:
        raise click.BadParameter(f"no such interpreter: {python}", param_hint="--python")
    python = found
    try:
        tests = Tests.parse(list(command), cwd.resolve(), timeout) if command else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="COMMAND") from exc
    say = (lambda line: None) if as_json else (lambda line: click.echo(f"... {line}", err=True))
    try:
        proof = do_prove(file.resolve(), python, tests, modules=list(modules) or None,
                         usage=usage, before=before, check_revert=not no_revert_check,
                         allow_unsigned=allow_unsigned, logs=logs, progress=say)
    except SutureError as exc:
        _fail(exc, as_json)
    code = {"proven": 0, "not proven": 2}.get(proof.outcome, 1)
    if as_json:
        _emit_json(proof.to_dict())
        sys.exit(code)
    for name in _STEPS:
        s = proof.steps.get(name)
        if s is None:
            continue
        if "passed" in s:
            detail = ("passed" if s["passed"] else "failed") + (
                f" ({s['where']})" if s.get("where") else "") + (
                f", {s['seconds']} s" if s.get("seconds") is not None else "")
            if s.get("timed_out"):
                detail = "timed out (counts as failed)"
        elif name == "start":
            detail = f"pid {s['pid']}, {s['seconds']} s"
        else:
            detail = str(s.get("outcome") or f"exit {s.get('rc')}") + (
                f": {s['reason']}" if s.get("reason") else "")
        click.echo(f"  {name:<9} {detail}")
    click.echo(f"{proof.outcome.upper()}: {proof.why}")
    if "logs" in proof.steps:
        click.echo(f"  logs: {proof.steps['logs']['dir']}")
    sys.exit(code)

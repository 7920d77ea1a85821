"""``suture run CMD ARGS...``: start a program with the agent loaded.

The program replaces this process (``os.execvpe``): same pid, and its signals
and exit status are its own. The agent gets in through the environment, which
child processes inherit:

* PYTHONPATH=<bootstrap dir>:<previous PYTHONPATH>, where the bootstrap dir
  (``suture.runtime._bootstrap.prepare``) holds only a ``sitecustomize`` and
  the stdlib-only runtime, never the tooling or its dependencies;
* SUTURE_AGENT=1, the opt-in that the bootstrap checks.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Mapping, NoReturn, Sequence

from ...runtime._bootstrap import prepare


def environment(base: Mapping[str, str], bootstrap: str) -> Dict[str, str]:
    env = dict(base)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = bootstrap + (os.pathsep + old if old else "")
    env["SUTURE_AGENT"] = "1"
    return env


def run(argv: Sequence[str]) -> NoReturn:
    """Exec ``argv`` with the agent's environment; return only by exiting on error."""
    env = environment(os.environ, prepare())
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), env)
    except FileNotFoundError:
        sys.stderr.write(f"suture run: {argv[0]}: command not found\n")
        sys.exit(127)
    except OSError as exc:  # like a shell: 126 for found-but-cannot-run
        sys.stderr.write(f"suture run: {argv[0]}: {exc.strerror or exc}\n")
        sys.exit(126)

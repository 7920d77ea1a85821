"""The suite does not depend on the SUTURE_* variables of the shell that runs it (issue 18).

tests/conftest.py removes them before collection and again for each test; here a few
representative test files run in a pytest of their own, with hostile values exported:
another runtime directory (where clients would look for agents), another state and config
directory (store, audit log, trust policy), a cache "directory" that is a file, agents'
timings cut short, unverified agents allowed. They must pass, and nothing may appear in
the directories those variables name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The agent and its store (runtime and state directories, timings of the start-up
# apply), the client's search for sockets, the CLI's exit codes, and pool workers that
# inherit a patch from their parent (SUTURE_INHERIT_TIMEOUT: failed with 0.05 exported).
FILES = ["tests/agent/test_store_live.py", "tests/tooling/host/test_client.py",
         "tests/tooling/cli/test_cli_exit_codes.py",
         "tests/agent/test_children.py::test_pool_workers_started_after_a_by_hand_apply_inherit_it"]


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info[:2] not in ((3, 9), (3, 11), (3, 13)),
                    reason="a minute of other tests; tests/conftest.py does the same on every "
                           "version: run on 3.9, 3.11 and 3.13 only (CI's time budget)")
def test_the_suite_passes_whatever_suture_variables_the_caller_exported(tmp_path: Path):
    run, state, config = (tmp_path / n for n in ("run", "state", "config"))
    for d in (run, state, config):
        d.mkdir(mode=0o700)
    cache = tmp_path / "cache-is-a-file"
    cache.write_text("", encoding="utf-8")
    hostile = {
        "SUTURE_RUNTIME_DIR": str(run), "SUTURE_STATE_DIR": str(state),
        "SUTURE_CONFIG_DIR": str(config), "SUTURE_CACHE_DIR": str(cache),
        "SUTURE_SURVIVE_SECONDS": "0.1", "SUTURE_INHERIT_TIMEOUT": "0.05",
        "SUTURE_AGENT": "1", "SUTURE_TEST_UNVERIFIED_AGENTS": "1",
        "SUTURE_ADVISORIES": "pypi",   # every `suture status` would ask the registry
    }
    env = dict(os.environ, **hostile)
    # Its own base directory (pytest would prune numbered ones of this run), short: the
    # agents' socket paths under it must fit AF_UNIX's 108 bytes.
    base = tempfile.mkdtemp(prefix="sut-env-")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfE",
             f"--basetemp={base}/t", *FILES],
            cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    assert "SUTURE_* variables of the caller, ignored: " + ", ".join(sorted(hostile)) \
        in out.stdout, tail
    last = out.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last and "error" not in last, tail
    for d in (run, state, config):
        assert not list(d.iterdir()), (d, list(d.iterdir()))

"""Suite-wide isolation: no test reads or writes the real Suture state or config directory,
and no test depends on the SUTURE_* variables of the shell that runs the suite."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, Iterator

import pytest
from signing import trust_suite_key

# Knobs of the suite itself, read by tests and never by Suture: they size the run
# (tests/runtime/test_fuzz.py, tests/test_generated.py...) and are kept.
SUITE_KNOBS = frozenset({
    "SUTURE_FUZZ_EXAMPLES", "SUTURE_GEN_CASES", "SUTURE_GEN_KNOWN_BUGS",
    "SUTURE_TEST_PROCESSES", "SUTURE_ANSIBLE_VENV", "SUTURE_CVE_CACHE",
})


def _callers_suture_vars() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k.startswith("SUTURE_") and k not in SUITE_KNOBS}


# The developer's shell may export SUTURE_RUNTIME_DIR, SUTURE_STATE_DIR, SUTURE_CACHE_DIR,
# SUTURE_SURVIVE_SECONDS... Each changes where Suture looks or how long it waits, in this
# process and in every target and `suture` command a test starts (they inherit our
# environment), so tests passed or failed by the caller's shell (issue 18). They are
# removed here, at import, before collection and before any fixture of any scope, and
# again for each test (``_no_callers_suture_vars``), so that what one test sets never
# reaches the next. A test that wants one sets it itself.
_REMOVED = _callers_suture_vars()
for _name in _REMOVED:
    del os.environ[_name]

# `suture status` (and metrics, vex) look up public advisories on PyPI by default: the
# suite does not, so that no test depends on the network. Tests of advisories pass their
# source (a mirror file, or the registry in the test that is about it). In os.environ for
# the targets and `suture` commands tests start; again per test (_no_callers_suture_vars).
NO_ADVISORIES = "off"
os.environ["SUTURE_ADVISORIES"] = NO_ADVISORIES


def pytest_report_header() -> str:
    if not _REMOVED:
        return "SUTURE_* variables of the caller: none"
    return "SUTURE_* variables of the caller, ignored: " + ", ".join(sorted(_REMOVED))


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir() -> Iterator[str]:
    """Patch store and audit log of the whole run live in a throwaway directory.

    Set in os.environ so that target processes the tests start inherit it too, those of
    module-scoped fixtures included (set again for each test by ``_no_callers_suture_vars``).
    Tests that need their own store set SUTURE_STATE_DIR themselves.
    """
    with tempfile.TemporaryDirectory(prefix="suture-test-state-") as d:
        path = os.path.join(d, "state")
        os.environ["SUTURE_STATE_DIR"] = path
        try:
            yield path
        finally:
            os.environ.pop("SUTURE_STATE_DIR", None)


@pytest.fixture(autouse=True, scope="session")
def _private_config_dir() -> Iterator[str]:
    """A config directory whose trust policy trusts only the suite's key (tests/signing.py).

    Set in os.environ like the state directory, so `suture` subprocesses read it too.
    """
    with tempfile.TemporaryDirectory(prefix="suture-test-config-") as d:
        trust_suite_key(Path(d))
        os.environ["SUTURE_CONFIG_DIR"] = d
        try:
            yield d
        finally:
            os.environ.pop("SUTURE_CONFIG_DIR", None)


@pytest.fixture(autouse=True)
def _no_callers_suture_vars(monkeypatch: pytest.MonkeyPatch, _private_state_dir: str,
                            _private_config_dir: str) -> None:
    """Before each test's own fixtures: no SUTURE_* variable but the suite's private state
    and config directories (and the suite's knobs). monkeypatch restores the environment
    after the test, whatever the test and its fixtures set meanwhile."""
    for name in _callers_suture_vars():
        monkeypatch.delenv(name)
    monkeypatch.setenv("SUTURE_STATE_DIR", _private_state_dir)
    monkeypatch.setenv("SUTURE_CONFIG_DIR", _private_config_dir)
    monkeypatch.setenv("SUTURE_ADVISORIES", NO_ADVISORIES)

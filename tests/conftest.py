"""Suite-wide isolation: no test reads or writes the real Suture state or config directory."""

from __future__ import annotations

import os
import tempfile

from pathlib import Path

import pytest
from signing import trust_suite_key


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir():
    """Patch store and audit log of the whole run live in a throwaway directory.

    Set in os.environ so that target processes the tests start inherit it too.
    Tests that need their own store set SUTURE_STATE_DIR themselves.
    """
    saved = os.environ.get("SUTURE_STATE_DIR")
    with tempfile.TemporaryDirectory(prefix="suture-test-state-") as d:
        os.environ["SUTURE_STATE_DIR"] = os.path.join(d, "state")
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("SUTURE_STATE_DIR", None)
            else:
                os.environ["SUTURE_STATE_DIR"] = saved


@pytest.fixture(autouse=True, scope="session")
def _private_trust_policy():
    """A config directory whose trust policy trusts only the suite's key (tests/signing.py).

    Set in os.environ like the state directory, so `suture` subprocesses read it too.
    """
    saved = os.environ.get("SUTURE_CONFIG_DIR")
    with tempfile.TemporaryDirectory(prefix="suture-test-config-") as d:
        trust_suite_key(Path(d))
        os.environ["SUTURE_CONFIG_DIR"] = d
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("SUTURE_CONFIG_DIR", None)
            else:
                os.environ["SUTURE_CONFIG_DIR"] = saved


@pytest.fixture(autouse=True, scope="session")
def _no_registry_advisories():
    """`suture status` (and metrics, vex) look up public advisories on PyPI by default:
    the suite does not, so that no test depends on the network or on the caller's
    SUTURE_ADVISORIES. Tests of advisories pass their source (a mirror file, or the
    registry in the test that is about it). Set in os.environ for `suture` subprocesses."""
    saved = {k: os.environ.get(k) for k in ("SUTURE_ADVISORIES", "SUTURE_ADVISORIES_TTL",
                                            "SUTURE_PYPI_URL")}
    os.environ["SUTURE_ADVISORIES"] = "off"
    for k in ("SUTURE_ADVISORIES_TTL", "SUTURE_PYPI_URL"):
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

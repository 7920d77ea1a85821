"""Suite-wide isolation: no test reads or writes the real Suture state directory."""

from __future__ import annotations

import os
import tempfile

import pytest


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

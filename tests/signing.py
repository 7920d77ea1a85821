"""The test suite's publisher key.

Every patch a test hands to `suture apply` or `suture install` is signed with it, as a
real publisher's would be, and the suite-wide trust policy (tests/conftest.py) trusts it.
Tests of unsigned, untrusted and tampered patches make their own keys and files.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suture.runtime.patchfile import dump, load
from suture.tooling import trust
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

KEY = Ed25519PrivateKey.generate()
NAME = "suture-tests"


def signed(data: bytes) -> bytes:
    """``data`` (a patch file) signed with the suite's key."""
    return trust.sign(data, KEY)


def trust_suite_key(config_dir: Path) -> None:
    """Write a trust policy in ``config_dir`` that trusts the suite's key for any patch."""
    trust.add_key(trust.public_key_line(KEY.public_key()), NAME,
                  path=str(config_dir / trust.POLICY_FILE))


def make_patch(tmp: Path, name: str = "tiny", body: str = "2", dist: str = "") -> bytes:
    """A tiny unsigned patch (``name``.calc.value() returns 1, then ``body``), built in ``tmp``."""
    for tag, value in (("v1", "1"), ("v2", body)):
        pkg = tmp / f"{name}-{body}-{tag}" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "calc.py").write_text(f"def value():\n    return {value}\n", encoding="utf-8")
    # no state manifest: these patches test signatures, feeds and trust, not the engine
    report = build_trees(materialize(str(tmp / f"{name}-{body}-v1")),
                         materialize(str(tmp / f"{name}-{body}-v2")), verify_state=False)
    assert report.data is not None
    if not dist:
        return report.data
    # As if built from two releases of the distribution ``dist`` (no wheel needed here).
    return dump(replace(load(report.data), target={"kind": "distribution", "name": dist,
                                                   "from_version": "1.1",
                                                   "to_version": "1.2"}))


def policy_with(tmp: Path, *entries: Dict[str, Any]) -> trust.Policy:
    """A trust policy in ``tmp``/cfg trusting each entry's ``key`` (``name``, ``distributions``)."""
    path = tmp / "cfg" / trust.POLICY_FILE
    for e in entries:
        trust.add_key(trust.public_key_line(e["key"].public_key()), e.get("name", ""),
                      e.get("distributions", ()), path=str(path))
    return trust.load_policy(str(path))

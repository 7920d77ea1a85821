"""The test suite's publisher key.

Every patch a test hands to `suture apply` or `suture install` is signed with it, as a
real publisher's would be, and the suite-wide trust policy (tests/conftest.py) trusts it.
Tests of unsigned, untrusted and tampered patches make their own keys and files.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suture.tooling import trust

KEY = Ed25519PrivateKey.generate()
NAME = "suture-tests"


def signed(data: bytes) -> bytes:
    """``data`` (a patch file) signed with the suite's key."""
    return trust.sign(data, KEY)


def trust_suite_key(config_dir: Path) -> None:
    """Write a trust policy in ``config_dir`` that trusts the suite's key for any patch."""
    trust.add_key(trust.public_key_line(KEY.public_key()), NAME,
                  path=str(config_dir / trust.POLICY_FILE))

"""The CVE proof harness: see harness.py and docs/real-world.md."""

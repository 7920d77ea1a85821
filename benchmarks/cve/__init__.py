"""The CVE proof harness: see harness.py and docs/realworld.md."""

"""Zero-downtime benchmark: hotpatch vs graceful reload vs restart (see bench.py)."""

"""suture.tooling.fleet.metrics and the Grafana dashboard shipped with it. The metrics of live
processes are tested in tests/tooling/cli/test_cli_live.py and test_daemon.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from suture.tooling.fleet import metrics


def test_the_grafana_dashboard_queries_only_metrics_suture_writes():
    # Every metric a panel uses must be one `suture metrics` renders: names cannot drift.
    root = Path(__file__).resolve().parents[3]
    dash = json.loads((root / "integrations" / "grafana" / "suture-dashboard.json").read_text())
    text = metrics.render({"processes": [], "patches": []}, [], [])
    written = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"\bsuture_\w+", t["expr"])}
    base = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert base and base <= written, base - written
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])

"""integrations/kubernetes/suture-daemonset.yaml, validated offline: every object against
the Kubernetes API models of the official Python client (a field the model does not know
is an error, as the API server would reject it), plus what Suture needs of it.

No cluster runs here. The client is installed into a venv of its own (uv, from PyPI) on
first use; like the CVE harness test this runs on the 3.11 pass of the suite only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from suture.tooling.fleet import daemon

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "integrations" / "kubernetes" / "suture-daemonset.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                       reason="one run per CI is enough: the client runs in its own venv"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="the client is installed with uv"),
]

# Runs in the client's venv: each document through the model of its kind and back.
VALIDATE = r'''
import json, sys, yaml
from kubernetes.client import ApiClient
models = {("v1", "Namespace"): "V1Namespace", ("v1", "ConfigMap"): "V1ConfigMap",
          ("apps/v1", "DaemonSet"): "V1DaemonSet"}
api = ApiClient()
out = []
for doc in yaml.safe_load_all(open(sys.argv[1])):
    model = models[(doc["apiVersion"], doc["kind"])]
    obj = api._ApiClient__deserialize(doc, model)     # raises on a missing required field
    back = api.sanitize_for_serialization(obj)
    out.append({"kind": doc["kind"], "doc": doc, "back": back})
print(json.dumps(out))
'''


@pytest.fixture(scope="session")
def k8s_python() -> Path:
    venv = Path(os.environ.get("SUTURE_K8S_VENV",
                               Path.home() / ".cache" / "suture-tests" / "k8s-venv"))
    python = venv / "bin" / "python"
    if not (venv / "ok").exists():
        subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)],
                       check=True)
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(python),
                        "kubernetes>=29", "pyyaml"], check=True)
        (venv / "ok").write_text("")
    return python


def _dropped(doc: Any, back: Any, where: str = "") -> List[str]:
    """Paths present in ``doc`` but lost on the way through the model: unknown fields."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items()
                for p in ([f"{where}.{k}"] if not isinstance(back, dict) or k not in back
                          else _dropped(v, back[k], f"{where}.{k}"))]
    if isinstance(doc, list) and isinstance(back, list):
        return [p for i, (a, b) in enumerate(zip(doc, back)) for p in _dropped(a, b, f"{where}[{i}]")]
    return []


@pytest.fixture(scope="module")
def objects(k8s_python: Path) -> Dict[str, Dict[str, Any]]:
    run = subprocess.run([str(k8s_python), "-c", VALIDATE, str(MANIFEST)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)
    for row in rows:
        assert _dropped(row["doc"], row["back"]) == [], row["kind"]
    return {row["kind"]: row["doc"] for row in rows}


def test_every_object_matches_the_api_models(objects: Dict[str, Dict[str, Any]]) -> None:
    assert sorted(objects) == ["ConfigMap", "DaemonSet", "Namespace"]


def test_the_daemonset_has_what_suture_needs_on_a_node(objects: Dict[str, Dict[str, Any]]):
    pod = objects["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    (c,) = pod["containers"]
    assert c["command"] == ["suture", "daemon"]
    caps = c["securityContext"]["capabilities"]
    assert "SYS_PTRACE" in caps["add"] and {"SETUID", "SETGID"} <= set(caps["add"])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    # plain files: Suture refuses a symlinked trust policy or configuration
    assert mounts["/etc/suture/trust.toml"]["subPath"] == "trust.toml"
    assert mounts["/etc/suture/daemon.toml"]["subPath"] == "daemon.toml"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SUTURE_CONFIG_DIR"] == "/etc/suture"
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert mounts["/var/lib/suture"]["name"] == "state" and state["hostPath"]["path"]


def test_the_shipped_daemon_configuration_loads(objects: Dict[str, Dict[str, Any]],
                                               tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text(objects["ConfigMap"]["data"]["daemon.toml"])
    path.chmod(0o644)
    cfg = daemon.load_config(str(path))
    assert (cfg.ring, cfg.interval, cfg.delays["broad"]) == ("broad", 300.0, 86400.0)

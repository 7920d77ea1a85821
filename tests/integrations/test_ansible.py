"""The Ansible collection (integrations/ansible) run by a real `ansible-playbook` from
ansible-core, against this machine over the local connection, with real target
processes: check mode changes nothing, `changed` is true exactly when something was
downloaded, installed or applied.

ansible-core is installed into a venv of its own (uv, from PyPI) on first use; like the
CVE harness test this runs on the 3.11 pass of the suite only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import livecli as live
from signing import KEY
from suture.runtime import store
from suture.tooling.fleet import feed

from livecli import Target, patch_id

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "integrations" / "ansible"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                       reason="one run per CI is enough: ansible-core runs in its own venv"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="ansible-core is installed with uv"),
]

dists, rundir, state, start_target = live.dists, live.rundir, live.state, live.start_target


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = Path(os.environ.get("SUTURE_ANSIBLE_VENV",
                               Path.home() / ".cache" / "suture-tests" / "ansible-venv"))
    playbook = venv / "bin" / "ansible-playbook"
    if not playbook.exists():
        subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)],
                       check=True)
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                        "ansible-core>=2.15,<2.19"], check=True)
    return venv


def play(ansible: Path, tmp_path: Path, rundir: str, tasks: List[Dict[str, Any]],
         check: bool = False) -> List[Dict[str, Any]]:
    """Run ``tasks`` on localhost; return each task's result (registered as r0, r1...)."""
    wrapper = tmp_path / "suture-cmd"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m suture \"$@\"\n")
    wrapper.chmod(0o755)
    env_for_suture = {"PYTHONPATH": str(ROOT / "src"), "SUTURE_RUNTIME_DIR": rundir,
                      "SUTURE_STATE_DIR": os.environ["SUTURE_STATE_DIR"],
                      "SUTURE_CONFIG_DIR": os.environ["SUTURE_CONFIG_DIR"]}
    steps = []
    for i, task in enumerate(tasks):
        args = dict(task, executable=str(wrapper), environment=env_for_suture)
        steps.append({"name": f"step {i}", "suture.fleet.suture": args, "register": f"r{i}"})
    out = tmp_path / "results.json"
    steps.append({"name": "save", "copy": {
        "dest": str(out), "content": "{{ [" + ", ".join(f"r{i}" for i in range(len(tasks)))
        + "] | to_json }}"}, "check_mode": False})
    book = tmp_path / "play.yml"
    book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                 "tasks": steps}]))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local "
                         f"ansible_python_interpreter={ansible / 'bin' / 'python'}\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    run = subprocess.run([str(ansible / "bin" / "ansible-playbook"), "-i", str(inventory),
                          str(book)] + (["--check"] if check else []),
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_the_playbook_syncs_installs_and_patches_and_reports_changes_honestly(
        ansible: Path, dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    target = start_target(dists["1.0"])
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, feed="acme")
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f"feeds = [{json.dumps(str(src))}]\n")
    tasks = [{"action": "sync", "feed": str(src)},
             {"action": "daemon_once", "config": str(cfg)}, {"action": "status"}]
    # Check mode: would change, changes nothing.
    sync, daemon, status = play(ansible, tmp_path, rundir, tasks, check=True)
    assert sync["changed"] and sync["new"] == [patch_id(dists["fix"])]
    assert not feed.mirror_dir(str(src)).exists()
    assert not status["changed"]
    assert store.installed() == [] and target.observed() == "old"

    sync, daemon, status = play(ansible, tmp_path, rundir, tasks)
    assert sync["changed"] and daemon["changed"]
    target.wait_for("new")
    assert [r["id"] for r in store.installed()] == [patch_id(dists["fix"])]
    assert status["exposed"] == [] and not status["changed"]

    # Nothing left to do: nothing changes.
    sync, daemon, status = play(ansible, tmp_path, rundir, tasks)
    assert not sync["changed"] and not daemon["changed"] and not status["changed"]


def test_apply_in_check_mode_names_the_exposed_processes_then_applies(
        ansible: Path, dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    target = start_target(dists["1.0"])
    assert live.cli(rundir, "install", str(dists["fix"])).returncode == 0
    task = [{"action": "apply", "patch": str(dists["fix"])}]
    (res,) = play(ansible, tmp_path, rundir, task, check=True)
    assert res["changed"] and [x["pid"] for x in res["exposed"]] == [target.pid]
    assert target.observed() == "old"
    (res,) = play(ansible, tmp_path, rundir, task)
    assert res["changed"]
    target.wait_for("new")
    (res,) = play(ansible, tmp_path, rundir, task)
    assert not res["changed"]

#!/usr/bin/python
# Copyright: Suture developers. Apache-2.0.
"""Ansible module wrapping the `suture` command on a host (docs/fleet.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: suture
short_description: Keep a host's Python processes hotpatched with Suture
description:
  - Runs the C(suture) command on the host and reports its JSON.
  - C(changed) is true only when a patch was downloaded, installed or applied.
  - Supports check mode, in which nothing is downloaded, installed or applied.
options:
  action:
    description: What to do.
    choices: [sync, apply, status, daemon_once]
    required: true
    type: str
  feed:
    description: Feed URL or directory (action C(sync)).
    type: str
  patch:
    description: Path of a signed patch file on the host (action C(apply)).
    type: path
  pids:
    description: Processes to patch (action C(apply)); default every process that has
      the patch's distribution.
    type: list
    elements: int
  config:
    description: daemon.toml to use (action C(daemon_once)); default the host's.
    type: path
  executable:
    description: The suture command.
    type: str
    default: suture
  environment:
    description: Extra environment for the command (for example SUTURE_STATE_DIR).
    type: dict
    default: {}
author: Suture developers
"""

EXAMPLES = r"""
- suture.fleet.suture: {action: sync, feed: "https://patches.example/feed"}
- suture.fleet.suture: {action: daemon_once}
- suture.fleet.suture: {action: apply, patch: /srv/patches/fix.suture}
- suture.fleet.suture: {action: status}
  register: s
"""

RETURN = r"""
report:
  description: The JSON the suture command printed.
  returned: always
  type: dict
exposed:
  description: Processes still exposed, as C(suture status --json) lists them.
  returned: action status, and apply/daemon_once in check mode
  type: list
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule


def _run(module, *args):
    env = dict(os.environ, **{k: str(v) for k, v in module.params["environment"].items()})
    cmd = [module.params["executable"]] + list(args) + ["--json"]
    rc, out, err = module.run_command(cmd, environ_update=env)
    try:
        doc = json.loads(out) if out.strip() else {}
    except ValueError:
        doc = {}
    return rc, doc, err, cmd


def _fail(module, cmd, rc, doc, err):
    error = doc.get("error") if isinstance(doc, dict) else None
    msg = (error or {}).get("message") or err.strip() or "suture exited %d" % rc
    module.fail_json(msg=msg, rc=rc, cmd=cmd, report=doc)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True,
                        choices=["sync", "apply", "status", "daemon_once"]),
            feed=dict(type="str"),
            patch=dict(type="path"),
            pids=dict(type="list", elements="int", default=[]),
            config=dict(type="path"),
            executable=dict(type="str", default="suture"),
            environment=dict(type="dict", default={}),
        ),
        required_if=[("action", "sync", ["feed"]), ("action", "apply", ["patch"])],
        supports_check_mode=True,
    )
    p, check = module.params, module.check_mode
    action = p["action"]

    if action == "status":
        rc, doc, err, cmd = _run(module, "status")
        if rc not in (0, 1, 2) or "processes" not in doc:
            _fail(module, cmd, rc, doc, err)
        module.exit_json(changed=False, report=doc, exposed=doc.get("exposed", []))

    if action == "sync":
        args = ["sync", p["feed"]] + (["--check"] if check else [])
        rc, doc, err, cmd = _run(module, *args)
        if rc != 0:
            _fail(module, cmd, rc, doc, err)
        outcome = "missing" if check else "new"
        new = [r["id"] for r in doc.get("patches", []) if r.get("outcome") == outcome]
        module.exit_json(changed=bool(new), report=doc, new=new)

    if action == "daemon_once":
        args = (["daemon", "--once"] + (["--check"] if check else [])
                + (["--config", p["config"]] if p["config"] else []))
        rc, doc, err, cmd = _run(module, *args)
        if rc != 0:
            _fail(module, cmd, rc, doc, err)
        if check:
            changed = bool(doc.get("would_apply")) or any(
                x.get("reason") == "would install" for x in doc.get("patches", []))
        else:
            applied = [r for a in doc.get("applied", []) for r in a.get("processes", [])
                       if r.get("outcome") == "applied"]
            installed = any(x.get("installed_now") for x in doc.get("patches", []))
            changed = bool(applied) or installed
        module.exit_json(changed=changed, report=doc)

    # apply
    rc, info, err, cmd = _run(module, "inspect", p["patch"])
    if rc != 0:
        _fail(module, cmd, rc, info, err)
    if check:
        rc, doc, err, cmd = _run(module, "status")
        if rc not in (0, 1, 2) or "processes" not in doc:
            _fail(module, cmd, rc, doc, err)
        exposed = [x for x in doc.get("exposed", []) if x.get("patch") == info["id"]
                   and (not p["pids"] or x.get("pid") in p["pids"])]
        module.exit_json(changed=bool(exposed), report=doc, exposed=exposed)
    target = ["--pid=%d" % pid for pid in p["pids"]] or ["--all"]
    rc, doc, err, cmd = _run(module, "apply", p["patch"], *target)
    if rc not in (0, 2) or "processes" not in doc:
        _fail(module, cmd, rc, doc, err)
    rows = doc["processes"]
    changed = any(r.get("outcome") == "applied" for r in rows)
    if rc == 2:
        module.fail_json(msg="some processes refused the patch", changed=changed, report=doc)
    module.exit_json(changed=changed, report=doc)


if __name__ == "__main__":
    main()

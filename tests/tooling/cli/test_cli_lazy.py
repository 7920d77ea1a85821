"""The `suture` group imports a command's module only when that command runs (issue 19).

Its table of commands (``_COMMANDS`` in tooling/cli/__init__.py) must name every command of
every group module, by the name click gives it; `--help` must still list them all; and a
command's run must not load what other commands need (the builder for `suture apply`), nor
the costly parts of ``cryptography`` and ``packaging`` for a signature check. What is loaded
is read from ``sys.modules`` of a fresh interpreter: no timing here (benchmarks/latency.py
measures the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Set

import click

import suture.tooling.cli as cli

SRC = Path(__file__).resolve().parents[3] / "src"
GROUPS = ("build", "trust", "host", "store", "fleet", "prove", "demo")


def _registered(module: object) -> Set[str]:
    """The attributes of a group module that are top-level commands: click commands that
    are not a subcommand of one of its groups (``trust add`` is registered on ``trust``)."""
    found = {name: obj for name, obj in vars(module).items() if isinstance(obj, click.Command)}
    inner = {id(sub) for obj in found.values() if isinstance(obj, click.Group)
             for sub in obj.commands.values()}
    return {name for name, obj in found.items() if id(obj) not in inner}


def test_the_table_names_every_command_of_every_group_as_click_does() -> None:
    table = cli._COMMANDS
    assert {group for group, _ in table.values()} == set(GROUPS)
    for group in GROUPS:
        module = cli._group(group)
        assert _registered(module) == {attr for g, attr in table.values() if g == group}, group
    ctx = click.Context(cli.main)
    for name, (group, attr) in table.items():
        command = cli.main.get_command(ctx, name)
        assert command is getattr(cli._group(group), attr) and command.name == name
    assert cli.main.get_command(ctx, "no-such-command") is None
    assert cli.main.list_commands(ctx) == sorted(table)


def loaded_after(args: List[str], code: str = "") -> Set[str]:
    """The modules loaded in a fresh interpreter after the `suture` command ``args`` ran
    (``code``: other Python to run instead)."""
    run = code or ("from suture.tooling.cli import main\n"
                   f"try:\n    main({args!r}, prog_name='suture')\nexcept SystemExit:\n    pass\n")
    probe = run + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_help_lists_every_command() -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-m", "suture", "--help"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.split("Commands:\n", 1)[1].splitlines()
              if line.strip()]
    assert listed == sorted(cli._COMMANDS)


def test_version_loads_no_command_group() -> None:
    loaded = loaded_after(["--version"])
    assert not {m for m in loaded if m.startswith("suture.tooling.")} - {
        "suture.tooling", "suture.tooling.cli", "suture.tooling.cli._common"}
    assert "suture.runtime.patchfile" not in loaded


def test_apply_loads_its_group_only() -> None:
    loaded = loaded_after(["apply", "--help"])
    assert "suture.tooling.cli.host" in loaded
    assert not {"suture.tooling.cli.build", "suture.tooling.build", "suture.tooling.cli.fleet",
                "suture.tooling.cli.store", "suture.tooling.cli.trust"} & loaded


def test_a_signature_check_loads_only_cryptographys_ed25519(tmp_path: Path) -> None:
    # What `suture apply` runs before it contacts a process (tooling/trust.require), with
    # a trusted key and a patch signed by it; then what an apply imports besides.
    code = f"""
from pathlib import Path
from suture.tooling import trust
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize
root = Path({str(tmp_path)!r})
for tag, body in (("v1", "1"), ("v2", "2")):
    (root / tag / "tiny").mkdir(parents=True)
    (root / tag / "tiny" / "__init__.py").write_text("")
    (root / tag / "tiny" / "calc.py").write_text(f"def value():\\n    return {{body}}\\n")
report = build_trees(materialize(str(root / "v1")), materialize(str(root / "v2")),
                     verify_state=False)
key, pub, _ = trust.keygen(root / "k")
policy = str(root / "trust.toml")
trust.add_key(pub.read_text(), path=policy)
(root / "fix.suture").write_bytes(trust.sign(report.data, trust.load_private_key(key)))
"""
    loaded_after([], code)
    check = f"""
from pathlib import Path
from suture.tooling import trust
from suture.tooling.fleet import fanout, rollout
root = Path({str(tmp_path)!r})
patch, record = trust.require((root / "fix.suture").read_bytes(),
                              policy=trust.load_policy(str(root / "trust.toml")))
assert record["signers"], record
"""
    loaded = loaded_after([], check)
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in loaded
    assert not {"cryptography.hazmat.primitives.serialization", "urllib.request",
                "subprocess"} & loaded
    assert not {m for m in loaded if m.startswith("packaging")}

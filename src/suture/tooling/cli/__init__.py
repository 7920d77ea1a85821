"""Command line: argument parsing and rendering only; the work happens elsewhere.

One module per command group, each registered on the ``suture`` group here:

* ``build``: build, inspect, keygen, sign;
* ``trust``: verify, trust;
* ``host``: ps, attach, apply, revert, status, run;
* ``store``: install, list, remove, audit, bad;
* ``prove``: prove;
* ``fleet``: feed, sync, daemon, metrics, vex;
* ``demo``: demo.

What they share (the group class, exit codes, JSON output, the error exit) is in
``_common``. Imports run one way: this module imports the command groups, they import
``_common``, and none imports another group or this module (tests/tooling/test_layers.py).

A command's group module is imported when the command runs, not before (issue 19): `suture
apply` imports ``host`` only, not the builder that ``build`` needs (tens of ms of imports,
on the path from "fix available" to "fixed"). `suture --help` imports every group, to
show each command's help line. So nothing here but the table below names a command, and
every module of the package imports only what its command needs, in the function that
needs it when that is costly (docs/performance.md).
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict, List, Optional, Tuple

import click

from ... import __version__
from ._common import _Suture

# Command name -> (its group module, the click command's name in it). Checked against the
# modules' commands by tests/tooling/cli/test_cli_lazy.py.
_COMMANDS: Dict[str, Tuple[str, str]] = {
    "build": ("build", "build"), "inspect": ("build", "inspect"),
    "keygen": ("build", "keygen"), "sign": ("build", "sign_"),
    "verify": ("trust", "verify_"), "trust": ("trust", "trust"),
    "ps": ("host", "ps"), "attach": ("host", "attach"), "apply": ("host", "apply"),
    "revert": ("host", "revert"), "status": ("host", "status"), "run": ("host", "run"),
    "install": ("store", "install"), "list": ("store", "list_"), "remove": ("store", "remove"),
    "audit": ("store", "audit"), "bad": ("store", "bad"),
    "daemon": ("fleet", "daemon"), "feed": ("fleet", "feed"), "metrics": ("fleet", "metrics"),
    "sync": ("fleet", "sync"), "vex": ("fleet", "vex"),
    "prove": ("prove", "prove"), "demo": ("demo", "demo"),
}


def _group(name: str) -> ModuleType:
    """The command-group module ``name``, imported on first use. One import statement per
    group, not importlib with a computed name: tests/tooling/test_layers.py reads the
    import statements, and must see that this package (and only it) imports each group."""
    if name == "build":
        from . import build
        return build
    if name == "trust":
        from . import trust
        return trust
    if name == "host":
        from . import host
        return host
    if name == "store":
        from . import store
        return store
    if name == "fleet":
        from . import fleet
        return fleet
    if name == "prove":
        from . import prove
        return prove
    if name == "demo":
        from . import demo
        return demo
    raise LookupError(name)


class _Lazy(_Suture):
    """The `suture` group, whose commands are found in ``_COMMANDS`` and imported when asked
    for (click asks for one command to run it, for all of them to list them in --help)."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        where = _COMMANDS.get(cmd_name)
        if where is None:
            return None
        command: click.Command = getattr(_group(where[0]), where[1])
        return command


@click.group(cls=_Lazy, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="suture")
def main() -> None:
    """Suture: hotpatch running Python processes, with no restart.

    Exit codes of every command: docs/errors.md. A usage error exits 64.
    """

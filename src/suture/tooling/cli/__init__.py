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
"""

from __future__ import annotations

import click

from ... import __version__
from . import build, demo, fleet, host, prove, store, trust
from ._common import _Suture

@click.group(cls=_Suture, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="suture")
def main() -> None:
    """Suture: hotpatch running Python processes, with no restart.

    Exit codes of every command: docs/errors.md. A usage error exits 64.
    """


for _command in (build.build, build.inspect, build.keygen, build.sign_,
                 trust.verify_, trust.trust,
                 host.ps, host.attach, host.apply, host.revert, host.status, host.run,
                 store.install, store.list_, store.remove, store.audit, store.bad,
                 fleet.daemon, fleet.feed, fleet.metrics, fleet.sync, fleet.vex,
                 prove.prove, demo.demo):
    main.add_command(_command)

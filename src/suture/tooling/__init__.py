"""Suture's host side: everything that runs outside the patched processes.

One package per concern (docs/architecture.md, "The tooling"):

* ``build``: sources of two versions, the diff report, patch writing;
* ``trust``: keys, signatures, the host's trust policy;
* ``host``: one process at a time (agent client, attach, run);
* ``fleet``: many processes and hosts (fan-out, rollout, feeds, daemon, metrics, VEX);
* ``demo``: the ``suture demo`` story and its example app;
* ``cli``: argument parsing and rendering only, one module per command group.

Imports run one way: cli -> demo -> fleet -> host/trust/build -> suture.runtime
(tests/tooling/test_layers.py). The runtime never imports this package.
"""

"""Suture's host side: everything that runs outside the patched processes.

One package per concern (docs/architecture.md, "The tooling's layers"):

* ``build``: sources of two versions, the diff report, patch writing;
* ``trust``: keys, signatures, the host's trust policy;
* ``host``: one process at a time (agent client, attach, run);
* ``prove``: a patch proven in a live process by the fixed release's tests;
* ``fleet``: many processes and hosts (fan-out, rollout, feeds, daemon, metrics, VEX);
* ``demo``: the ``suture demo`` story and its example app;
* ``cli``: argument parsing and rendering only, one module per command group.

Imports run one way: cli -> demo, fleet -> build, host, prove, trust -> suture.runtime (demo
uses build, host and trust; fleet uses host and trust; tests/tooling/test_layers.py
holds the table). The runtime never imports this package.
"""

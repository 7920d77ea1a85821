"""Many processes and many hosts: one operation fanned out to a host's processes
(``fanout``: apply, revert, status, ps), the watched rollout (``rollout``), patch
feeds (``feed``), the host daemon (``daemon``), Prometheus metrics (``metrics``) and
VEX documents, OpenVEX and CycloneDX (``vex``).

May import: ``suture.runtime``, ``tooling/host`` and ``tooling/trust``; never
``tooling/cli``. ``rollout`` lives here, not in ``host``, because it drives
``fanout.apply``/``fanout.revert``: in ``host`` it would close a host <-> fleet circle.
"""

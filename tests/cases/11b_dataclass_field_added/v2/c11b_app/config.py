"""Upstream configuration."""

from dataclasses import dataclass


@dataclass
class Upstream:
    host: str
    port: int = 443
    verify_tls: bool = True


def connect_args(up):
    return {"host": up.host, "port": up.port, "verify": up.verify_tls}

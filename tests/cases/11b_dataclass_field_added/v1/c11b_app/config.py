"""Upstream configuration."""

from dataclasses import dataclass


@dataclass
class Upstream:
    host: str
    port: int = 443


def connect_args(up):
    return {"host": up.host, "port": up.port, "verify": False}

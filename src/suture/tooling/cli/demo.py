"""CLI: ``suture demo`` (the story is in tooling/demo)."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--fast", is_flag=True, help="No pauses between steps.")
def demo(fast: bool) -> None:
    """Live-patch a vulnerable example app, step by step, then revert."""
    from ..demo import run

    sys.exit(run(fast=fast))

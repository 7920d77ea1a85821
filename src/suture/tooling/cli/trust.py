"""CLI, trust: ``suture verify`` and ``suture trust [add|set|remove]`` (logic in
tooling/trust)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import click

from ...runtime.errors import SutureError
from ._common import _emit_json, _fail


@click.command(name="verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def verify_(file: Path, as_json: bool) -> None:
    """Check the patch FILE's signatures against this host's trust policy.

    A key restricted to distributions vouches for the distribution the patch names;
    whether its modules are that distribution's files is checked by each target process
    against its own RECORD, and here too when this environment has the patch's baseline
    release installed (the output says which).
    Exit codes: 0 a trusted key signed it, 2 not trusted (unsigned, unknown or
    restricted key, a signature that does not match, or a module that is not the named
    distribution's file here), 1 bad file or policy.
    """
    from ..trust import check

    try:
        verdict = check(file.read_bytes())
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json(verdict.to_dict())
    else:
        click.echo(f"patch {verdict.patch.short_id} ({verdict.patch.describe()}), "
                   f"policy {verdict.policy.path}")
        for sig in verdict.signatures:
            click.echo(f"  {sig['keyid'][:12] or '(no keyid)':<12}  {sig['name'] or '-':<24} "
                       f"{sig['status']}")
        if verdict.trusted:
            click.echo(f"trusted: signed by {', '.join(verdict.trusted_by)}")
            m = verdict.membership
            if m.distribution is not None:
                scope = (f"only for {verdict.restricted_to}: each target refuses it unless "
                         f"its modules are {m.distribution}'s files there" if
                         verdict.restricted_to else "by a key trusted for any patch")
                click.echo(f"modules: {m.reason if m.checked else 'not checked here: ' + m.reason}"
                           f"; trusted {scope}")
        else:
            click.echo(f"NOT TRUSTED: {verdict.refusal().message}", err=True)
    sys.exit(0 if verdict.trusted else 2)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def trust(ctx: click.Context, as_json: bool) -> None:
    """Show the keys this host trusts to sign patches (see `suture trust add`, `set`, `remove`).

    The policy is trust.toml in $SUTURE_CONFIG_DIR, else /etc/suture for root, else
    $XDG_CONFIG_HOME/suture or ~/.config/suture.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..trust import load_policy

    try:
        policy = load_policy()
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"policy": policy.path, "exists": policy.exists,
                    "keys": [k.to_dict() for k in policy.keys]})
        return
    if not policy.keys:
        click.echo(f"no key is trusted: {policy.path} "
                   f"{'lists none' if policy.exists else 'does not exist'}; every patch is "
                   f"refused unless --allow-unsigned")
        return
    click.echo(f"{policy.path}")
    for k in policy.keys:
        scope = ", ".join(k.distributions) if k.distributions is not None else "any distribution"
        click.echo(f"  {k.keyid[:12]}  {k.name:<24} {scope}")


@trust.command("add")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default="", help="Label (default: the one in the .pub file).")
@click.option("--dist", "dists", multiple=True, metavar="NAME",
              help="Trust this key only for patches of this distribution (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def trust_add(public_key: Path, name: str, dists: Sequence[str], as_json: bool) -> None:
    """Trust the key in PUBLIC_KEY (a .pub file from `suture keygen`) on this host.

    With --dist for a key already trusted only for some distributions, adds these to
    its list. To narrow a key, or trust it for any patch: `suture trust set KEY`; to
    stop trusting it: `suture trust remove KEY`.
    """
    from ..trust import add_key, policy_path

    try:
        key = add_key(public_key.read_text().strip(), name, dists)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"policy": policy_path(), "key": key.to_dict()})
        return
    click.echo(f"trusted {key.name} ({key.keyid[:12]}) for {_scope(key.distributions)} in "
               f"{policy_path()}")


def _scope(dists: Optional[Sequence[str]]) -> str:
    return "any distribution" if dists is None else ", ".join(dists)


def _policy_path() -> str:
    from ..trust import policy_path

    return policy_path()


@trust.command("set")
@click.argument("key")
@click.option("--dist", "dists", multiple=True, metavar="NAME",
              help="Trust the key only for patches of these distributions (repeatable); "
                   "replaces its list.")
@click.option("--any", "any_", is_flag=True, help="Trust the key for any patch.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def trust_set(key: str, dists: Sequence[str], any_: bool, as_json: bool) -> None:
    """Change what the listed KEY may sign: exactly the --dist distributions, or --any.

    KEY is a key id, a prefix of at least 8 of its hex digits (`suture trust` shows 12),
    or its name. Widens or narrows; patches already installed stay installed.
    Exit codes: 0 changed, 1 no such key (or several), bad policy, or neither or both
    of --dist and --any.
    """
    from ..trust import TrustPolicyError, set_scope

    try:
        if bool(dists) == any_:
            raise TrustPolicyError("give either --dist NAME (repeatable) or --any; to stop "
                                   "trusting the key: `suture trust remove KEY`",
                                   details={"key": key})
        before, after = set_scope(key, None if any_ else list(dists))
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"policy": _policy_path(), "before": before.to_dict(), "key": after.to_dict()})
        return
    click.echo(f"trusted {after.name} ({after.keyid[:12]}) for {_scope(after.distributions)} "
               f"(was: {_scope(before.distributions)}) in {_policy_path()}")


@trust.command("remove")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def trust_remove(key: str, as_json: bool) -> None:
    """Stop trusting KEY (a key id, a prefix of at least 8 hex digits, or its name).

    Patches it signed that are already installed stay installed: `suture list` shows
    who signed each, and `suture remove ID` takes one out.
    Exit codes: 0 removed, 1 no such key (or several), or a bad policy.
    """
    from ..trust import remove_key

    try:
        removed = remove_key(key)
    except SutureError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit_json({"policy": _policy_path(), "removed": removed.to_dict()})
        return
    click.echo(f"no longer trusted: {removed.name} ({removed.keyid[:12]}) in {_policy_path()}; "
               f"patches it signed that are installed stay installed (`suture list`)")



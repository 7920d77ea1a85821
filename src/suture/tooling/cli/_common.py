"""What every command group of the CLI shares: the ``suture`` group class with our exit
codes, JSON output, the error exit, the trust check of a patch file, time stamps.

Only command-group modules import this, and this imports no command-group module: the
helpers live below the commands that use them, never borrowed from a sibling (the old
``cli_fleet`` borrowed them from ``cli``, which imported it back).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from typing import TYPE_CHECKING, Any, Dict, List, NoReturn, Optional, Sequence, Tuple

import click

from ...runtime.errors import SutureError, UntrustedPatch

if TYPE_CHECKING:   # the patch reader loads with the trust check, when a command needs it
    from ...runtime.patchfile import Patch


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _columns() -> Optional[int]:
    """How wide a table's lines may be when stdout is a terminal: ``$COLUMNS`` when set (as
    shells and ``stty`` know it), else the terminal's own width. None when stdout is a pipe
    or a file, whatever ``$COLUMNS`` says: scripts and ``grep`` see one row per line."""
    try:
        if not sys.stdout.isatty():
            return None
        explicit = os.environ.get("COLUMNS", "")
        if explicit.isdigit() and int(explicit) > 0:
            return int(explicit)
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return None


def _wrap_column(text: str, indent: int, columns: Optional[int]) -> str:
    """``text`` as the last column of a table whose earlier columns take ``indent``
    characters: wrapped at spaces to ``columns`` (``_columns``), its continuation lines
    indented to the column, so that no line is wider than the terminal. A word longer than
    the room left (a path, a URL) stays whole on its own line rather than be cut where it
    cannot be copied. At least 30 characters wide, however narrow the terminal."""
    if columns is None:
        return text
    width = max(30, columns - indent)
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return ("\n" + " " * indent).join(lines) if lines else text


EX_USAGE = 64      # sysexits.h: bad command line (click's own default, 2, means "refused")
EX_INTERRUPTED = 130


class _Suture(click.Group):
    """The `suture` group: click's standalone mode, with our exit codes.

    Usage errors exit 64, not click's 2 (2 means "refused"/"exposed" here); --help and
    --version 0; Ctrl-C 130; `suture` alone prints the help and exits 64 on every click
    version. Commands set their own codes with sys.exit(), which passes through.
    """

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            exc.show()
            sys.exit(EX_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                sys.exit(EX_INTERRUPTED)
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo(err=True)
            sys.exit(EX_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else 0)   # --help, --version: Exit(0)

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), err=True)
            ctx.exit(EX_USAGE)
        return super().parse_args(ctx, args)


def _fail(exc: SutureError, as_json: bool, code: int = 1) -> NoReturn:
    if as_json:
        _emit_json({"error": exc.to_dict()})
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(code)


_UNSIGNED_OPT = click.option(
    "--allow-unsigned", is_flag=True,
    help="DEVELOPMENT ONLY: accept a patch that no trusted key signed (warns loudly).")


def _verified(data: bytes, allow_unsigned: bool, as_json: bool) -> Tuple[Patch, Dict[str, Any]]:
    """The patch and its trust record (tooling/trust), or exit: 2 untrusted, 1 bad file."""
    from ..trust import require

    try:
        patch, record = require(data, allow_unsigned)
    except UntrustedPatch as exc:
        _fail(exc, as_json, code=2)
    except SutureError as exc:
        _fail(exc, as_json)
    if record.get("unsigned"):
        click.echo(click.style(f"WARNING: patch {patch.short_id} ({patch.describe()}) is not "
                               f"signed by a key this host trusts; --allow-unsigned accepts "
                               f"it. Never use this flag in production.", fg="red", bold=True),
                   err=True)
    return patch, record


def _when(at: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))

"""What a benchmark's numbers were measured on (the commit and the files that differed from it),
and where its result goes (``emit``).

Every benchmark records this in its JSON, so that a reader can re-run the same code. Run as a
script (``python benchmarks/x.py``) a benchmark imports it as ``_provenance``; the packages
under benchmarks/ import it as ``benchmarks._provenance``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union


def git_state(tree: Union[str, Path]) -> Dict[str, Any]:
    """``{"commit": full hash, "dirty": [paths git status lists]}`` of the checkout holding
    ``tree``; both empty when it is not a git checkout (or git is missing)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(tree), *args], capture_output=True,
                                  text=True).stdout
        except OSError:
            return ""
    return {"commit": git("rev-parse", "HEAD").strip(),
            "dirty": [line[3:] for line in git("status", "--porcelain").splitlines() if line]}


def emit(result: Dict[str, Any], dest: Optional[str],
         markdown: Callable[[Dict[str, Any]], str]) -> None:
    """The benchmarks' ``--json [FILE]``: with ``dest`` "-", the JSON on standard output
    instead of the markdown; with a file name, the JSON there and the markdown printed;
    with None, only the markdown."""
    if dest:
        text = json.dumps(result, indent=1)
        if dest == "-":
            print(text)
            return
        Path(dest).write_text(text + "\n", encoding="utf-8")
    print(markdown(result))

"""Status: the applied patches as data.

Enters: ``_applied`` (read under the engine lock). Leaves: one dict per patch, and
the old code objects that ``_activeness.active`` then looks for outside the lock.
Invariant: reads only; changes nothing.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Tuple

from ._state import _applied


def records() -> Tuple[List[Dict[str, Any]], Dict[int, Tuple[Any, ...]]]:
    """Under the engine lock: each applied patch as data, and the old code objects by id
    (what ``active`` looks for, outside the lock)."""
    patches = [{
        "id": r.patch.id, "target": dict(r.patch.target), "describe": r.patch.describe(),
        "cves": list(r.patch.meta.get("cves", [])),
        "modules": {m: "applied" if st == "pending add" and m in sys.modules else st
                    for m, st in r.modules.items()},
        "applied_at": r.applied_at, "pause_ns": r.pause_ns, "ops": len(r.ops),
        "caveats": list(r.caveats), "notes": list(r.notes), "verified": dict(r.verified),
    } for r in _applied.values()]
    old = {k: (v[0], v[1], r.patch.id) for r in _applied.values()
           for k, v in r.old_codes.items()}
    return patches, old

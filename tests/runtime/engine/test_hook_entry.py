"""The import hook calls the engine entry point it was handed, and nothing else (issue 14).

In-process: a throwaway package in ``tmp_path`` is imported while ``_hook`` serves it
as pending; the finder is removed again and the module forgotten in every case.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import List, Tuple

from suture.runtime import _hook


def test_a_pending_module_is_handed_to_the_entry_point_given_to_refresh(tmp_path: Path):
    name = f"suture_hook_entry_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    seen: List[Tuple[str, types.ModuleType, int]] = []

    def entry(modname: str, module: types.ModuleType) -> None:
        seen.append((modname, module, module.VALUE))   # called after the module executed

    sys.path.insert(0, str(tmp_path))
    try:
        _hook.refresh({name: "p" * 64}, {}, entry)
        assert _hook.installed()
        module = __import__(name)
        assert seen == [(name, module, 1)]
        assert module.__loader__ is not None and not isinstance(module.__loader__, _hook._PatchingLoader)
    finally:
        _hook.refresh({}, {}, entry)
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
    assert not _hook.installed()


def test_a_module_not_served_never_reaches_the_entry_point(tmp_path: Path):
    name = f"suture_hook_other_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("VALUE = 2\n")
    seen: List[str] = []
    sys.path.insert(0, str(tmp_path))
    try:
        _hook.refresh({"suture_hook_someone_else": "p" * 64}, {}, lambda n, m: seen.append(n))
        assert __import__(name).VALUE == 2
        assert seen == []
    finally:
        _hook.refresh({}, {}, lambda n, m: None)
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)

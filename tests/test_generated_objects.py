"""Generated cases for objects and frames that exist before a patch (tests/generated/gen_objects.py).

Each seed draws one shape (derived state, state that needs a migration with and without
MIGRATIONS, the revert direction, old callers alive in a generator, coroutine, async
generator or thread) and is checked like the hard cases: built with the real builder,
fresh v1, fresh v2 and patched runs through tests/cases/_runner.py; an applied patch must
observe v1, v2, v1, v2 phase by phase, a refused one must be refused by the engine with
the shape's code and leave the process as it was.

The seeds below cover every object and revert shape and each frame holder; thousands of
seeds, tabulated by shape: ``python tests/generated/gen_objects.py --sweep N``. A case that
holds a pattern of gen_objects.KNOWN_BUGS and fails that way is an expected failure.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_GEN = Path(__file__).parent / "generated" / "gen_objects.py"
_spec = importlib.util.spec_from_file_location("suture_tests_gen_objects", _GEN)
gen_objects = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen_objects
_spec.loader.exec_module(gen_objects)  # type: ignore[union-attr]

# 0-16: the 14 object shapes and 3 revert shapes; then frame cases covering every holder
# (gen, coro, agen, thread, method) and every kind of signature change
SEEDS = list(range(17)) + [17, 23, 29, 32, 36, 38, 40]


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_generated_objects(seed: int, tmp_path: Path) -> None:
    res = gen_objects.check(seed, tmp_path)
    where = (f"seed {seed} [{res['shape']}], case in {tmp_path / f'o{seed}'}\n"
             f"reproduce: python tests/generated/gen_objects.py {seed} OUTDIR --check\n"
             f"case: {res['case']}\nexpect: {json.dumps(res['expect'])}")
    if res["outcome"] == "known-bug":
        pytest.xfail(f"known bug {res['patterns']}: {res['detail']}")
    assert res["outcome"] in ("applied-equal", "refused"), \
        f"{res['outcome']} {res['code']}: {res['detail']}\n{where}"

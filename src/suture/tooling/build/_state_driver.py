"""Import some modules of one release and write their state fingerprints (runs in a child).

Run by tooling/build/state.py as a script, in a fresh interpreter of the builder's Python::

    python -s -B _state_driver.py FINGERPRINT_PY OUT_FILE TIMEOUT ROOT [IMPORT_PATH...] -- MODULE...
        [-- DEPENDENT...]

It never imports Suture: ``runtime/_fingerprint.py`` is loaded by path under a private
name. The release's code may print anything, so the results go to ``OUT_FILE``, one JSON
object a line, written as they come (a process killed for hanging keeps what it wrote):
``{"imported": NAME, "error": TEXT|null}`` per module, then ``{"aliases": {NAME: PLACE}}``
(the ``sys.modules`` names under the modules' top-level packages), then ``{"module": NAME, "paths":
[[label, segments, fingerprint, description, literal or null], ...]}`` or ``{"module": NAME, "error":
TEXT}``. Every module is imported first, then each is fingerprinted: the state compared is
the state once all of them are loaded, in both releases alike. The ``DEPENDENT`` modules
(unchanged modules that import a changed one) are imported and fingerprinted after that,
so the changed modules' state is the same with or without them.

Standard library only, self-contained.
"""

import importlib
import importlib.util
import json
import os
import signal
import sys
from typing import Any, Dict, List

# A script's own folder heads sys.path: this one (tooling/build/) must not shadow the
# release's modules.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]


class _Timeout(BaseException):
    """The import took longer than the timeout (raised by SIGALRM)."""


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout()


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def main(argv: List[str]) -> int:
    fingerprint_py, out_file, timeout = argv[0], argv[1], float(argv[2])
    split = argv.index("--")
    roots, modules = argv[3:split], argv[split + 1:]
    dependents: List[str] = []
    if "--" in modules:
        at = modules.index("--")
        modules, dependents = modules[:at], modules[at + 1:]
    spec = importlib.util.spec_from_file_location("_suture_state_fingerprint", fingerprint_py)
    assert spec is not None and spec.loader is not None
    fingerprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fingerprint)
    # qualified names defined by several defs, per module, with their defs' lines in this
    # release's source (state.py): read before the release's code runs
    lined_file = os.environ.pop("SUTURE_STATE_LINED", "")
    lined: Dict[str, Dict[str, List[int]]] = {}
    if lined_file:
        with open(lined_file, encoding="utf-8") as f:
            lined = json.load(f)
    # globals left out of a module's state, per module (state.py ``skip_globals``)
    skip_file = os.environ.pop("SUTURE_STATE_SKIP", "")
    skip: Dict[str, List[str]] = {}
    if skip_file:
        with open(skip_file, encoding="utf-8") as f:
            skip = json.load(f)
    sys.path[0:0] = roots
    can_alarm = hasattr(signal, "setitimer")
    if can_alarm:
        signal.signal(signal.SIGALRM, _alarm)
    loaded: Dict[str, Any] = {}
    with open(out_file, "w", encoding="utf-8") as out:
        def emit(obj: Dict[str, Any]) -> None:
            out.write(json.dumps(obj, ensure_ascii=True) + "\n")
            out.flush()

        for batch in (modules, dependents):
            _import_and_fingerprint(batch, loaded, emit, timeout, can_alarm, fingerprint, lined,
                                    skip)
            if batch is not modules:
                continue
            # As the changed modules' imports leave them: the warning filters (a release
            # that installs or drops a ``warnings.filterwarnings(...)`` at import), and the
            # names the package's modules are loaded under (``sys.modules`` aliases a
            # module makes at import: ``requests.packages.chardet``, a vendored package's
            # new name), each with the place of its module.
            emit({"warnings": fingerprint.warning_filters()})
            tops = {name.split(".")[0] for name in modules}
            emit({"aliases": {key: fingerprint.module_place(mod.__name__)
                              for key, mod in list(sys.modules.items())
                              if type(key) is str and key.split(".")[0] in tops
                              and isinstance(getattr(mod, "__name__", None), str)}})
    return 0


def _import_and_fingerprint(modules: List[str], loaded: Dict[str, Any], emit: Any,
                            timeout: float, can_alarm: bool, fingerprint: Any,
                            lined: Dict[str, Dict[str, List[int]]], skip: Dict[str, List[str]]) -> None:
    """Import every module of ``modules``, then fingerprint each that imported."""
    for name in modules:
        error: Any = None
        try:
            if can_alarm:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                loaded[name] = importlib.import_module(name)
            finally:
                if can_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _Timeout:
            error = f"import did not finish within {timeout:g}s"
        except BaseException as exc:  # noqa: BLE001 - anything the release raises
            error = _error(exc)
        emit({"imported": name, "error": error})
    for name in modules:
        mod = loaded.get(name)
        if mod is None:
            continue
        try:
            root = fingerprint.import_root(name)
            left_out = set(skip.get(name, ()))
            state = fingerprint.module_state(
                {k: v for k, v in vars(mod).items() if k not in left_out}, name, root,
                lined.get(name) or {})
        except fingerprint.TooLarge as exc:
            emit({"module": name, "error": _error(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - a walk that fails: not verified
            emit({"module": name, "error": "state could not be read: " + _error(exc)})
            continue
        ns = vars(mod)
        # The value itself where it is a literal: the engine can then set it.
        emit({"module": name, "paths": [
            [label, segments, fp, desc,
             fingerprint.literal(fingerprint.value_at(ns, segments), root=root)]
            for label, (segments, fp, desc) in state.items()]})


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))

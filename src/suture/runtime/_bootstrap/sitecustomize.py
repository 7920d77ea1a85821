"""Suture's bootstrap: Python imports this at startup when ``suture run`` put its
directory first on PYTHONPATH (see ``suture.runtime._bootstrap.prepare``).

It must never break the application: it (a) starts the agent when
``SUTURE_AGENT=1``, printing one warning line if that fails, and (b) runs the
``sitecustomize`` that Python would have imported without us (the next one on
sys.path), as module ``sitecustomize``, so that ``import sitecustomize`` keeps
meaning the user's. Errors of the user's own sitecustomize propagate exactly as
they would have: site.py reports them and the program goes on.
"""

import os
import sys


def _start_agent() -> None:
    if os.environ.get("SUTURE_AGENT") != "1":
        return
    try:
        # Installers compile Suture's bytecode; without it (PYTHONDONTWRITEBYTECODE and an
        # uncompiled checkout) every process compiles the agent again, which costs its
        # start-up time and about 2 MiB (issue 19). The user's setting is kept: the agent
        # never writes into the installed package on its own.
        from suture.runtime import _agent

        _agent.start()
        _agent.wait_ready()  # bounded: installed and inherited patches before the app runs
    except BaseException as exc:  # noqa: BLE001 - the application must start regardless
        try:
            sys.stderr.write(f"suture: warning: agent not started in pid {os.getpid()}: {exc}\n")
        except BaseException:  # noqa: BLE001
            pass


def _chain() -> None:
    import importlib.machinery

    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    entries = list(sys.path)
    real = [os.path.realpath(p or os.getcwd()) for p in entries]
    rest = entries[real.index(here) + 1:] if here in real else \
        [p for p, r in zip(entries, real) if r != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    # What importlib.util.module_from_spec is; importlib.util itself would cost every
    # process about 0.5 MiB of modules (issue 19).
    from importlib._bootstrap import module_from_spec

    module = module_from_spec(spec)
    # The import system re-reads sys.modules["sitecustomize"] when this file
    # finishes, so the user's module becomes *the* sitecustomize.
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_start_agent()
_chain()

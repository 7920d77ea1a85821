"""Hook for gunicorn 21.2.0 -> 22.0.0: acknowledges one module-level change, does nothing.

``gunicorn/__main__.py`` changes its module-level ``run()`` into
``if __name__ == "__main__": run()``. The builder cannot re-run or undo module-level
calls, so it asks for a hook. Here nothing needs doing: that module is imported only by
``python -m gunicorn``, where it runs as ``__main__`` (a module Suture does not patch);
in a process that imported ``gunicorn.__main__`` by name, ``run()`` already ran and is
the server itself. A hook module with no functions is how a patch author says "reviewed,
nothing to do".
"""

"""Case 83: the patched function and method ran hundreds of thousands of times before
the patch, from call sites in a module the patch does not change: the adaptive
interpreter (3.11+) specialised those call sites (to the function's version) and the
functions' own bodies, and on a build with the JIT (3.13+, enabled here with
PYTHON_JIT=1 from expect.json's "env") compiled traces of the hot loop. After apply the
very same call sites must run the fixed code, after revert the old code, with no
stale specialisation or trace."""
import dis
import sys

VALUES = list(range(-60, 140))


def _jit():
    jit = getattr(sys, "_jit", None)   # 3.14+
    return bool(jit and jit.is_enabled())


def setup():
    import c83_loop
    import c83_rules

    check = c83_rules.allowed
    for _ in range(1500):              # 300,000 calls through each call site
        c83_loop.run(VALUES)
        c83_loop.each(VALUES, check)
    # The case's premise, checked before the patch arrives (it proves nothing without it)
    if sys.version_info >= (3, 11):
        ops = {i.opname for i in dis.get_instructions(c83_loop.run, adaptive=True)}
        assert "CALL_PY_EXACT_ARGS" in ops, sorted(ops)   # specialised to allowed's version
    if _jit():
        import _opcode

        traced = [off for fn in (c83_loop.run, c83_loop.each)
                  for off in range(0, len(fn.__code__.co_code), 2)
                  if _has_executor(_opcode, fn.__code__, off)]
        assert traced, "the JIT is enabled but traced nothing"
    return {"loop": c83_loop, "check": check}


def _has_executor(_opcode, code, offset):
    try:
        _opcode.get_executor(code, offset)
    except ValueError:
        return False
    return True


def observe(state):
    loop = state["loop"]
    totals = [loop.run(VALUES) for _ in range(300)]   # hot again, after apply/revert
    return {"jit": _jit(), "run": sorted(set(totals)),
            "each": loop.each(VALUES, state["check"])}

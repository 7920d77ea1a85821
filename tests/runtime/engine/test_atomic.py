"""The commit is atomic: other threads see all of a patch or none of it.

Both tests run in a fresh interpreter with ``sys.setswitchinterval`` at its
minimum, so the interpreter asks the committing thread to hand over the GIL as
often as it can: a commit made of many Python-level steps would be interrupted
(and these tests would fail), a commit made in one C call is not.
"""

from __future__ import annotations

import pytest

N_FUNCS = 500


def _many_functions(version: int) -> str:
    return "\n".join(f"def f{i}(x):\n    return x + {version}\n\n" for i in range(N_FUNCS))


@pytest.mark.slow
def test_snapshots_of_all_codes_are_all_old_or_all_new_across_apply_and_revert(ws):
    v1 = ws.tree("v1", {"tgt_many.py": _many_functions(1)})
    v2 = ws.tree("v2", {"tgt_many.py": _many_functions(2)})
    patch = ws.patch(v1, v2)
    got = ws.run(r"""
        import operator
        import threading

        import tgt_many

        N = ARGS["n"]
        funcs = [getattr(tgt_many, "f%d" % i) for i in range(N)]
        get_code = operator.attrgetter("__code__")
        old = tuple(map(get_code, funcs))
        runs = [[old, 0]]          # consecutive identical snapshots, with their count
        taken = [0]
        stop = threading.Event()
        is_ = operator.is_

        def snapshotter():
            last = runs[-1]
            while not stop.is_set():
                snap = tuple(map(get_code, funcs))      # one C call: a consistent view
                taken[0] += 1
                if all(map(is_, snap, last[0])):
                    last[1] += 1
                else:
                    last = [snap, 1]
                    runs.append(last)

        def wait_for_more(k=200):
            target = taken[0] + k
            while taken[0] < target:
                stop.wait(0.001)

        sys.setswitchinterval(1e-6)
        t = threading.Thread(target=snapshotter)
        t.start()
        patch = load(ARGS["patch"])
        marks = []
        news = []                  # each apply compiles its own code objects
        for _ in range(3):
            wait_for_more()
            marks.append(taken[0])
            runtime.apply(patch)
            news.append(tuple(map(get_code, funcs)))
            wait_for_more()
            marks.append(taken[0])
            runtime.revert(patch.id)
        wait_for_more()
        marks.append(taken[0])
        stop.set()
        t.join()
        sys.setswitchinterval(0.005)

        def kind(snap):
            if all(map(is_, snap, old)):
                return "old"
            for k, new in enumerate(news):
                if all(map(is_, snap, new)):
                    return "new%d" % k
            n_old = sum(map(is_, snap, old))
            n_new = max(sum(map(is_, snap, new)) for new in news)
            return "mixed %d old + %d new + %d other" % (n_old, n_new, N - n_old - n_new)

        emit({"kinds": [kind(s) for s, _ in runs], "counts": [c for _, c in runs],
              "marks": marks, "distinct_new": [len(set(map(id, new))) for new in news],
              "f0": tgt_many.f0(0)})
        """, [v1], {"patch": str(patch), "n": N_FUNCS})
    assert got["kinds"] == ["old", "new0", "old", "new1", "old", "new2", "old"]
    assert all(c > 0 for c in got["counts"]), got["counts"]
    marks = got["marks"]
    assert marks[0] > 0 and all(b > a for a, b in zip(marks, marks[1:])), marks
    assert got["distinct_new"] == [N_FUNCS] * 3
    assert got["f0"] == 1


V1_BUSY = '''
    import functools

    LIMIT = 100


    def check(n):
        return n < LIMIT


    class Guard:
        def allow(self, n):
            return check(n)


    def render(x, sep="-"):
        return sep.join(["v1", str(x)])


    @functools.lru_cache(maxsize=None)
    def cached(n):
        return "v1:%d" % n


    def gen(n):
        for i in range(n):
            yield i
'''

V2_BUSY = '''
    import functools

    LIMIT = 100


    def _bounded(n, limit):
        return 0 <= n < limit


    def check(n):
        return _bounded(n, LIMIT)


    class Guard:
        def _verdict(self, n):
            return "ok" if check(n) else "denied"

        def allow(self, n):
            return self._verdict(n) == "ok"


    def render(x, sep="+"):
        return sep.join(["v2", str(x)])


    @functools.lru_cache(maxsize=None)
    def cached(n):
        return "v2:%d" % n


    def gen(n):
        for i in range(n):
            yield i * 10
'''


@pytest.mark.slow
def test_calls_in_a_tight_loop_never_raise_during_apply_and_revert(ws):
    # v2's check() calls a helper and allow() a method that only v2 defines: a
    # commit that swapped code before binding them (or revert, after deleting
    # them) would make these calls raise NameError/AttributeError.
    v1 = ws.tree("v1", {"tgt_busy.py": V1_BUSY})
    v2 = ws.tree("v2", {"tgt_busy.py": V2_BUSY})
    patch = ws.patch(v1, v2)
    got = ws.run(r"""
        import threading

        import tgt_busy

        guard = tgt_busy.Guard()
        check, render, gen = tgt_busy.check, tgt_busy.render, tgt_busy.gen   # early references
        seen = [set() for _ in range(7)]
        errors = []
        calls = [0]
        stop = threading.Event()

        def caller():
            while not stop.is_set():
                try:
                    values = (check(-1), tgt_busy.check(-1), guard.allow(-1), render(1),
                              tgt_busy.render(1), tgt_busy.cached(3), tuple(gen(3)))
                except BaseException as exc:
                    errors.append(repr(exc))
                    continue
                for s, v in zip(seen, values):
                    s.add(v)
                calls[0] += 1

        def wait_for_more(k=200):
            target = calls[0] + k
            while calls[0] < target and not errors:
                stop.wait(0.001)

        sys.setswitchinterval(1e-6)
        t = threading.Thread(target=caller)
        t.start()
        patch = load(ARGS["patch"])
        marks = []
        for _ in range(5):
            wait_for_more()
            marks.append(calls[0])
            runtime.apply(patch)
            wait_for_more()
            marks.append(calls[0])
            runtime.revert(patch.id)
        wait_for_more()
        marks.append(calls[0])
        stop.set()
        t.join()
        sys.setswitchinterval(0.005)
        emit({"errors": errors[:5], "seen": [sorted(map(repr, s)) for s in seen],
              "marks": marks, "final": repr((check(-1), guard.allow(-1), render(1),
                                             tgt_busy.cached(3), tuple(gen(3))))})
        """, [v1], {"patch": str(patch)})
    assert got["errors"] == []
    marks = got["marks"]
    assert marks[0] > 0 and all(b > a for a, b in zip(marks, marks[1:])), marks
    assert got["seen"] == [
        ["False", "True"], ["False", "True"], ["False", "True"],
        ["'v1-1'", "'v2+1'"], ["'v1-1'", "'v2+1'"], ["'v1:3'", "'v2:3'"],
        ["(0, 1, 2)", "(0, 10, 20)"],
    ]
    assert got["final"] == "(True, True, 'v1-1', 'v1:3', (0, 1, 2))"

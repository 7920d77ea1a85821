"""Patched code stays debuggable: tracebacks and inspect show the lines that run.

The fixed source is registered in linecache under its own name
("<suture <id> <file>>"), so the lines shown never come from a file on disk
that holds another version; after revert the original file is used again.
"""

from __future__ import annotations

import re

import pytest

V1 = {"tgt_trace.py": '''
    def parse(text):
        if not text:
            raise ValueError("v1: empty input")
        return text.split(",")


    class Reader:
        def read(self, text):
            return parse(text)


    def pages(text):
        yield 1
        raise ValueError("v1: page two is missing")
'''}

V2 = {"tgt_trace.py": '''
    """Parsing (fixed)."""

    MAX = 10


    def parse(text):
        # fixed: refuse oversized input before splitting it
        if not text:
            raise ValueError("v2: empty input is refused")
        if len(text) > MAX:
            raise ValueError("v2: input too long")
        return text.split(",")


    class Reader:
        def read(self, text):
            return parse(text.strip())  # v2 reader


    def pages(text):
        yield 1
        raise ValueError("v2: page two is missing")
''', "tgt_trace_added.py": '''
    def check(x):
        if x < 0:
            raise ValueError("added module refuses negatives")
        return x
'''}

V1_PARSE = '''def parse(text):
    if not text:
        raise ValueError("v1: empty input")
    return text.split(",")
'''
V2_PARSE = '''def parse(text):
    # fixed: refuse oversized input before splitting it
    if not text:
        raise ValueError("v2: empty input is refused")
    if len(text) > MAX:
        raise ValueError("v2: input too long")
    return text.split(",")
'''


@pytest.mark.slow
def test_tracebacks_and_getsource_show_the_fixed_lines_then_the_original_ones(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(r"""
import inspect
import linecache
import traceback

import tgt_trace

def tb(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return traceback.format_exc()

def look():
    return {"tb": tb(tgt_trace.Reader().read, ""), "parse": inspect.getsource(tgt_trace.parse),
            "read": inspect.getsource(tgt_trace.Reader.read)}

gen = tgt_trace.pages("x")
next(gen)                       # suspended in v1 code, across the apply
out = {"v1": look()}
p = load(ARGS["patch"])
runtime.apply(p)
linecache.checkcache()          # what traceback does anyway: our entries must survive it
out["v2"] = look()
out["old_frame"] = tb(next, gen)
import tgt_trace_added
out["added"] = tb(tgt_trace_added.check, -1)
runtime.revert(p.id)
out["reverted"] = look()
emit(out)
""", [v1], {"patch": str(patch)})
    v1_tb, v2_tb = got["v1"]["tb"], got["v2"]["tb"]
    assert re.search(r'File "[^"]*tgt_trace\.py", line 3, in parse\n'
                     r'\s+raise ValueError\("v1: empty input"\)\n', v1_tb), v1_tb
    assert re.search(r'File "<suture [0-9a-f]{12} [^"]*tgt_trace\.py>", line 9, in parse\n'
                     r'\s+raise ValueError\("v2: empty input is refused"\)\n', v2_tb), v2_tb
    assert re.search(r'File "<suture [0-9a-f]{12} [^"]*tgt_trace\.py>", line 17, in read\n'
                     r'\s+return parse\(text\.strip\(\)\)  # v2 reader\n', v2_tb), v2_tb
    assert "v1:" not in v2_tb and "return parse(text)\n" not in v2_tb
    assert got["v1"]["parse"] == V1_PARSE and got["reverted"]["parse"] == V1_PARSE
    assert got["v2"]["parse"] == V2_PARSE
    assert got["v2"]["read"] == ("    def read(self, text):\n"
                                 "        return parse(text.strip())  # v2 reader\n")
    assert got["reverted"]["tb"] == v1_tb
    # a frame that started on v1 finishes on v1, and shows v1's line from the v1 file
    assert re.search(r'File "[^"]*tgt_trace\.py", line 14, in pages\n'
                     r'\s+raise ValueError\("v1: page two is missing"\)\n',
                     got["old_frame"]), got["old_frame"]
    # a module the patch added shows its own lines too
    assert re.search(r'File "<suture [0-9a-f]{12}>/tgt_trace_added\.py", line 3, in check\n'
                     r'\s+raise ValueError\("added module refuses negatives"\)\n',
                     got["added"]), got["added"]


@pytest.mark.slow
def test_after_linecache_is_cleared_patched_code_never_shows_the_old_files_lines(ws):
    # Anyone may call linecache.clearcache(). linecache then falls back to the module's
    # loader, which reads the file on disk (v1): line 9 of v1 is not line 9 of v2.
    # Showing no line is acceptable; showing the vulnerable version's line is not.
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(r"""
import inspect
import linecache
import traceback

import tgt_trace

runtime.apply(load(ARGS["patch"]))
linecache.clearcache()
try:
    tgt_trace.parse("")
except ValueError:
    tb = traceback.format_exc()
try:
    source = inspect.getsource(tgt_trace.parse)
except OSError as exc:
    source = "OSError: %s" % exc
emit({"tb": tb, "source": source})
""", [v1], {"patch": str(patch)})
    frame = got["tb"].split(", in parse\n")[1].splitlines()[0]
    assert frame.strip() in ('raise ValueError("v2: empty input is refused")', "ValueError: "
                             "v2: empty input is refused"), got["tb"]
    assert got["source"] in (V2_PARSE, "OSError: could not get source code"), got["source"]

#!/usr/bin/env python3
"""Seeded generator of hard cases for objects and frames that exist before a patch.

    python tests/generated/gen_objects.py SEED OUTDIR
    python tests/generated/gen_objects.py [FIRST] --sweep N [--jobs J] [--results F] [--keep DIR]

writes the case for SEED into OUTDIR/o<SEED>/ and prints its path. The directory has the
layout of a hard case (tests/cases/README.md): ``v1/``, ``v2/``, ``driver.py``,
``expect.json`` and, for the shapes with a migration, ``hooks.py``.

One seed (``random.Random``, stdlib only, no set iteration: the same seed gives the same
bytes everywhere) draws one *shape* (``SHAPES[seed % len(SHAPES)]``) and, at random, the
names, constants, constructor arguments, how often objects are fed before the patch, which
of them are subclass objects (with or without their own ``__init__``) and the routes the
driver reaches them by: kept in state, in a list, in a dict, in a closure, at module level
(``DEFAULT``, ``REGISTRY``), through a worker thread of the driver, ``copy.copy`` of one,
``pickle`` round trips, and (derived shapes) a pickle taken before the patch.

Shapes, and what the engine must do (expect.json):

* objects built by v1, read by v2 methods (direction "apply"):
  ``derived-kwparam`` / ``derived-kwonly`` (a new parameter's default), ``derived-const``
  (a module constant), ``derived-lock`` (``threading.Lock()``/``RLock()``),
  ``derived-container`` (a fresh dict/list/OrderedDict never mutated): applied, old
  objects behave like fresh-v2 ones;
  ``cache`` (a dict the reader fills), ``counter`` (``self.n += 1`` in ``feed``), ``flag``
  (set by ``start()``), ``ctor-arg`` (from a constructor argument): SUT-E209 from the
  engine; each also ``+hook``: ``MIGRATIONS`` sets what the old object meant (its log of
  feeds, its label...), applied, equal to the fresh-v2 replay;
* objects built while patched, read by v1 methods after the revert (direction "revert"):
  ``revert-derived`` (applied), ``revert-counter`` (the revert refuses SUT-E209: expect
  ``{"outcome": "revert-refused"}``, a kind tests/test_cases.py does not know) and
  ``revert-counter+hook`` (``REVERT_MIGRATIONS``: applied);
* frames of an old caller of a changed callee, alive in a suspended generator
  (``gen``), a coroutine driven by ``send`` (``coro``), an async generator (``agen``) or
  a thread looping on a queue (``thread``): ``frame-H-defaulted`` (the callee gains a
  parameter with a default: applied) and ``frame-H-required`` / ``-kwrenamed`` /
  ``-removed`` / ``-unpack`` (SUT-E210 after the engine's wait).

The driver follows case 77: ``observe()`` calls every object through every route, with
mutable state saved before and restored after (so every phase starts from the same
state), and a fresh-v2 process replays the same constructions and calls on the fixed
release: that is the oracle. Exceptions become ``"<exc Type: msg>"``.

``--sweep N`` checks seeds FIRST..FIRST+N-1 in J processes (build with the real builder,
fresh v1, fresh v2 and patched runs through tests/cases/_runner.py) and prints a table by
shape: applied-equal, refused (engine code), SILENT-DIVERGENCE (applied, but a patched
phase differs from fresh v2/v1 or observed an exception fresh runs do not), unexpected (an
outcome the shape does not expect) and generator (the case itself is broken). A failing
case that holds a pattern of KNOWN_BUGS (``case.patterns``) is reported as ``known-bug``;
the exit status is 1 if anything else diverged silently.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
RUNNER = HERE.parent / "cases" / "_runner.py"
SRC = HERE.parents[1] / "src"

DERIVED = ["derived-kwparam", "derived-kwonly", "derived-const", "derived-const-rebound",
           "derived-lock", "derived-container"]
MIGRATION = ["cache", "counter", "flag", "ctor-arg"]
OBJECT_SHAPES = DERIVED + MIGRATION + [m + "+hook" for m in MIGRATION]
REVERT_SHAPES = ["revert-derived", "revert-counter", "revert-counter+hook"]
HOLDERS = ["gen", "coro", "agen", "thread", "method"]
FRAME_KINDS = ["defaulted", "required", "kwrenamed", "removed", "unpack"]
FRAME_SHAPES = [f"frame-{h}-{k}" for h in HOLDERS for k in FRAME_KINDS]
SHAPES = OBJECT_SHAPES + REVERT_SHAPES + FRAME_SHAPES

# shape -> what goes wrong today (a minimised repro is in the report of the sweep that
# found it). The sweep still runs them and reports "known-bug" while they fail that way.
KNOWN_BUGS: Dict[str, str] = {}
# The four patterns the first sweep found (module-rebuilt, global-rebound,
# mangled-private, indirect-callee) are fixed; their minimised repros are hard cases
# 79, 79b, 79c and 79d. Cases still record them in ``case.patterns``.


CLASSES = ["Parser", "Session", "Meter", "Channel", "Worker", "Buffer", "Client", "Ledger"]
FUNCS = ["clean", "tidy", "normalize", "shape", "trim"]
CALLERS = {"gen": "stream", "coro": "pump", "agen": "agen", "thread": "serve",
           "method": "Reader.stream"}


def expected(shape: str) -> Dict[str, Any]:
    if shape == "derived-const-rebound":
        # a global the module rebinds at run time is no derived value: what it was when an
        # old object was built is unknown, so it needs a migration (case 79c)
        return {"outcome": "refused", "code": "SUT-E209", "refused_by": "engine"}
    if shape in DERIVED or shape.endswith("+hook") or shape == "revert-derived" \
            or shape.endswith("-defaulted"):
        out: Dict[str, Any] = {"outcome": "applied"}
        if shape.endswith("+hook"):
            out["hooks"] = "hooks.py"
        return out
    if shape in MIGRATION:
        return {"outcome": "refused", "code": "SUT-E209", "refused_by": "engine"}
    if shape == "revert-counter":
        return {"outcome": "revert-refused", "code": "SUT-E209", "refused_by": "engine"}
    return {"outcome": "refused", "code": "SUT-E210", "refused_by": "engine"}


class Case:
    def __init__(self, seed: int, shape: str) -> None:
        self.seed = seed
        self.shape = shape
        self.pkg = f"go{seed}_app"
        self.v1 = ""
        self.v2 = ""
        self.driver = ""
        self.hooks = ""
        self.others: Dict[str, Tuple[str, str]] = {}   # module -> (v1 text, v2 text)
        self.notes: List[str] = []
        self.patterns: List[str] = []   # KNOWN_BUGS keys this case contains
        self.expect = expected(shape)

    def describe(self) -> str:
        return f"{self.shape}: " + "; ".join(self.notes)

    def write(self, d: Path) -> Path:
        if d.exists():
            shutil.rmtree(d)
        for side, text in (("v1", self.v1), ("v2", self.v2)):
            (d / side / self.pkg).mkdir(parents=True)
            (d / side / self.pkg / "__init__.py").write_text("")
            (d / side / self.pkg / "core.py").write_text(text)
            for name, texts in sorted(self.others.items()):
                (d / side / self.pkg / f"{name}.py").write_text(texts[side == "v2"])
        (d / "driver.py").write_text(self.driver)
        if self.hooks:
            (d / "hooks.py").write_text(self.hooks)
        (d / "expect.json").write_text(json.dumps(self.expect) + "\n")
        return d


def _rename(lines: List[str], owner: str, old: str, new: str) -> List[str]:
    return [re.sub(r"\b%s\.%s\b" % (owner, re.escape(old)), f"{owner}.{new}", x)
            for x in lines]


def _ind(lines: List[str], n: int) -> List[str]:
    return [(" " * n + s) if s else s for s in lines]


# -- objects built by v1 (direction "apply") ----------------------------------------------

def _object_case(rng: random.Random, case: Case) -> None:
    shape = case.shape
    base = shape.replace("+hook", "")
    C = rng.choice(CLASSES)
    sub = "Sub" + C
    k = rng.randint(1, 3)
    lock = base == "derived-lock"
    ctor_kind = rng.choice(["size", "size", "upper", "local"]) if base == "ctor-arg" else ""
    ctor_size = ctor_kind == "size"
    heads = ['"""Generated by tests/generated/gen_objects.py (%s)."""' % shape, ""]
    imports: List[str] = []
    consts: List[str] = []
    common = '"%s:%d" % (self.name, x + len(self.items))'
    params1 = params2 = "self, name"
    init1 = ["self.name = name", "self.items = []"]
    init2 = list(init1)
    feed1 = ["self.items.append(x)", "return len(self.items)"]
    feed2 = list(feed1)
    start1: List[str] = []
    start2: List[str] = []
    probe1 = ["return " + common]
    probe2 = list(probe1)
    hook = ""
    if base in ("derived-kwparam", "derived-kwonly"):
        star = "*, " if base == "derived-kwonly" else ""
        params2 = f"self, name, {star}limit={k}"
        init2.insert(rng.randint(0, 2), "self.limit = limit")
        probe2 = ["if x + len(self.items) > self.limit:",
                  '    return "over %d" % self.limit'] + probe1
        case.notes.append(f"__init__ gains {star}limit={k}")
    elif base in ("derived-const", "derived-const-rebound"):
        consts.append(f"LIMIT = {k}")
        if base == "derived-const-rebound":
            consts += ["", "", "def configure(n):", "    global LIMIT", "    LIMIT = n", ""]
            case.patterns.append("global-rebound")
        expr = rng.choice(["LIMIT", "LIMIT + 1", "LIMIT - 1", "int(LIMIT)"])
        init2.insert(rng.randint(0, 2), f"self.limit = {expr}")
        probe2 = ["if x + len(self.items) > self.limit:",
                  '    return "over %d" % self.limit'] + probe1
        case.notes.append(f"self.limit = {expr} (LIMIT = {k})")
    elif base == "derived-lock":
        how = rng.choice(["threading.Lock()", "threading.RLock()", "Lock()", "RLock()"])
        imports.append("import threading" if how.startswith("threading")
                       else f"from threading import {how[:-2]}")
        init2.insert(rng.randint(0, 2), f"self._guard = {how}")
        probe2 = ["with self._guard:", '    return "locked " + ' + common]
        case.notes.append(f"self._guard = {how}")
    elif base == "derived-container":
        kind = rng.choice(["dict-literal", "dict-call", "list", "ordered"])
        k += 1   # read as a factor: 1 would observe like v1
        if kind == "dict-literal":
            value, read = '{"a": %d, "b": %d}' % (k, k + 1), 'self.table.get("a", 0)'
        elif kind == "dict-call":
            value, read = f"dict(a={k}, b={k + 1})", 'self.table.get("b", 0)'
        elif kind == "list":
            value, read = f"[{k}, {k + 1}]", "self.table[x % 2]"
        else:
            imports.append("import collections")
            value, read = f'collections.OrderedDict([("a", {k})])', 'self.table["a"]'
        init2.insert(rng.randint(0, 2), f"self.table = {value}")
        probe2 = ['return "%s:%d" % (self.name, x + len(self.items) * ' + read + ")"]
        case.notes.append(f"self.table = {value}, read by {read}")
    elif base == "cache":
        init2.append("self._cache = {}")
        probe2 = ["if x in self._cache:", '    return "hit " + self._cache[x]',
                  "value = " + common, "self._cache[x] = value", 'return "miss " + value']
        hook = "obj._cache = {}"
        case.notes.append("self._cache = {} filled by probe()")
    elif base == "counter":
        init2.append("self.n = 0")
        feed2 = ["self.items.append(x)", "self.n += 1", "return len(self.items)"]
        probe2 = ['return "%s n=%d" % (' + common + ", self.n)"]
        hook = "obj.n = len(obj.items)"
        case.notes.append("self.n counted by feed()")
    elif base == "flag":
        start1 = ['self.items.append("start")', 'return "started"']
        start2 = ['self.items.append("start")', "self.ready = True", 'return "started"']
        init2.append("self.ready = False")
        probe2 = ["if not self.ready:", '    return "not ready"'] + probe1
        hook = 'obj.ready = "start" in obj.items'
        case.notes.append("self.ready set by start()")
    elif base == "ctor-arg":
        if ctor_size:
            params1 = params2 = "self, name, size=2"
            init1 = init1 + ['self.label = "%s/%d" % (name, size)']
            init2 = init1 + ["self.size = size"]
            probe2 = ['return "%s size=%d" % (' + common + ", self.size)"]
            hook = 'obj.size = int(obj.label.rsplit("/", 1)[1])'
            case.notes.append("self.size = size (a constructor argument)")
        elif ctor_kind == "local":
            init2 = init1 + ["width = len(name)", "self.width = width"]
            probe2 = ['return "%s width=%d" % (' + common + ", self.width)"]
            hook = "obj.width = len(obj.name)"
            case.notes.append("self.width = width (a local of __init__)")
        else:
            init2 = init1 + ["self.key = name.upper()"]
            probe2 = ['return "%s key=%s" % (' + common + ", self.key)"]
            hook = "obj.key = obj.name.upper()"
            case.notes.append("self.key = name.upper()")
    if not start1:
        start1 = start2 = ['return "started"']

    sub_init = rng.random() < 0.4
    has_sub = rng.random() < 0.7

    def module(params, init, feed, start, probe) -> str:
        out = list(heads) + imports + ([""] if imports else []) + consts + \
            ([""] if consts else []) + ["", f"class {C}:",
                                         f"    def __init__({params}):"]
        out += _ind(init, 8) + ["", "    def feed(self, x):"] + _ind(feed, 8)
        out += ["", "    def start(self):"] + _ind(start, 8)
        out += ["", "    def probe(self, x):"] + _ind(probe, 8)
        if has_sub:
            out += ["", "", f"class {sub}({C}):"]
            if sub_init:
                if ctor_size:
                    out += ["    def __init__(self, name, size=3):",
                            "        super().__init__(name, size)"]
                else:
                    out += ["    def __init__(self, name):", "        super().__init__(name)"]
                out += ['        self.tag = "sub"', ""]
            out += ["    def describe(self):", '        return "sub " + self.name']
        args = '"dflt", 4' if ctor_size else '"dflt"'
        out += ["", "", f"DEFAULT = {C}({args})", f'REGISTRY = {{"main": {C}("reg")}}', ""]
        return "\n".join(out)

    attr = {"derived-kwparam": "limit", "derived-kwonly": "limit", "derived-const": "limit",
            "derived-const-rebound": "limit", "derived-lock": "_guard",
            "derived-container": "table", "cache": "_cache", "counter": "n", "flag": "ready",
            "ctor-arg": {"size": "size", "upper": "key", "local": "width"}.get(ctor_kind)}[base]
    if rng.random() < 0.2:   # a private name: the compiler mangles it to _C__name
        private = "__" + attr.lstrip("_")
        init2, feed2, start2, probe2 = (_rename(x, "self", attr, private)
                                        for x in (init2, feed2, start2, probe2))
        hook = _rename([hook], "obj", attr, f"_{C}{private}")[0]
        case.notes.append(f"as self.{private}")
        case.patterns.append("mangled-private")
    case.v1 = module(params1, init1, feed1, start1, probe1)
    case.v2 = module(params2, init2, feed2, start2, probe2)
    if hook:
        if shape.endswith("+hook"):
            case.hooks = "\n".join([
                '"""The reviewed migration for %s (generated)."""' % shape, "", "",
                "def _migrate(obj):", "    " + hook, "", "",
                "def _back(obj):",
                '    """Nothing to give back: v1 neither reads nor keeps it (a revert migration',
                '    runs while the fixed code still reads it, so nothing is removed)."""',
                "", "",
                f'MIGRATIONS = {{"{case.pkg}.core:{C}": _migrate}}',
                f'REVERT_MIGRATIONS = {{"{case.pkg}.core:{C}": _back}}',
                ""])

    # the objects, and the routes the driver reaches them by
    objects = []
    routes = ["state", "list", "dict", "closure", "thread", "copy"]
    for i in range(rng.randint(2, 5)):
        cls = sub if has_sub and rng.random() < 0.4 else C
        args: List[Any] = [f"o{i}"]
        if ctor_size and rng.random() < 0.6:
            args.append(rng.randint(1, 4))
        objects.append({"name": f"o{i}", "cls": cls, "args": args,
                        "feeds": rng.randint(0, 3), "start": rng.random() < 0.5,
                        "via": rng.choice(routes)})
    if not any(o["via"] == "state" for o in objects):
        objects[0]["via"] = "state"
    config = {"pkg": case.pkg, "cls": C, "sub": sub if has_sub else None,
              "objects": objects, "module_objs": rng.random() < 0.8,
              "module_feeds": rng.randint(0, 2),
              "roundtrip": not lock and rng.random() < 0.6,
              "old_pickle": base in DERIVED and not lock and rng.random() < 0.6,
              "xs": [0, 1, 0, 2, 3, 1],
              "rebind": k + 2 if base == "derived-const-rebound" else None}
    case.notes.append(f"class {C}" + (f", subclass {sub}" + (" with __init__" if sub_init
                                                               else "") if has_sub else "")
                      + ", routes " + ",".join(sorted({o["via"] for o in objects}))
                      + (", module-level" if config["module_objs"] else "")
                      + (", pickle round trip" if config["roundtrip"] else "")
                      + (", pickle from before" if config["old_pickle"] else ""))
    if config["module_objs"] and config["module_feeds"] and base in MIGRATION:
        case.patterns.append("module-rebuilt")
    case.driver = OBJECT_DRIVER.replace("CONFIG_JSON", json.dumps(config, indent=1))


OBJECT_DRIVER = '''"""Generated by tests/generated/gen_objects.py: objects built before the patch.

Every phase calls every object through every route; mutable state (lists, dicts, ints,
strings) is saved before and restored after, so each phase starts from the same state and
what is observed depends only on the code in place.
"""

import copy
import importlib
import json
import pickle
import queue
import threading

CONFIG = json.loads(r"""CONFIG_JSON""")


def _worker(inbox):
    while True:
        fn, arg, outbox = inbox.get()
        outbox.put(fn(arg))


def _make(mod, spec):
    obj = getattr(mod, spec["cls"])(*spec["args"])
    for f in range(spec["feeds"]):
        obj.feed(f)
    if spec["start"]:
        obj.start()
    return obj


def setup():
    mod = importlib.import_module(CONFIG["pkg"] + ".core")
    state = {"mod": mod, "state": {}, "list": [], "dict": {}, "closure": {}, "thread": {},
             "copy": {}}
    for spec in CONFIG["objects"]:
        obj = _make(mod, spec)
        via = spec["via"]
        if via == "list":
            state["list"].append(obj)
        elif via == "closure":
            state["closure"][spec["name"]] = (lambda o: (lambda: o))(obj)
        else:
            state[via][spec["name"]] = obj
    if CONFIG["rebind"] is not None:
        mod.configure(CONFIG["rebind"])   # the application reconfigures after building
    if CONFIG["module_objs"]:
        for obj in (mod.DEFAULT, mod.REGISTRY["main"]):
            for f in range(CONFIG["module_feeds"]):
                obj.feed(f)
    if CONFIG["old_pickle"]:
        state["frozen"] = pickle.dumps(_make(mod, CONFIG["objects"][0]))
    inbox = queue.Queue()
    threading.Thread(target=_worker, args=(inbox,), daemon=True).start()
    state["inbox"] = inbox
    return state


def _attempt(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return "<exc %s: %s>" % (type(exc).__name__, exc)


def _save(obj):
    return {k: copy.copy(v) for k, v in vars(obj).items()
            if isinstance(v, (list, dict, int, str))}


def _restore(obj, saved):
    for k, v in saved.items():
        vars(obj)[k] = v


def _calls(obj):
    saved = _save(obj)
    out = [_attempt(obj.probe, x) for x in CONFIG["xs"]]
    out.append(_attempt(obj.feed, 9))
    out.append(_attempt(obj.probe, 1))
    if hasattr(type(obj), "describe"):
        out.append(_attempt(obj.describe))
    _restore(obj, saved)
    return out


def _in_thread(state, obj):
    outbox = queue.Queue()
    state["inbox"].put((_calls, obj, outbox))
    return outbox.get(timeout=20)


def observe(state):
    mod = state["mod"]
    out = {}
    for name, obj in sorted(state["state"].items()):
        out["state." + name] = _calls(obj)
    for i, obj in enumerate(state["list"]):
        out["list.%d" % i] = _calls(obj)
    for name, obj in sorted(state["dict"].items()):
        out["dict." + name] = _calls(obj)
    for name, get in sorted(state["closure"].items()):
        out["closure." + name] = _calls(get())
    for name, obj in sorted(state["thread"].items()):
        out["thread." + name] = _in_thread(state, obj)
    for name, obj in sorted(state["copy"].items()):
        saved = _save(obj)   # a shallow copy shares the lists of the original
        out["copy." + name] = _calls(copy.copy(obj))
        _restore(obj, saved)
    if CONFIG["module_objs"]:
        out["module.DEFAULT"] = _calls(mod.DEFAULT)
        out["module.REGISTRY"] = _calls(mod.REGISTRY["main"])
    if CONFIG["roundtrip"]:
        first = sorted(state["state"])[0]
        out["roundtrip"] = _calls(pickle.loads(pickle.dumps(state["state"][first])))
    if CONFIG["old_pickle"]:
        out["old_pickle"] = _calls(pickle.loads(state["frozen"]))
    out["fresh"] = _calls(_make(mod, dict(CONFIG["objects"][0], start=False)))
    return out
'''


# -- objects built while patched, read after the revert (direction "revert") ---------------

def _revert_case(rng: random.Random, case: Case) -> None:
    shape = case.shape
    C = rng.choice(CLASSES)
    k = rng.randint(2, 6)
    has_sub = rng.random() < 0.5
    consts: List[str] = []
    init1 = ["self.name = name", "self.items = []"]
    init2 = list(init1)
    feed1 = ["self.items.append(x)", "return len(self.items)"]
    feed2 = list(feed1)
    probe2 = ['return "%s items=%d fixed" % (self.name, len(self.items))']
    if shape == "revert-derived":
        kind = rng.choice(["const", "literal", "list"])
        if kind == "const":
            consts.append(f"STEP = {k}")
            value, read = "STEP + 1", "self.step"
        elif kind == "literal":
            value, read = str(k), "self.step"
        else:
            value, read = f"[{k}, {k + 1}]", "self.step[1]"
        init1.insert(rng.randint(0, 2), f"self.step = {value}")
        probe1 = ['return "%s step=%d" % (self.name, ' + read + ")"]
        case.notes.append(f"v2 drops self.step = {value}")
    else:
        init1.append("self.n = 0")
        feed1 = ["self.items.append(x)", "self.n += 1", "return len(self.items)"]
        probe1 = ['return "%s n=%d" % (self.name, self.n)']
        case.notes.append("v2 drops self.n counted by feed()")
        if shape.endswith("+hook"):
            case.hooks = "\n".join([
                '"""The reviewed migration back for %s (generated)."""' % shape, "", "",
                "def _back(obj):", "    obj.n = len(obj.items)", "", "",
                "MIGRATIONS = {}",
                f'REVERT_MIGRATIONS = {{"{case.pkg}.core:{C}": _back}}', ""])

    def module(init, feed, probe) -> str:
        out = ['"""Generated by tests/generated/gen_objects.py (%s)."""' % shape, ""]
        out += consts + ([""] if consts else [])
        out += ["", f"class {C}:", "    def __init__(self, name):"] + _ind(init, 8)
        out += ["", "    def feed(self, x):"] + _ind(feed, 8)
        out += ["", "    def probe(self, x):"] + _ind(probe, 8)
        if has_sub:
            out += ["", "", f"class Sub{C}({C}):", "    def describe(self):",
                    '        return "sub " + self.name']
        return "\n".join(out + [""])

    if rng.random() < 0.2:   # a private name: the compiler mangles it to _C__name
        attr = "n" if shape.startswith("revert-counter") else "step"
        init1, feed1, probe1 = (_rename(x, "self", attr, "__" + attr)
                                for x in (init1, feed1, probe1))
        case.hooks = _rename([case.hooks], "obj", attr, f"_{C}__{attr}")[0]
        case.notes.append(f"as self.__{attr}")
        case.patterns.append("mangled-private")
    case.v1 = module(init1, feed1, probe1)
    case.v2 = module(init2, feed2, probe2)
    config = {"pkg": case.pkg, "classes": [C] + ([f"Sub{C}"] if has_sub else []),
              "feeds": rng.randint(0, 3)}
    case.notes.append(f"class {C}" + (" and a subclass" if has_sub else "")
                      + f", {config['feeds']} feeds, one more object per phase")
    case.driver = REVERT_DRIVER.replace("CONFIG_JSON", json.dumps(config))


REVERT_DRIVER = '''"""Generated by tests/generated/gen_objects.py: objects built while patched.

Each phase builds one more object (and feeds it), then calls all of them: the object built
while the patch is applied is called by the restored code after the revert.
"""

import importlib
import json

CONFIG = json.loads(r"""CONFIG_JSON""")


def setup():
    return {"mod": importlib.import_module(CONFIG["pkg"] + ".core"), "made": []}


def _attempt(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return "<exc %s: %s>" % (type(exc).__name__, exc)


def observe(state):
    n = len(state["made"])
    cls = getattr(state["mod"], CONFIG["classes"][n % len(CONFIG["classes"])])
    obj = cls("m%d" % n)
    for f in range(CONFIG["feeds"]):
        obj.feed(f)
    state["made"].append(obj)
    return [_attempt(m.probe, 1) for m in state["made"]]
'''


# -- frames of old callers of a changed callee ------------------------------------------

def _frame_case(rng: random.Random, case: Case) -> None:
    _, holder, kind = case.shape.split("-")
    f = rng.choice(FUNCS)
    lim = rng.randint(2, 5)
    caller = CALLERS[holder]
    deep = rng.random() < 0.5   # the old frame is suspended below a call of its own
    if kind == "defaulted":
        callee1 = [f"def {f}(s):", "    return s.strip()"]
        callee2 = [f"def {f}(s, limit={lim}):", "    return s.strip()[:limit]"]
        use1, use2 = [f"value = {f}(item)"], [f"value = {f}(item, {lim})"]
    elif kind == "required":
        callee1 = [f"def {f}(s):", "    return s.strip()"]
        callee2 = [f"def {f}(s, limit):", "    return s.strip()[:limit]"]
        use1, use2 = [f"value = {f}(item)"], [f"value = {f}(item, {lim})"]
    elif kind == "kwrenamed":
        callee1 = [f'def {f}(s, fill="-"):', '    return s.strip().replace(" ", fill)']
        callee2 = [f'def {f}(s, pad="."):', '    return s.strip().replace(" ", pad)']
        use1, use2 = [f'value = {f}(item, fill="-")'], [f'value = {f}(item, pad=".")']
    elif kind == "removed":
        callee1 = [f"def {f}(s, suffix):", "    return s.strip() + suffix"]
        callee2 = [f"def {f}(s):", "    return s.strip().upper()"]
        use1, use2 = [f'value = {f}(item, "!")'], [f"value = {f}(item)"]
    else:  # unpack
        callee1 = [f"def {f}(s):", "    t = s.strip()", "    return t[:1], t[1:]"]
        callee2 = [f"def {f}(s):", "    t = s.strip()", "    return t[:1], t[1:2], t[2:]"]
        use1 = [f"head, rest = {f}(item)", 'value = head + "|" + rest']
        use2 = [f"head, mid, rest = {f}(item)", 'value = head + "|" + mid + "|" + rest']

    route = "self" if holder == "method" else rng.choice(
        ["direct", "direct", "alias", "cross", "modattr"])
    if route in ("cross", "modattr", "alias") and kind != "defaulted":
        case.patterns.append("indirect-callee")

    def module(callee: List[str], use: List[str]) -> str:
        out = ['"""Generated by tests/generated/gen_objects.py (%s)."""' % case.shape, "", ""]
        if route == "self":   # the callee is a method too, called through self
            callee = [callee[0].replace("(s", "(self, s")] + callee[1:]
            use = [u.replace(f" {f}(", f" self.{f}(") for u in use]
        elif route == "direct":
            out += callee + ["", ""]
        elif route == "alias":
            out += callee + ["", "", f"_{f} = {f}", "", ""]
            use = [u.replace(f" {f}(", f" _{f}(") for u in use]
        elif route == "cross":
            out[1:1] = [f"from .text import {f}"]
        else:
            out[1:1] = ["from . import text"]
            use = [u.replace(f" {f}(", f" text.{f}(") for u in use]
        if holder == "gen" and deep:
            out += ["def _one(value):", "    yield value", "", "",
                    f"def {caller}(items):", "    for item in items:"] + _ind(use, 8) + \
                ["        yield from _one(value)"]
        elif holder == "gen":
            out += [f"def {caller}(items):", "    for item in items:"] + _ind(use, 8) + \
                ["        yield value"]
        elif holder == "method":
            out += ["class Reader:", "    def __init__(self, items):",
                    "        self.items = items", ""] + _ind(callee, 4) + [
                    "", "    def stream(self):", "        for item in self.items:"] + \
                _ind(use, 12) + ["            yield value"]
        elif holder == "coro":
            out += ["class Tick:", "    def __await__(self):", '        yield "tick"', "", ""]
            if deep:
                out += ["async def _pause():", "    await Tick()", "", ""]
            out += [f"async def {caller}(items, out):", "    for item in items:"] + \
                _ind(use, 8) + ["        out.append(value)",
                                "        await " + ("_pause()" if deep else "Tick()")]
        elif holder == "agen":
            out += [f"async def {caller}(items):", "    for item in items:"] + _ind(use, 8) + \
                ["        yield value"]
        else:
            if deep:
                out += ["def _wait(inbox):", "    return inbox.get()", "", ""]
            out += [f"def {caller}(inbox, outbox):", "    while True:",
                    "        item = " + ("_wait(inbox)" if deep else "inbox.get()")] + \
                _ind(use, 8) + ["        outbox.put(value)"]
        out += ["", "", "def batch(items):"]
        if holder == "method":
            out += ["    return list(Reader(items).stream())", ""]
        else:
            out += ["    got = []", "    for item in items:"] + _ind(use, 8) + \
                ["        got.append(value)", "    return got", ""]
        return "\n".join(out)

    case.v1 = module(callee1, use1)
    case.v2 = module(callee2, use2)
    if route in ("cross", "modattr"):
        head = ['"""Generated by tests/generated/gen_objects.py: the callee."""', "", ""]
        case.others["text"] = ("\n".join(head + callee1 + [""]),
                               "\n".join(head + callee2 + [""]))
    items = [" w%d x%d yz " % (i, rng.randint(0, 99)) for i in range(12)]
    config = {"pkg": case.pkg, "holder": holder, "caller": caller, "items": items,
              "before": rng.randint(1, 3)}
    case.notes.append(f"{f}() {kind}, old {caller}() alive in a {holder}"
                      + (" (suspended below a call)" if deep and holder != "agen" else "")
                      + f", called {route}"
                      + ", "
                      f"{config['before']} items taken before the patch")
    case.driver = FRAME_DRIVER.replace("CONFIG_JSON", json.dumps(config))


FRAME_DRIVER = '''"""Generated by tests/generated/gen_objects.py: an old caller alive across the patch.

Each phase takes one more item from the caller's frame that was started before the patch
(a suspended generator, a coroutine driven by send(), an async generator, or a thread
looping on a queue), and runs the batch path on fresh code.
"""

import importlib
import json
import queue
import threading

CONFIG = json.loads(r"""CONFIG_JSON""")


def _attempt(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return "<exc %s: %s>" % (type(exc).__name__, exc)


def _anext(agen):
    step = agen.__anext__()
    try:
        step.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the async generator awaited")


def setup():
    mod = importlib.import_module(CONFIG["pkg"] + ".core")
    fn = getattr(mod, CONFIG["caller"], None)
    state = {"mod": mod, "out": []}
    holder = CONFIG["holder"]
    if holder == "gen":
        state["frame"] = fn(CONFIG["items"])
    elif holder == "method":
        state["frame"] = mod.Reader(CONFIG["items"]).stream()
    elif holder == "coro":
        state["frame"] = fn(CONFIG["items"], state["out"])
    elif holder == "agen":
        state["frame"] = fn(CONFIG["items"])
    else:
        state["inbox"], state["outbox"] = queue.Queue(), queue.Queue()
        threading.Thread(target=fn, args=(state["inbox"], state["outbox"]),
                         daemon=True).start()
        state["left"] = list(CONFIG["items"])
    state["taken"] = [_take(state) for _ in range(CONFIG["before"])]
    return state


def _take(state):
    holder = CONFIG["holder"]
    if holder in ("gen", "method"):
        return next(state["frame"])
    if holder == "coro":
        state["frame"].send(None)
        return state["out"][-1]
    if holder == "agen":
        return _anext(state["frame"])
    state["inbox"].put(state["left"].pop(0))
    return state["outbox"].get(timeout=5)   # a dead worker (TypeError) answers nothing


def observe(state):
    return {"next": _attempt(_take, state),
            "batch": _attempt(state["mod"].batch, [" fresh  one ", " ab cd "])}
'''


def generate(seed: int) -> Case:
    shape = SHAPES[seed % len(SHAPES)]
    rng = random.Random(f"gen_objects {seed}")
    case = Case(seed, shape)
    if shape in OBJECT_SHAPES:
        _object_case(rng, case)
    elif shape in REVERT_SHAPES:
        _revert_case(rng, case)
    else:
        _frame_case(rng, case)
    return case


# -- running ---------------------------------------------------------------------------------

def run(case_dir: Path, root: Path, mode: str, patch: Optional[Path] = None) -> Dict[str, Any]:
    """One run of tests/cases/_runner.py; a crash is returned in the report, not raised."""
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1")
    args = [sys.executable, str(RUNNER), str(case_dir), str(root), mode]
    if patch is not None:
        args.append(str(patch))
    try:
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=90,
                              cwd=str(case_dir))
    except subprocess.TimeoutExpired:
        return {"crash": f"{mode} run timed out", "phases": []}
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"crash": proc.stderr, "phases": []}


def _code_in(text: str) -> str:
    found = re.findall(r"SUT-E\d{3}", text)
    return found[-1] if found else "no code"


def _first_diff(want: Any, got: Any) -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        for k in list(want) + [k for k in got if k not in want]:
            if want.get(k, "<missing>") != got.get(k, "<missing>"):
                return (f"{k!r}: fresh {json.dumps(want.get(k, '<missing>'))[:200]} / "
                        f"patched {json.dumps(got.get(k, '<missing>'))[:200]}")
    return f"fresh {json.dumps(want)[:200]} / patched {json.dumps(got)[:200]}"


def _has_exc(value: Any) -> bool:
    return "<exc " in json.dumps(value)


def check(seed: int, outdir: Path) -> Dict[str, Any]:
    """Generate SEED, build it, run it and classify the outcome (never raises).

    outcome: applied-equal | refused | SILENT-DIVERGENCE | unexpected | generator;
    ``known-bug`` replaces a failing outcome of a shape in KNOWN_BUGS."""
    res = _check(seed, outdir)
    if set(res["patterns"]) & set(KNOWN_BUGS) \
            and res["outcome"] in ("SILENT-DIVERGENCE", "unexpected"):
        res["bug"] = res["outcome"]
        res["outcome"] = "known-bug"
    return res


def _check(seed: int, outdir: Path) -> Dict[str, Any]:
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from suture.tooling.build import BuildRefused, build_trees
    from suture.tooling.build.sources import materialize

    case = generate(seed)
    res: Dict[str, Any] = {"seed": seed, "shape": case.shape, "expect": case.expect,
                           "outcome": "generator", "code": "", "detail": "",
                           "case": case.describe(), "patterns": case.patterns}
    d = case.write(Path(outdir) / f"o{seed}")
    try:
        v1 = run(d, d / "v1", "fresh")
        v2 = run(d, d / "v2", "fresh")
        for name, rep in (("v1", v1), ("v2", v2)):
            if "crash" in rep:
                res["detail"] = f"fresh {name} crashed: {rep['crash'][-300:]}"
                return res
        v1, v2 = v1["phases"], v2["phases"]
        if v1 == v2:
            res["detail"] = "fresh v1 and v2 observe the same"
            return res
        if any(v1[i] != v1[0] or v2[i] != v2[0] for i in (1, 2, 3)) \
                and not case.shape.startswith(("revert", "frame")):
            res["detail"] = "observe() is not stable across phases"
            return res
        if _has_exc(v1) or _has_exc(v2):
            res["detail"] = "a fresh run observed an exception"
            return res
        hooks = d / "hooks.py" if case.hooks else None
        try:
            report = build_trees(materialize(str(d / "v1")), materialize(str(d / "v2")),
                                 hooks=hooks, refuse=True)
        except BuildRefused as exc:
            res.update(outcome="unexpected", code=exc.code,
                       detail=f"the builder refused: {str(exc)[:300]}")
            return res
        bad = [c for c in report.changes() if c["verdict"] not in ("live", "caveat")]
        if bad:
            res.update(outcome="unexpected", detail=f"verdicts {bad}"[:300])
            return res
        patch = d / "case.suture"
        patch.write_bytes(report.data)
        want = case.expect["outcome"]
        if want == "refused":
            got = run(d, d / "v1", "refused", patch)
            if "crash" in got:
                res.update(outcome="unexpected", detail=got["crash"][-300:])
                return res
            if got["refused"] is None:
                pass   # applied: classified below as a patched run
            else:
                res.update(outcome="refused", code=got["refused"])
                if got["refused"] != case.expect["code"]:
                    res.update(outcome="unexpected", detail=f"refused with {got['refused']}, "
                               f"want {case.expect['code']}: {got['events'][-1][:200]}")
                elif got["phases"] != v1:
                    res.update(outcome="unexpected", detail="a refused patch changed the "
                               "process: " + _first_diff(v1[1], got["phases"][1]))
                return res
        got = run(d, d / "v1", "patched", patch)
        if "crash" in got:
            code = _code_in(got["crash"])
            at = "revert" if len(got.get("events", [])) == 1 else "apply"
            res.update(outcome="refused", code=code + (" (revert)" if at == "revert" else ""),
                       detail=got["crash"].strip().splitlines()[-1][:300])
            ph = got.get("phases", [])
            if want == "revert-refused" and at == "revert" and code == case.expect["code"]:
                if ph[:2] != [v1[0], v2[1]]:
                    res.update(outcome="SILENT-DIVERGENCE", code="before the revert",
                               detail=_first_diff(v2[1], ph[1] if len(ph) > 1 else None))
                return res
            res["outcome"] = "unexpected"
            return res
        for i, w, label in ((0, v1[0], "before apply"), (1, v2[1], "after apply"),
                            (2, v1[2], "after revert"), (3, v2[3], "after re-apply")):
            if got["phases"][i] != w:
                res.update(outcome="SILENT-DIVERGENCE", code=label,
                           detail=_first_diff(w, got["phases"][i]))
                return res
        if want != "applied":
            res.update(outcome="unexpected", code="applied",
                       detail=f"applied and equal, but expected {want} {case.expect['code']}")
            return res
        res["outcome"] = "applied-equal"
        return res
    except Exception as exc:  # the checker itself: say so, keep sweeping
        res.update(outcome="generator", detail=f"{type(exc).__name__}: {exc}"[:300])
        return res


def _sweep_one(args: Tuple[int, str]) -> Dict[str, Any]:
    seed, keep = args
    tmp = Path(tempfile.mkdtemp(prefix=f"osweep{seed}_"))
    try:
        res = check(seed, tmp)
        if res["outcome"] in ("SILENT-DIVERGENCE", "unexpected", "generator", "known-bug") \
                and keep:
            dest = Path(keep) / f"o{seed}"
            if not dest.exists():
                shutil.copytree(tmp / f"o{seed}", dest)
            res["kept"] = str(dest)
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


COLS = ["applied-equal", "refused", "SILENT-DIVERGENCE", "unexpected", "generator",
        "known-bug"]


def table(results: List[Dict[str, Any]]) -> str:
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["shape"], []).append(r)
    out = [f"{len(results)} pairs", "",
           "| shape | expect | pairs | " + " | ".join(COLS) + " | refusal rate | codes |",
           "|---|---|---|" + "---|" * len(COLS) + "---|---|"]
    order = {s: i for i, s in enumerate(SHAPES)}
    for k in sorted(groups, key=lambda s: order.get(s, 999)):
        rs = groups[k]
        counts = [sum(r["outcome"] == c for r in rs) for c in COLS]
        codes: Dict[str, int] = {}
        for r in rs:
            if r["outcome"] == "refused":
                codes[r["code"]] = codes.get(r["code"], 0) + 1
        e = rs[0]["expect"]
        want = e["outcome"] + (" " + e["code"] if e.get("code") else "")
        rate = f"{100.0 * counts[1] / len(rs):.0f}%"
        out.append(f"| {k} | {want} | {len(rs)} | " + " | ".join(map(str, counts)) +
                   f" | {rate} | " + ", ".join(f"{c} x{n}" for c, n in sorted(codes.items()))
                   + " |")
    tot = [sum(r["outcome"] == c for r in results) for c in COLS]
    out.append(f"| all | | {len(results)} | " + " | ".join(map(str, tot)) + " | | |")
    return "\n".join(out)


def sweep(start: int, n: int, jobs: int, out: Optional[Path], keep: str) -> int:
    import multiprocessing
    results: List[Dict[str, Any]] = []
    sink = open(out, "w", encoding="utf-8") if out else None
    try:
        with multiprocessing.Pool(jobs) as pool:
            for res in pool.imap_unordered(_sweep_one,
                                           [(s, keep) for s in range(start, start + n)]):
                results.append(res)
                if sink:
                    sink.write(json.dumps(res, sort_keys=True) + "\n")
                    sink.flush()
                if res["outcome"] in ("SILENT-DIVERGENCE", "unexpected", "generator"):
                    print(f"{res['outcome']}: seed {res['seed']} [{res['shape']}] "
                          f"{res['code']} {res['detail']}\n    case: {res['case']}", flush=True)
    finally:
        if sink:
            sink.close()
    print(table(sorted(results, key=lambda r: r["seed"])))
    return 1 if any(r["outcome"] == "SILENT-DIVERGENCE" for r in results) else 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seed", type=int, nargs="?", default=0,
                   help="the seed (with --sweep: the first seed)")
    p.add_argument("outdir", type=Path, nargs="?")
    p.add_argument("--sweep", type=int, metavar="N", default=None,
                   help="check N seeds from SEED on and print a table by shape")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--results", type=Path, default=None, help="--sweep: JSON lines here")
    p.add_argument("--keep", default="", help="--sweep: copy failing cases under this folder")
    p.add_argument("--check", action="store_true", help="with OUTDIR: also run the check")
    args = p.parse_args(argv)
    if args.sweep is not None:
        return sweep(args.seed, args.sweep, args.jobs, args.results, args.keep)
    if args.outdir is None:
        p.error("OUTDIR is required")
    if args.check:
        res = check(args.seed, args.outdir)
        print(json.dumps(res, indent=1))
        return 0 if res["outcome"] in ("applied-equal", "refused") else 1
    case = generate(args.seed)
    print(case.write(args.outdir / f"o{args.seed}"))
    print(f"expect: {json.dumps(case.expect)}")
    print(f"  {case.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

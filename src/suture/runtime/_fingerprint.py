"""Structural fingerprints of a module's state, for the fresh-import equivalence check.

Enters: a module's namespace (its ``__dict__``) and its name. Leaves: for every *path*
reachable from the module's globals (module attributes, the members of classes defined
in the module, the ``__dict__`` and slots of instances, the items of containers, to a
bounded depth), a fingerprint: a short digest of the value's structure. The builder
records them for the baseline and the fixed release, each imported in fresh interpreters
(tooling/build/state.py); the engine computes them again in the live process, before and
after the commit, and compares (docs/engine.md, "State equivalence").

Invariants:
* **No application code runs.** Values are read only through C-level slots of exact
  built-in types: the ``__dict__`` getset and member descriptors found on the type's MRO,
  ``dict.items``/``list``/``tuple`` storage of the built-in bases. Nothing here calls
  ``__eq__``, ``__hash__``, ``__repr__``, ``__getattr__``, ``__iter__`` of a user type or a
  property; ``repr`` is applied to exact ``int``/``float``/``complex``/``bool``/``None``
  only.
* **Same structure, same fingerprint, in any process.** No ids, addresses or hash
  orders: sets and dicts are fingerprinted order-free (an entry a patch adds lands last
  in a live dict; a fresh import may put it anywhere), the members of a class and the
  attributes of an instance by name, cycles by their distance up the current path. A value
  that is unstable anyway (a time, a random number) differs between two imports of the
  same release; the builder drops such paths.
* **Functions by name, not bytecode.** A function is fingerprinted by its module and
  qualified name, plus its defaults and attributes, never by its bytecode, which differs
  between Python versions (which code each live function runs is checked separately:
  run-pre matching on code structure, engine/prepare.py); code objects by name. So a
  registry that swaps ``f`` for ``g`` differs; a body that changed in place, or moved,
  does not here. Where a name is defined by several ``def``s (``lined``: a class-body
  ``if``), which one runs is told by its ordinal among the defs of that name in the
  source its code came from, and its first line (``@k:line``): two releases may bind
  different defs that start on the same line.
* **This module's state.** An instance of another package's class is fingerprinted by
  its type and its plain (atom) attributes only: a logger's manager and every logger of
  the process are logging's state, not the module's.
* **Bounded.** Paths deeper than ``DEPTH``, or below a container of more than
  ``FANOUT`` items, are not recorded; their content still counts in the fingerprint of
  the path above. A walk that meets more than ``BUDGET`` values raises ``TooLarge``.

Self-contained (standard library, no relative imports): the builder loads this file by
path into the interpreters it imports releases in, without importing Suture there. That is
also why it is one file of about 620 lines, over the ~500-line rule of thumb: the walk,
the navigation that must agree with it (``value_at``, ``fingerprint_at``) and the
literals (values the manifest carries, read by the same C-level accessors) travel as one
file into those interpreters.
"""

from __future__ import annotations

import hashlib
import re
import types
from typing import AbstractSet, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

DEPTH = 5          # path segments below a module global (the global itself is 1)
FANOUT = 256       # containers with more items are one path (their items still count)
BUDGET = 400_000   # values visited per walk

# Module globals that name where the module was loaded from, not what it holds.
SKIP_GLOBALS = frozenset(("__builtins__", "__file__", "__cached__", "__loader__", "__spec__",
                          "__path__", "__name__", "__package__",
                          # annotations (below); 3.14: what computes them, its bookkeeping
                          "__annotations__", "__annotate__", "__conditional_annotations__"))
# Class members that caches fill at run time (copyreg, abc), or that are descriptors of
# the layout itself.
# Also what some Python versions' compilers add to every class (3.13: where it starts,
# which self.X its methods assign; 3.14: the annotations function and its cache), so that
# a patch built on one version verifies on another.
SKIP_MEMBERS = frozenset(("__dict__", "__weakref__", "__slotnames__", "_abc_impl",
                          "_abc_registry", "_abc_cache", "_abc_negative_cache",
                          "_abc_negative_cache_version", "__firstlineno__",
                          "__static_attributes__", "__annotate_func__",
                          "__annotations_cache__", "__conditional_annotations__",
                          # Annotations are not state the check holds: libraries store them
                          # in their own forms (NamedTuple turns strings into ForwardRef),
                          # so a patched and a fresh class would differ in form only. What
                          # is derived from them at class creation (dataclass fields) is.
                          "__annotations__"))

Segment = Tuple[str, Any]   # ("g", name) global, ("a", name) attribute, ("s", name) slot,
#                             ("k", key) dict item by str/int key, ("n", i) i-th dict item,
#                             ("i", i) sequence item
Entry = Tuple[List[Segment], str, str]   # segments, fingerprint, short description
# Qualified names defined by several defs: each with the first lines of its defs in the
# source the functions' code came from (one release's), in source order, told apart as
# ``@k:line``; or a plain set of names (patches built before the lines were recorded),
# told apart by ``@line`` only.
Lined = Union[AbstractSet[str], Mapping[str, Sequence[int]]]

_DICT_OF = type.__dict__["__dict__"]                 # class -> mappingproxy (C getset)
_QUALNAME = type.__dict__["__qualname__"]            # the C getters of type itself: no
_TYPE_MODULE = type.__dict__["__module__"]           # metaclass code runs
_BASES_OF = type.__dict__["__bases__"]
_MRO = type.__dict__["__mro__"]
_MODULE_DICT = _DICT_OF.__get__(types.ModuleType)["__dict__"]
_MEMBER = types.MemberDescriptorType
_GETSET = types.GetSetDescriptorType
_PATTERN = type(re.compile(""))
_ATOMS = (int, float, complex, bool, type(None))
_BUILTIN = (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
            types.MethodDescriptorType, types.MethodWrapperType, types.ClassMethodDescriptorType)
MISSING = object()


def isa(obj: Any, cls: Any) -> bool:
    """``isinstance`` without its fallback to ``obj.__class__``, which runs the object's
    ``__getattribute__``: the type's own MRO (C level) decides."""
    return issubclass(type(obj), cls)


ROOT = "\x00root\x00"   # what the directory a package was imported from reads as


def _loaded() -> Dict[str, Any]:
    import sys
    return sys.modules


class TooLarge(Exception):
    """The module's state is larger than ``BUDGET`` values: not fingerprinted."""


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()


def _type_name(t: type) -> str:
    try:
        module = _TYPE_MODULE.__get__(t)
    except Exception:  # noqa: BLE001 - no __module__ at all
        module = "?"
    return f"{module if type(module) is str else '?'}.{_QUALNAME.__get__(t)}"


# Types of class members that are no state of the class: engine/_objects.LazyAttr (an
# attribute that objects built before a patch get on first read) registers itself here.
PER_OBJECT: List[type] = []


def _class_dict(cls: type) -> Dict[str, Any]:
    own = _DICT_OF.__get__(cls)
    if PER_OBJECT:
        return {k: v for k, v in own.items() if type(v) not in PER_OBJECT}
    return dict(own)


def _instance_parts(obj: Any) -> Tuple[Optional[Dict[str, Any]], List[Tuple[str, Any]]]:
    """(the instance ``__dict__`` or None, [(slot name, value or MISSING)]) read through the
    C descriptors of ``type(obj)``'s MRO; no Python-level attribute access."""
    instance_dict: Optional[Dict[str, Any]] = None
    slots: List[Tuple[str, Any]] = []
    lazy: List[Any] = []
    seen = set()
    for klass in _MRO.__get__(type(obj)):
        for name, desc in _DICT_OF.__get__(klass).items():
            if name in seen:
                continue
            seen.add(name)
            kind = type(desc)
            if kind in PER_OBJECT:
                lazy.append((name, desc))
            elif kind is _GETSET and name == "__dict__" and instance_dict is None:
                try:
                    d = desc.__get__(obj, type(obj))
                except Exception:  # noqa: BLE001 - a C getter that refuses: no dict
                    continue
                if type(d) is dict:
                    instance_dict = d
            elif kind is _MEMBER and name not in SKIP_MEMBERS:
                try:
                    slots.append((name, desc.__get__(obj, type(obj))))
                except AttributeError:
                    slots.append((name, MISSING))
    # what an object built before a patch gets on first read is its state: read it, so
    # that it is there as in an object the fixed release builds
    for name, desc in lazy:
        if instance_dict is not None and name not in instance_dict:
            try:
                desc.__get__(obj, type(obj))
            except Exception:  # noqa: BLE001 - stays absent; its first read will say why
                pass
    slots.sort(key=lambda s: s[0])
    return instance_dict, slots


def _base_content(obj: Any) -> Optional[Tuple[str, Any]]:
    """For an instance of a subclass of a built-in container or atom, its built-in part,
    read through the base type's C methods."""
    o: Any = obj
    if isa(obj, dict):
        return "dict", list(dict.items(o))
    if isa(obj, (list, tuple)):
        base: Any = list if isa(obj, list) else tuple
        return base.__name__, [base.__getitem__(o, i) for i in range(base.__len__(o))]
    if isa(obj, (set, frozenset)):
        kind: Any = set if isa(obj, set) else frozenset
        return "set", list(kind.__iter__(o))
    if isa(obj, str):
        return "str", str.__str__(o)
    if isa(obj, (bytes, bytearray)):
        return "bytes", bytes(memoryview(o))
    if isa(obj, int):
        return "int", int.__repr__(o)
    if isa(obj, float):
        return "float", float.hex(o)
    return None


def _key_segment(key: Any, index: int) -> Segment:
    if type(key) is str or (type(key) is int):
        return ("k", key)
    return ("n", index)


def label(segments: List[Segment]) -> str:
    """``DEFAULT.limit``, ``CONF['x'][0]``, ``REG[#2]``: a path as a reader writes it."""
    out = ""
    for kind, key in segments:
        if kind == "g":
            out += str(key)
        elif kind in ("a", "s"):
            out += f".{key}"
        elif kind == "k":
            out += f"[{key!r}]"
        elif kind == "n":
            out += f"[#{key}]"
        else:
            out += f"[{key}]"
    return out


def describe(value: Any) -> str:
    """A short, safe description of ``value`` for messages (no user ``__repr__``)."""
    t = type(value)
    if t in _ATOMS:
        return repr(value)
    if t is str or t is bytes:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if value is MISSING:
        return "(absent)"
    if t in (list, tuple, dict, set, frozenset):
        return f"{t.__name__} of {len(value)} item(s)"
    if t is types.FunctionType:
        return f"function {value.__qualname__} (line {value.__code__.co_firstlineno})"
    if isa(value, type):
        return f"class {_type_name(value)}"
    if t is _PATTERN:
        return f"re.compile({describe(value.pattern)})"
    if isa(value, types.ModuleType):
        return "module"
    return f"{_type_name(t)} instance"


class _Walk:
    """One walk: fingerprints bottom-up, recording each path until the depth bound."""

    def __init__(self, module: str, record: bool,
                 gone: "frozenset[Tuple[int, Any]]" = frozenset(), root: str = "",
                 alias: Optional[Dict[int, Any]] = None,
                 lined: Lined = frozenset()) -> None:
        self.module = module
        # qualified names defined more than once -> their defs' lines (None: line only)
        self.lined: Dict[str, Optional[Tuple[int, ...]]] = (
            {q: tuple(lines) for q, lines in lined.items()} if isinstance(lined, Mapping)
            else dict.fromkeys(lined))
        self.places: Dict[str, str] = {}
        self.name_places: Dict[str, str] = {}
        # id(object) -> what it stands for: an old method that forwards to the new one is
        # fingerprinted as the new one (engine/prepare.py, forwarders)
        self.alias = alias or {}
        self.root = root   # where the package was imported from: the same text anywhere
        self.record = record
        self.gone = gone   # (id(container), key): bindings counted as already deleted
        self.paths: Dict[str, Entry] = {}
        self.visited = 0
        self.stack: List[int] = []

    def fp(self, value: Any, path: Optional[List[Segment]], depth_left: int,
           owner_qual: str) -> str:
        """The fingerprint of ``value`` seen ``depth_left`` levels above the depth bound.
        ``owner_qual`` is the qualified name a class defined right here would have (a class
        met where it was defined is walked; met anywhere else, it is a reference)."""
        if self.alias:
            value = self.alias.get(id(value), value)
        if type(value) is types.FunctionType:
            # an old method the engine made forward to its new version (prepare.py): it
            # stands for that one, wherever it is met
            kw = value.__kwdefaults__
            if type(kw) is dict and "__suture_forward__" in kw \
                    and "__suture_forward__" in value.__code__.co_varnames:
                value = kw["__suture_forward__"]
        self.visited += 1
        if self.visited > BUDGET:
            raise TooLarge(f"more than {BUDGET} values reachable from module {self.module}")
        text = self._fp(value, path, depth_left, owner_qual)
        fp = _digest(text) if len(text) > 40 else text
        if self.record and path is not None:
            self.paths[label(path)] = (list(path), fp, describe(value))
        return fp

    def _key_segment(self, key: Any, index: int) -> Segment:
        """A dict item by its key; a key under the import root (``sys.path`` entries as keys:
        pkg_resources' ``entry_keys``) with the placeholder, as string values have."""
        seg = _key_segment(key, index)
        if self.root and seg[0] == "k" and type(key) is str and self.root in key:
            return ("k", key.replace(self.root, ROOT))
        if self.root and seg[0] == "k" and type(key) is str and "." in key \
                and key in _loaded():
            return ("k", self.name_place(key))   # a module's name (loggers): by place
        return seg

    def place(self, module: str) -> str:
        """The name of ``module`` as its file under the import root spells it, when it is
        there (a vendored package imported under two names is one place: setuptools 69's
        ``pkg_resources.extern.packaging`` is 70's ``pkg_resources._vendor.packaging``);
        else its name."""
        found = self.places.get(module)
        if found is None:
            found = module
            if self.root:
                import sys
                mod = sys.modules.get(module)
                path = _MODULE_DICT.__get__(mod).get("__file__") if isa(
                    mod, types.ModuleType) else None
                if type(path) is str and path.startswith(self.root + "/") \
                        and path.endswith(".py"):
                    parts = path[len(self.root) + 1:-3].split("/")
                    if parts[-1] == "__init__":
                        parts.pop()
                    if parts and all(p.isidentifier() for p in parts):
                        found = ".".join(parts)
            self.places[module] = found
        return found

    def name_place(self, name: str) -> str:
        """``module_place(name)`` for the name of a loaded module met as a string."""
        found = self.name_places.get(name)
        if found is None:
            found = self.name_places[name] = module_place(name)
        return found

    def type_name(self, t: type) -> str:
        try:
            module = _TYPE_MODULE.__get__(t)
        except Exception:  # noqa: BLE001 - no __module__ at all
            module = "?"
        where = self.place(module) if type(module) is str else "?"
        return f"{where}.{_QUALNAME.__get__(t)}"

    def _children(self, items: List[Tuple[Segment, Any, str]], path: Optional[List[Segment]],
                  depth_left: int, many: bool) -> List[str]:
        out = []
        keep = self.record
        if many:
            self.record = False   # too many items: one path for the container
        try:
            for seg, child, qual in items:
                out.append(self.fp(child, None if path is None else path + [seg],
                                   depth_left - 1, qual))
        finally:
            self.record = keep
        return out

    def _fp(self, value: Any, path: Optional[List[Segment]], depth_left: int,
            owner_qual: str) -> str:
        t = type(value)
        if value is MISSING:
            return "absent"
        if t in _ATOMS:
            return f"{t.__name__}:{value!r}"
        if t is str:
            if self.root and self.root in value:
                value = value.replace(self.root, ROOT)
            elif self.root and "." in value and value in _loaded():
                # a module's name (a logger's, a TypeVar's ``__module__``): by place, as
                # modules are
                value = self.name_place(value)
            return "str:" + (value if len(value) <= 32 else _digest(value))
        if t is bytes:
            return "bytes:" + _digest(value.hex())
        if t is _PATTERN:
            return (f"re:{_digest(repr(type(value.pattern)) + str(value.pattern))}:"
                    f"{int(value.flags)}")
        if t is types.CodeType:
            # as functions are: by name and line (bytecode differs between versions)
            return f"code:{value.co_name}"
        if isa(value, types.ModuleType):
            name = _MODULE_DICT.__get__(value).get("__name__")
            return f"module:{self.place(name) if type(name) is str else '?'}"
        if t in _BUILTIN:
            try:
                qual = _DICT_OF.__get__(t)["__qualname__"].__get__(value, t)
            except Exception:  # noqa: BLE001
                qual = "?"
            return f"builtin:{t.__name__}:{qual if type(qual) is str else '?'}"
        if depth_left <= 0:
            return f"deep:{_type_name(t) if not isa(value, type) else 'class'}"
        me = id(value)
        if me in self.stack:
            return f"cycle:{len(self.stack) - self.stack.index(me)}"
        self.stack.append(me)
        try:
            return self._compound(value, t, path, depth_left, owner_qual)
        finally:
            self.stack.pop()

    def _compound(self, value: Any, t: type, path: Optional[List[Segment]], depth_left: int,
                  owner_qual: str) -> str:
        if t in (list, tuple):
            n = len(value)
            kids = self._children([(("i", i), value[i], "") for i in range(n)], path,
                                  depth_left, n > FANOUT)
            return f"{t.__name__}({','.join(kids)})"
        if t is dict and "__builtins__" in value and type(value.get("__name__")) is str:
            # a module's globals (``def _initialize(g=globals())``): the module is walked
            # where it is a module, not again through every function that holds its dict
            return f"globals:{value['__name__']}"
        if t is dict:
            items = [kv for kv in value.items() if (id(value), kv[0]) not in self.gone] \
                if self.gone else list(value.items())
            kids = self._key_value(items, path, depth_left)
            return f"dict({','.join(sorted(kids))})"
        if t in (set, frozenset):
            kids = sorted(self.fp(v, None, depth_left - 1, "") for v in value)
            return f"set({','.join(kids)})"
        if t is types.FunctionType:
            return self._function(value, path, depth_left)
        if t is types.MethodType:
            return (f"method({self.fp(value.__func__, None, depth_left - 1, '')},"
                    f"{self.type_name(type(value.__self__))})")
        if isa(value, type):
            name = self.type_name(value)
            here = (_DICT_OF.__get__(value).get("__module__") == self.module
                    and _QUALNAME.__get__(value) == owner_qual)
            if not here:
                return f"class:{name}"
            qual = _QUALNAME.__get__(value)
            # by name: a member that a patch adds lands last in the live class's dict
            # ``__module__`` by place, as type names are: a vendored package's classes
            # say the name it was loaded under
            members = [(("a", k), self.place(v) if k == "__module__" and type(v) is str
                        else v, f"{qual}.{k}") for k, v in sorted(
                (kv for kv in _class_dict(value).items() if type(kv[0]) is str
                 and kv[0] not in SKIP_MEMBERS and (id(value), kv[0]) not in self.gone),
                key=lambda kv: kv[0])]
            kids = self._children(members, path, depth_left, False)
            names = [str(k) for (_, k), _, _ in members]
            bases = ",".join(self.type_name(b) for b in _BASES_OF.__get__(value))
            return (f"class:{name}({bases}):{self.type_name(type(value))}{{"
                    + ",".join(f"{n}={k}" for n, k in zip(names, kids)) + "}")
        return self._instance(value, t, path, depth_left)

    def _key_value(self, items: List[Tuple[Any, Any]], path: Optional[List[Segment]],
                   depth_left: int) -> List[str]:
        keys = [self.fp(k, None, depth_left - 1, "") for k, _ in items]
        values = self._children([(self._key_segment(k, i), v, "")
                                 for i, (k, v) in enumerate(items)],
                                path, depth_left, len(items) > FANOUT)
        return [f"{k}:{v}" for k, v in zip(keys, values)]

    def _function(self, fn: Any, path: Optional[List[Segment]], depth_left: int) -> str:
        module = fn.__module__
        parts = [f"fn:{self.place(module) if type(module) is str else '?'}.{fn.__qualname__}"]
        if fn.__qualname__ in self.lined:
            # one of several defs of this name (a class-body ``if``): which one, by its
            # ordinal among them in the source its code came from and the line that source
            # gives it in every Python version (two releases can bind different defs that
            # start on the same line: the line alone would not tell them apart)
            line = fn.__code__.co_firstlineno
            lines = self.lined[fn.__qualname__]
            if lines is None or module != self.module:   # line only (older manifests)
                parts[0] += f"@{line}"
            else:
                parts[0] += f"@{lines.index(line) if line in lines else '?'}:{line}"
        extra: List[Tuple[Segment, Any, str]] = []
        if fn.__defaults__ is not None:
            extra.append((("a", "__defaults__"), fn.__defaults__, ""))
        if fn.__kwdefaults__ is not None:
            extra.append((("a", "__kwdefaults__"), fn.__kwdefaults__, ""))
        attrs = fn.__dict__
        extra += [(("a", k), v, "") for k, v in attrs.items() if k != "__wrapped__"]
        if "__wrapped__" in attrs:
            parts.append("wraps:" + self.fp(attrs["__wrapped__"], None, depth_left - 1, ""))
        kids = self._children(extra, path, depth_left, False)
        return "(".join(parts) + "(" + ",".join(f"{s[1]}={k}" for (s, _, _), k in
                                                   zip(extra, kids)) + ")"

    def _instance(self, obj: Any, t: type, path: Optional[List[Segment]],
                  depth_left: int) -> str:
        parts = [f"obj:{self.type_name(t)}"]
        base = _base_content(obj)
        if base is not None:
            kind, content = base
            if kind == "dict":
                parts.append("dict(" + ",".join(sorted(self._key_value(content, path,
                                                                       depth_left))) + ")")
            elif kind in ("list", "tuple"):
                kids = self._children([(("i", i), v, "") for i, v in enumerate(content)], path,
                                      depth_left, len(content) > FANOUT)
                parts.append(f"{kind}(" + ",".join(kids) + ")")
            elif kind == "set":
                parts.append("set(" + ",".join(sorted(self.fp(v, None, depth_left - 1, "")
                                                      for v in content)) + ")")
            else:
                parts.append(f"{kind}:{_digest(str(content))}")
        try:
            instance_dict, slots = _instance_parts(obj)
        except Exception:  # noqa: BLE001 - an exotic C type: its type is all we say
            return parts[0]
        # An object of another package's class (a logger, a lock, a session) is that
        # package's business beyond its plain attributes: its internals (logging's manager
        # and every logger of the process) are not this module's state. Its attributes are
        # then no paths of their own; those that are not atoms count by their type only.
        tmod = _TYPE_MODULE.__get__(t) if "__module__" in _DICT_OF.__get__(t) else None
        if type(tmod) is str and self.place(tmod).split(".")[0] != \
                self.place(self.module).split(".")[0]:
            named = sorted(((k, v) for k, v in (instance_dict or {}).items() if type(k) is str
                            and (id(obj), k) not in self.gone), key=lambda kv: kv[0]) \
                + [("<" + k, v) for k, v in slots]
            keep, self.record = self.record, False
            try:
                shown = [f"{k}=" + (self.fp(v, None, depth_left - 1, "")
                                    if type(v) in _ATOMS or type(v) in (str, bytes)
                                    else "~" + self.type_name(type(v)))
                         for k, v in named]
            finally:
                self.record = keep
            parts.append("{" + ",".join(shown) + "}")
            return "|".join(parts)
        if instance_dict is not None:
            items = [(("a", k), v, "") for k, v in sorted(
                (kv for kv in instance_dict.items() if type(kv[0]) is str
                 and (id(obj), kv[0]) not in self.gone), key=lambda kv: kv[0])]
            kids = self._children(items, path, depth_left, False)
            parts.append("{" + ",".join(f"{s[1]}={k}" for (s, _, _), k in zip(items, kids)) + "}")
        if slots:
            items = [(("s", k), v, "") for k, v in slots]
            kids = self._children(items, path, depth_left, False)
            parts.append("<" + ",".join(f"{s[1]}={k}" for (s, _, _), k in zip(items, kids)) + ">")
        return "|".join(parts)


def module_state(namespace: Dict[str, Any], module: str, root: str = "",
                 lined: Lined = frozenset()) -> Dict[str, Entry]:
    """Every recorded path of the module whose globals are ``namespace``:
    ``{label: (segments, fingerprint, description)}``."""
    walk = _Walk(module, record=True, root=root, lined=lined)
    for name, value in list(namespace.items()):
        if type(name) is not str or name in SKIP_GLOBALS:
            continue
        walk.fp(value, [("g", name)], DEPTH, name)
    return walk.paths


def process_state(skip: Tuple[str, ...] = ()) -> Dict[str, Dict[str, List[str]]]:
    """Every module of the process, ``{place: {label: [fingerprint, description]}}`` (its
    ``module_state``), each named as its file under its import root spells it (``place``:
    a vendored package loaded under another name is one place): what the builder's dry run
    compares between a patched process and a fresh import of the fixed release, whatever
    module a statement acted on. ``"sys.modules"`` maps every name of ``sys.modules`` to the
    place of its module (aliases: ``requests.packages.urllib3`` is ``urllib3``). Modules
    whose top-level package is in ``skip`` (Suture's own) and ``__main__`` are left out; a
    module too large to walk is ``{"": ["too large", ...]}``."""
    import sys
    out: Dict[str, Dict[str, List[str]]] = {}
    names: Dict[str, List[str]] = {}
    for name, mod in list(sys.modules.items()):
        if (type(name) is not str or name == "__main__" or name.split(".")[0] in skip
                or not isa(mod, types.ModuleType)):
            continue
        ns = _MODULE_DICT.__get__(mod)
        own = ns.get("__name__")
        place = module_place(own if type(own) is str else name)
        names[name] = [place, "module"]
        if place in out:
            continue
        try:
            state = module_state(ns, own if type(own) is str else name, import_root(name))
        except TooLarge as exc:
            out[place] = {"": ["too large", str(exc)]}
            continue
        except Exception as exc:  # noqa: BLE001 - a walk that fails: that module unknown
            out[place] = {"": ["unreadable", f"{type(exc).__name__}: {exc}"[:200]]}
            continue
        out[place] = {lab: [fp, desc] for lab, (_, fp, desc) in state.items()}
    out["sys.modules"] = names
    return out


def warning_filters() -> List[List[Any]]:
    """``warnings.filters`` as plain data: ``[action, message pattern or None, category as
    [module, qualname], module pattern or None, lineno]`` per entry, in order (an entry
    that is not of that form: ``["?"]``)."""
    import sys
    out: List[List[Any]] = []
    warnings = sys.modules.get("warnings")
    for entry in list(getattr(warnings, "filters", None) or ()):
        if type(entry) is not tuple or len(entry) != 5:
            out.append(["?"])
            continue
        action, message, category, module, lineno = entry
        cat = ([_TYPE_MODULE.__get__(category), _QUALNAME.__get__(category)]
               if isa(category, type) else None)
        out.append([action if type(action) is str else "?",
                    message.pattern if type(message) is _PATTERN else None,
                    cat, module.pattern if type(module) is _PATTERN else None,
                    lineno if type(lineno) is int else 0])
    return out


def module_place(name: str) -> str:
    """``name`` as the file of that loaded module under its import root spells it
    (``pkg_resources.extern.packaging`` -> ``pkg_resources._vendor.packaging``)."""
    return _Walk(name, record=False, root=import_root(name)).place(name)


def value_at(namespace: Dict[str, Any], segments: List[Segment]) -> Any:
    """The value at a path, or ``MISSING``; read as ``module_state`` reads (no user code)."""
    value: Any = namespace
    for n, (kind, key) in enumerate(segments):
        if n == 0:
            value = namespace.get(key, MISSING) if kind == "g" else MISSING
        elif kind == "a":
            value = _attribute(value, key)
        elif kind == "s":
            slots = dict(_instance_parts(value)[1]) if not isa(value, type) else {}
            value = slots.get(key, MISSING)
        elif kind in ("k", "n"):
            items = _items(value)
            if items is None:
                return MISSING
            if kind == "n":
                value = items[key][1] if 0 <= key < len(items) else MISSING
            else:
                value = next((v for k, v in items if type(k) is type(key)
                              and _key_matches(k, key)), MISSING)
        elif kind == "i":
            seq: Any = value if type(value) in (list, tuple) else (
                (_base_content(value) or ("", None))[1])
            if type(seq) not in (list, tuple) or not 0 <= key < len(seq):
                return MISSING
            value = seq[key]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _key_matches(live: Any, key: Any) -> bool:
    """Whether the live key (of ``key``'s exact type) is the recorded one; a recorded string
    key that holds the import-root placeholder matches the same text with one directory,
    the same each time, in its place."""
    if type(key) is not str or ROOT not in key:
        return bool(live == key)
    parts = key.split(ROOT)
    pattern = (re.escape(parts[0]) + "(.+)" + re.escape(parts[1])
               + "".join(r"\1" + re.escape(p) for p in parts[2:]))
    return re.fullmatch(pattern, live) is not None


def _items(value: Any) -> Optional[List[Tuple[Any, Any]]]:
    if type(value) is dict:
        return list(value.items())
    base = _base_content(value)
    return base[1] if base is not None and base[0] == "dict" else None


def _attribute(value: Any, key: str) -> Any:
    if isa(value, type):
        return _class_dict(value).get(key, MISSING)
    if type(value) is types.FunctionType:
        if key == "__defaults__":
            return value.__defaults__ if value.__defaults__ is not None else MISSING
        if key == "__kwdefaults__":
            return value.__kwdefaults__ if value.__kwdefaults__ is not None else MISSING
        return value.__dict__.get(key, MISSING)
    try:
        instance_dict, _ = _instance_parts(value)
    except Exception:  # noqa: BLE001
        return MISSING
    return MISSING if instance_dict is None else instance_dict.get(key, MISSING)


def fingerprint_at(namespace: Dict[str, Any], module: str, segments: List[Segment],
                   gone: "frozenset[Tuple[int, Any]]" = frozenset(), root: str = "",
                   alias: Optional[Dict[int, Any]] = None,
                   lined: Lined = frozenset()) -> str:
    """The fingerprint ``module_state`` gives the path, computed for this one path.
    ``gone``: ``(id(container), key)`` bindings to count as deleted already (deletions
    the engine defers until old code has left every stack)."""
    value = value_at(namespace, segments)
    if value is MISSING:
        return "absent"
    # The qualified name a class defined at this path would have: the walk passes one
    # down through the members of classes only.
    return fingerprint_of(value, namespace, module, segments, gone, root, alias, lined)


def fingerprint_of(value: Any, namespace: Dict[str, Any], module: str,
                   segments: List[Segment], gone: "frozenset[Tuple[int, Any]]" = frozenset(),
                   root: str = "", alias: Optional[Dict[int, Any]] = None,
                   lined: Lined = frozenset()) -> str:
    """The fingerprint ``value`` would have at the path (a value about to be bound there)."""
    # The walk also had every value above this one on its stack (a cycle back to one of
    # them is fingerprinted by its distance).
    walk = _Walk(module, record=False, gone=gone, root=root, alias=alias, lined=lined)
    qual = str(segments[0][1]) if segments else ""
    for n in range(1, len(segments)):
        parent = value_at(namespace, segments[:n])
        walk.stack.append(id(parent))
        kind, key = segments[n]
        qual = f"{qual}.{key}" if qual and kind == "a" and isa(parent, type) else ""
    return walk.fp(value, None, DEPTH - (len(segments) - 1), qual)


# -- literals: values a manifest can carry, so that the engine can set them -----------

LITERAL_BYTES = 4096


def literal(value: Any, budget: int = LITERAL_BYTES, root: str = "") -> Optional[List[Any]]:
    """``value`` as tagged JSON when it is built of exact built-in atoms and containers
    (what a fresh import would bind for ``X = "2.1"``, ``__doc__``, ``LIMITS = (1, 2)``), in
    at most ``budget`` characters; else None. ``from_literal`` gives it back. Strings
    holding ``root`` hold the placeholder instead (``from_literal`` puts the live one)."""
    out = _literal(value, [budget], root)
    return out


def _literal(value: Any, budget: List[int], root: str = "",
             refs: bool = True) -> Optional[List[Any]]:
    t = type(value)
    budget[0] -= 8
    if budget[0] < 0:
        return None
    if value is None:
        return ["none"]
    if t is bool:
        return ["bool", value]
    if t is int:
        text = int.__repr__(value)
        budget[0] -= len(text)
        return ["int", text] if budget[0] >= 0 else None
    if t is float:
        return ["float", float.hex(value)]
    if t is str:
        budget[0] -= len(value)
        if root and root in value:
            return ["strroot", value.split(root)] if budget[0] >= 0 else None
        return ["str", value] if budget[0] >= 0 else None
    if t is bytes:
        budget[0] -= 2 * len(value)
        return ["bytes", value.hex()] if budget[0] >= 0 else None
    if t in (tuple, list, frozenset):
        items = []
        for v in (sorted(value, key=lambda x: fingerprint_value(x)) if t is frozenset
                  else value):
            # members of a frozenset are hashed when it is rebuilt: atoms only there
            enc = _literal(v, budget, root, refs and t is not frozenset)
            if enc is None:
                return None
            items.append(enc)
        return [t.__name__, items]
    if t is dict:
        pairs = []
        for k, v in value.items():
            ek, ev = _literal(k, budget, root, False), _literal(v, budget, root, refs)
            if ek is None or ev is None:
                return None
            pairs.append([ek, ev])
        return ["dict", pairs]
    if refs and (t is types.FunctionType or isa(value, type)):
        # A function or class by where it is defined, when that finds this very object
        # (registries of handlers): the engine finds the live one, patched in place.
        module = value.__module__ if t is types.FunctionType else _TYPE_MODULE.__get__(value)
        qual = value.__qualname__ if t is types.FunctionType else _QUALNAME.__get__(value)
        if type(module) is str and type(qual) is str and resolve(module, qual) is value:
            return ["ref", [module, qual]]
    if refs and isa(value, types.ModuleType):
        name = _MODULE_DICT.__get__(value).get("__name__")
        if type(name) is str:
            return ["module", module_place(name)]   # found again by its place
    return None


def resolve(module: str, qualname: str) -> Any:
    """The function or class ``module.qualname`` as defined (module globals, then class
    dicts; no attribute hooks run), or ``MISSING``."""
    import sys
    top = sys.modules.get(module)
    if top is None or "<" in qualname:
        return MISSING
    parts = qualname.split(".")
    value = _MODULE_DICT.__get__(top).get(parts[0], MISSING)
    for part in parts[1:]:
        if not isa(value, type):
            return MISSING
        value = _DICT_OF.__get__(value).get(part, MISSING)
    return value


def from_literal(enc: Any, root: str = "", refs: bool = True) -> Any:
    """The value ``literal`` encoded (``root`` where it held the placeholder; functions and
    classes found where they are defined, unless ``refs`` is false: then None stands for
    them, for checking the form only); ValueError for anything else."""
    if not isinstance(enc, list) or not enc or not isinstance(enc[0], str):
        raise ValueError(f"not a literal: {enc!r}"[:200])
    tag = enc[0]
    if tag == "none" and len(enc) == 1:
        return None
    if len(enc) != 2:
        raise ValueError(f"not a literal: {enc!r}"[:200])
    arg = enc[1]
    if tag == "bool" and type(arg) is bool:
        return arg
    if tag == "int" and type(arg) is str:
        return int(arg)
    if tag == "float" and type(arg) is str:
        return float.fromhex(arg)
    if tag == "str" and type(arg) is str:
        return arg
    if tag == "strroot" and type(arg) is list and all(type(a) is str for a in arg):
        return root.join(arg)
    if tag == "ref" and type(arg) is list and len(arg) == 2 and all(type(a) is str for a in arg):
        if not refs:
            return None
        found = resolve(arg[0], arg[1])
        if found is MISSING:
            raise ValueError(f"{arg[0]}.{arg[1]} is not defined in this process")
        return found
    if tag == "module" and type(arg) is str:
        if not refs:
            return None
        import sys
        for name, mod in [(arg, sys.modules.get(arg))] + list(sys.modules.items()):
            if isa(mod, types.ModuleType) and type(name) is str and module_place(name) == arg:
                return mod
        raise ValueError(f"module {arg} is not loaded in this process")
    if tag == "bytes" and type(arg) is str:
        return bytes.fromhex(arg)
    if tag in ("tuple", "list", "frozenset") and type(arg) is list:
        items = [from_literal(v, root, refs) for v in arg]
        return {"tuple": tuple, "list": list, "frozenset": frozenset}[tag](items)
    if tag == "dict" and type(arg) is list:
        out = {}
        for pair in arg:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("not a literal dict item")
            out[from_literal(pair[0], root, refs)] = from_literal(pair[1], root, refs)
        return out
    raise ValueError(f"not a literal: {enc!r}"[:200])


def fingerprint_value(value: Any) -> str:
    """The fingerprint of a value on its own (no path, the full depth)."""
    return _Walk("", record=False).fp(value, None, DEPTH, "")


def import_root(module: str) -> str:
    """The ``sys.path`` directory the top-level package of ``module`` was imported from,
    as its ``__file__`` spells it ("" when unknown): strings holding it (``__file__``,
    Flask's ``root_path``, template folders) compare equal wherever the release lives."""
    import os
    import sys
    top = sys.modules.get(module.split(".")[0])
    if top is None:
        return ""
    ns = _MODULE_DICT.__get__(top)
    path = ns.get("__file__")
    if type(path) is not str or not path:
        return ""
    here = os.path.dirname(path)
    root = os.path.dirname(here) if os.path.basename(path).startswith("__init__.") else here
    # too short to stand for a place: "/" or a relative "" would match everywhere
    return root if os.path.isabs(root) and len(root) > 1 else ""


def instance_dict(obj: Any) -> Optional[Dict[str, Any]]:
    """The ``__dict__`` of an instance, read as the walk reads it, or None."""
    try:
        return _instance_parts(obj)[0]
    except Exception:  # noqa: BLE001
        return None


def def_lines(source: str) -> Dict[str, List[int]]:
    """Qualified name (``f``, ``Cls.m``) -> the first lines (``co_firstlineno``: the first
    decorator's, if any) of the ``def``s of that name in ``source``'s module and class
    bodies, ``if``/``try``/``with``/``for``/``while`` blocks included, in source order
    ({} for an unparsable source)."""
    import ast
    seen: Dict[str, List[int]] = {}

    def walk(body: List[Any], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                seen.setdefault(prefix + node.name, []).append(first)
            elif isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}.")
            else:   # the blocks of if / try / with / for / while at this level
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        walk(inner, prefix)
                for handler in getattr(node, "handlers", None) or []:
                    walk(handler.body, prefix)

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    walk(tree.body, "")
    return {q: sorted(set(lines)) for q, lines in seen.items()}


def defined_twice(*sources: str) -> List[str]:
    """Qualified names (``f``, ``Cls.m``) that one of ``sources`` defines with more than one
    ``def`` (in ``if``/``try`` branches of a module or class body): the names whose
    fingerprint carries which def it is. Sorted; unparsable sources count for nothing."""
    out: Set[str] = set()
    for text in sources:
        out.update(q for q, lines in def_lines(text).items() if len(lines) > 1)
    return sorted(out)


def lined_defs(baseline: str, fixed: str) -> Dict[str, Dict[str, List[int]]]:
    """The manifest's ``lined`` for a module whose releases' sources are ``baseline`` and
    ``fixed``: each name ``defined_twice`` -> ``{"baseline": LINES, "fixed": LINES}``, the
    first lines of its defs in each source (``def_lines``)."""
    old, new = def_lines(baseline), def_lines(fixed)
    return {q: {"baseline": old.get(q, []), "fixed": new.get(q, [])}
            for q in defined_twice(baseline, fixed)}


def lined_for(lined: Any, release: str) -> Lined:
    """What ``module_state``/``fingerprint_at`` take for one release (``"baseline"`` or
    ``"fixed"``) from a manifest's ``lined``: its lines per name, or, for a plain list of
    names (patches built before the lines were recorded), the names."""
    if isinstance(lined, dict):
        return {q: [n for n in v.get(release) or () if type(n) is int]
                for q, v in lined.items() if type(q) is str and isinstance(v, dict)}
    return frozenset(q for q in lined or () if type(q) is str)

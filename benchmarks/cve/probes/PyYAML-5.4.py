"""Probe for PyYAML 5.4 (CVE-2020-14343), which ships no regression test of its own.

Exit 0 when FullLoader refuses the python/object/new, python/object and python/module
tags (the fixed behaviour), 1 when it still builds such objects; UnsafeLoader must build
them either way. Run in the live process by the harness, like a release's own tests.
"""

import sys

import yaml

DOCS = ["!!python/object/new:builtins.list [[1, 2]]",
        "!!python/object:builtins.object {}",
        "!!python/module:os ''"]

still_built = []
for doc in DOCS:
    yaml.load(doc, Loader=yaml.UnsafeLoader)       # must work before and after
    try:
        yaml.load(doc, Loader=yaml.FullLoader)
        still_built.append(doc)
    except yaml.constructor.ConstructorError:
        pass
print("FullLoader still builds:", still_built or "nothing")
sys.exit(1 if still_built else 0)

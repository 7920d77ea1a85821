"""Migration for the pymdown-extensions 9.11 -> 10.0 patch (CVE-2023-32309).

10.0's ``SnippetPreprocessor.__init__`` sets ``restrict_base_path`` from the extension's
new config option, which the fixed ``get_snippet_path`` reads on every snippet. A
preprocessor built by 9.11 came from a config that could not hold the option (9.11's
``SnippetExtension`` rejects unknown keys), so the value a user of 9.11 got is the option's
default in 10.0: ``True`` (paths are kept under the base paths; that is the fix).

10.0 also stores ``base_path`` as absolute paths (the fixed ``get_snippet_path`` compares
them with ``os.path.samefile`` of ``abspath(join(base, path))``). 9.11 kept them as given;
``os.path.abspath`` here gives what 10.0 would have computed at construction, provided the
process has not changed its working directory since (true for the test's renderer, whose
base path is absolute already: then this is a no-op).
"""

import os


def _snippets(obj):
    obj.restrict_base_path = True
    obj.base_path = [os.path.abspath(b) for b in obj.base_path]


MIGRATIONS = {"pymdownx.snippets:SnippetPreprocessor": _snippets}

"""Hook for Pygments 2.15.0 -> 2.15.1: recompile the lexers' token tables.

RegexLexerMeta compiles a lexer's ``tokens`` into ``_tokens`` on its first
instantiation and never again; the patch changes ``PropertiesLexer.tokens`` (and the
lexers of the other changed modules), so in a process that already used a lexer the
old regexes stay live. The engine refuses such a patch without a hook (SUT-E204). This
hook does what the metaclass does on first use, for every lexer of the patched modules
that had compiled its table, after apply and after revert (from the restored tokens).

Why no mechanism derives it (issue 15): ``_tokens`` is not import-time state. A fresh
import of either release has none; the first use of each lexer makes it, so the state
manifest and the build's dry run (both compare fresh imports) cannot hold it. What a
fresh process of 2.15.1 would hold is the library's own code run on the new ``tokens``
(the metaclass's ``process_tokendef``): only the patch author can vouch that running it
again is safe. Deleting the table instead would break the lexer instances made before
the patch, which read ``self._tokens`` without going through the metaclass again.
"""

MODULES = ("pygments.lexers.configs", "pygments.lexers.python")


def _recompile(ctx):
    for name in MODULES:
        module = ctx.module(name)
        if module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and "_tokens" in value.__dict__ \
                    and value.__module__ == name:
                value._all_tokens = {}
                value._tmpname = 0
                value._tokens = value.process_tokendef("", value.get_tokendefs())


post_apply = _recompile
post_revert = _recompile

"""Migration for the pypdf 6.21.2 -> 6.21.3 patch (xref stream entry limit, PR #4269).

6.21.3's ``PdfReader.__init__`` sets two attributes that the fixed
``_read_pdf15_xref_stream`` reads:

* ``_xref_stream_maximum_entries``: the new keyword's default (2_000_000). No reader built
  by 6.21.2 could pass the keyword, so its value is that default; Suture derives it on
  first read (``LazyAttr``) and this file need not set it.
* ``_xref_stream_entry_count``: a counter that the fixed ``read()`` resets to 0 before it
  walks the cross-reference chain and adds to for each xref stream. A reader built by
  6.21.2 that is not inside ``read()`` has counted nothing under the new limit, which is
  exactly the value a 6.21.3 reader has between reads: 0. The next ``read()`` resets it
  anyway; 0 only matters for a ``read()`` already running the old code when the patch
  lands, which then counts its remaining xref streams from 0 (never more than the limit
  would allow a fresh read).

Revert: the counter is the fixed code's own bookkeeping of one ``read()``; 6.21.2 neither
reads nor needs it, so the value a reader holds after reads under the patch can be
dropped (without ``REVERT_MIGRATIONS`` naming the class the revert refuses, SUT-E209,
since the engine cannot tell such a counter from state agreed with a peer).
"""


def _reader(obj):
    obj._xref_stream_entry_count = 0


def _unread(obj):
    """Nothing to give back: the restored code ignores the counter. (It must stay: a revert
    migration runs before the undo, while the fixed code still reads it.)"""


MIGRATIONS = {"pypdf._reader:PdfReader": _reader}
REVERT_MIGRATIONS = {"pypdf._reader:PdfReader": _unread}

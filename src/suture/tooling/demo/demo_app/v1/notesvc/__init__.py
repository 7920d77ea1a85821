"""notesvc: a tiny HTTP notes and file service, the example app of `suture demo`.

Run it with ``python -m notesvc DIRECTORY``. Everything it knows (sessions,
notes, the hit counter) lives in memory, so a restart loses it.
"""

"""Documents shared in rooms: read them, index their passages, find them again, cite them.

`extract` turns bytes into text sections (run in worker processes by `pool`), `chunk` cuts them
into overlapping passages, `bot.store.documents` keeps passages with FTS5 and embeddings,
`retrieval` finds the passages that answer a question, `context` numbers them for the prompt
and cites them, `service` ties it to the rooms.
This package file imports nothing: extraction workers import only `extract`.
"""

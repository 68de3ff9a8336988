"""Catalog scoring: a registered version scores a folder, a list of files or the DuckDB catalog.

Modules: :mod:`.items` (what to score: files, folders, list files, the catalog's songs, each
with its song id) and :mod:`.run` (score them in worker processes or on dask through training's
feature path, resumably, into the DuckDB table ``predictions``; SQL in
``hitsong.store.predictions``). ``hitsong score`` (``registry/score_command.py``) is the command.
"""

"""All MLflow glue: the tracking server, the run logger, the audio-scoring pyfunc, the registry.

Import direction is one way: ``dashboard -> registry -> hitsong``. ``hitsong`` never imports
this package or mlflow; the CLI reaches it through ``registry.commands``.

Modules
-------
server
    Start, reuse and stop a real ``mlflow server`` (SQLite or PostgreSQL backend, served
    artifacts, optional basic-auth app).
tracking
    ``MlflowRunLogger``: the ``hitsong.tracking.RunLogger`` protocol over MLflow.
pyfunc
    The models-from-code pyfunc that wraps ``hitsong.scoring.SongScorer``.
models
    Register the best run, promote with aliases and audit tags, list versions.
runs
    Read experiments, runs, metric histories and table artifacts (for the dashboard).
demo
    What ``hitsong demo run`` asks: is a subset trained, does its model have a champion.
commands
    The ``hitsong server | register | promote | models | predict`` sub-commands.
"""

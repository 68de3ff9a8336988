"""Training m1..m6 with repetitions and evaluating them as in the paper (sections 3-4).

Modules: :mod:`.config` (``TrainConfig`` and presets), :mod:`.data` (the splits, scanned once),
:mod:`.loop` (``fit``: one model, best-validation weights), :mod:`.experiment` (every method x
repetition of a subset, Table 1), :mod:`.runlayout` (the names of runs, tags, metrics and
tables: written here, read by ``registry`` and ``dashboard``), :mod:`.provenance` (code version),
:mod:`.from_store` (``train_from_store``: a subset of the stores, with its checks). Import from
the modules: this package file stays empty so that reading the run layout does not load torch.
"""

"""What every worker process of ours does first: leave Ctrl-C to the parent, die with it, use N threads.

Used by the feature store's process pool and by parallel training (``spawn`` pools both).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading

from hitsong.audio.decode import set_decode_threads


def _exit_with_parent() -> None:
    """Block until the parent process is gone, then end this worker.

    A pool worker holds both ends of its task pipe, so it never sees EOF when the parent is
    killed (``kill -9``) and would wait forever; this watchdog thread ends it instead.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def use_threads(threads: int) -> None:
    """Use ``threads`` threads for torch, BLAS and decoding in this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    set_decode_threads(threads)
    import torch

    torch.set_num_threads(threads)


def init_worker(threads: int = 1) -> None:
    """Ignore SIGINT, end with the parent, and use ``threads`` threads for torch, BLAS and decoding."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    use_threads(threads)

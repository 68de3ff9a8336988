"""MP3 seeking done right: a pre-roll so the samples after a seek are exact, and libmpg123 kept quiet.

libsndfile decodes MP3 through libmpg123. After a seek into the middle of a file the first
frames decode wrongly (bit reservoir, filter-bank state), and libmpg123 prints
``part2_3_length ... too large`` on file descriptor 2 for them. The decoder enters an MP3
:data:`MP3_PREROLL_SECONDS` early and drops that audio; :func:`quiet_decoder_stderr` keeps the
messages off the terminal (one INFO line per process explains them) and passes anything else on.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds decoded and dropped before the first wanted sample of an MP3. A frame's main data
#: may start in earlier frames (the bit reservoir), and the decoder's filter bank carries state
#: from frame to frame, so the first frames after a seek decode wrongly (errors up to full
#: scale over up to ~0.25 s were measured); from 0.5 s of pre-roll on, the samples equal a
#: decode from the start of the file (tested). 1 s is that with a margin: +1.7 % decode work.
MP3_PREROLL_SECONDS = 1.0
#: What libmpg123 (inside libsndfile) prints on file descriptor 2 when a seek lands inside an
#: MP3 bit reservoir. Those frames fall in the pre-roll, which is dropped: the message is noise.
_RESERVOIR = re.compile(rb"libmpg123.*part2_3_length \(\d+\) too large for available bit count")
#: Re-entrant: a decode inside another quiet block of the same thread (a caller keeping a whole
#: library call quiet, e.g. librosa's reads) nests instead of waiting for itself forever.
_stderr_lock = threading.RLock()
#: Whether this process has logged its one line about the dropped messages.
_explained = threading.Event()


@contextmanager
def quiet_decoder_stderr(path: Path) -> Iterator[None]:
    """Keep libmpg123's bit-reservoir messages off the terminal while libsndfile decodes ``path``.

    The C library writes straight to file descriptor 2, past Python's ``sys.stderr``, so fd 2
    is pointed at a temporary file for the duration. Afterwards the reservoir messages are
    dropped (explained by one INFO log line per process) and anything else is written to the
    real stderr, unchanged and in order; output of other threads during the decode is only
    delayed. Where fd 2 cannot be redirected (closed), decoding runs as it is.
    """
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured = sink.read()
    if not captured:
        return
    lines = captured.splitlines(keepends=True)
    other = b"".join(line for line in lines if not _RESERVOIR.search(line))
    dropped = len(lines) - len(other.splitlines())
    if other:
        os.write(2, other)
    if dropped:
        log.debug("%s: dropped %d libmpg123 bit-reservoir messages after seeking (samples exact)", path, dropped)
        if not _explained.is_set():
            _explained.set()
            log.info(
                "libmpg123 reports 'part2_3_length ... too large' when a seek lands inside an MP3 bit "
                "reservoir; the decoded samples are exact, so these messages are not shown"
            )

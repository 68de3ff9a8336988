"""Events inputs: a file, a glob, a folder (hive-partitioned or not) or an object-store URL.

``--events`` names a dataset; :func:`expand_events` lists its files. Each file is ingested at
most once: it is known by its path, size and modification time (no re-reading), else by the
SHA-256 of its bytes (a URL by its name, size and last-modified time), and the database records
every file it counted (``event_files``), so adding a partition ingests just that partition.

- A folder: every ``.parquet``, ``.csv``, ``.csv.gz``, ``.tsv`` and ``.tsv.gz`` file below it;
  names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc``) are skipped.
- A glob (``*``, ``?``, ``[``, and ``**`` for any depth), expanded in sorted order.
- ``key=value`` folders on the way from the folder or glob root to a file are hive partitions:
  DuckDB reads them as extra columns (``date=2016-01-01/part-0.parquet`` gives a ``date`` column).
- ``s3://``, ``gs://``, ``https://`` URLs (globs included) go to DuckDB's httpfs extension when it
  is installed; without it the error says how to install it. (These machines cannot reach an
  object store, so only the local forms are tested here.)
"""

from __future__ import annotations

import glob as globlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from hitsong.errors import InputError
from hitsong.store.schema import AGGREGATED_COLUMNS, NOT_CHANGED, PLAYS_COLUMNS
from hitsong.store.sources import (
    INT_TYPES,
    Source,
    count_expr,
    error_text,
    file_sha256,
    id_checks,
    is_remote,
    quote,
    require_columns,
    run_checks,
    time_expr,
)

log = logging.getLogger(__name__)

EventShape = Literal["auto", "aggregated", "plays"]

#: File names a folder of events is read for.
DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv", ".tsv.gz")


@dataclass(frozen=True)
class EventInput:
    """One file of an events dataset, before it is opened: where, and what identifies its version."""

    path: str  # absolute local path or URL
    partition: str  # the hive ``key=value`` folders from the root, "/"-joined ("" when none)
    size: int
    mtime_ns: int  # modification time (local) or last-modified time (URL), in ns

    @property
    def hive(self) -> bool:
        """Whether the file sits in hive partitions (read with their values as columns)."""
        return bool(self.partition)


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _is_data_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith((".", "_")) and name.endswith(DATA_SUFFIXES)


def _partition(relative_parent: tuple[str, ...]) -> str:
    return "/".join(part for part in relative_parent if "=" in part and not part.startswith("="))


def require_httpfs(con: duckdb.DuckDBPyConnection, url: str) -> None:
    """Load DuckDB's httpfs extension (never downloading it); a clear error when it is missing."""
    try:
        con.execute("LOAD httpfs")
    except duckdb.Error as exc:
        raise InputError(
            f"events {url}: reading an object store needs DuckDB's httpfs extension, which is not installed "
            f"here ({str(exc).splitlines()[0]}). On a machine that can reach extensions.duckdb.org run "
            "`python -c \"import duckdb; duckdb.execute('INSTALL httpfs')\"` (credentials come from DuckDB "
            f"secrets or the usual AWS/GCS environment variables), or copy the files to a local folder. {NOT_CHANGED}"
        ) from exc


def _expand_remote(con: duckdb.DuckDBPyConnection, url: str) -> list[EventInput]:
    require_httpfs(con, url)
    try:
        files = [str(r[0]) for r in con.execute("SELECT file FROM glob(?) ORDER BY file", [url]).fetchall()]
        if not _has_glob(url) and not files:
            files = [url]
        out = []
        for f in files:
            size, modified = con.execute("SELECT size, last_modified FROM read_blob(?)", [f]).fetchall()[0]
            root = url.split("*", 1)[0].rsplit("/", 1)[0]
            parts = tuple(f[len(root) :].strip("/").split("/")[:-1]) if f.startswith(root) else ()
            stamp = int(modified.timestamp() * 1e9) if modified else 0
            out.append(EventInput(f, _partition(parts), int(size or 0), stamp))
    except duckdb.Error as exc:
        raise InputError(f"events {url} cannot be listed or read: {error_text(exc)}. {NOT_CHANGED}") from exc
    return out


def expand_events(con: duckdb.DuckDBPyConnection, spec: str | Path) -> list[EventInput]:
    """The files of the events dataset ``spec`` (a file, glob, folder or URL), in sorted order.

    A single local file that does not exist is returned as is: opening it gives the error.

    Raises
    ------
    InputError
        A glob or folder without events files, or a URL without httpfs.
    """
    text = str(spec)
    if is_remote(text):
        return _expand_remote(con, text)
    path = Path(text).expanduser()
    if path.is_dir():
        root = path.resolve()
        files = sorted(p for p in root.rglob("*") if _is_data_file(p))
        if not files:
            raise InputError(
                f"events folder {root} holds no {', '.join(DATA_SUFFIXES)} files (names starting with '.' or '_' "
                f"are skipped). {NOT_CHANGED}"
            )
    elif _has_glob(text):
        files = sorted(Path(p).resolve() for p in globlib.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"events glob {text} matches no files. {NOT_CHANGED}")
        fixed = list(path.parts[: next(i for i, p in enumerate(path.parts) if _has_glob(p))])
        root = Path(*fixed).resolve() if fixed else Path.cwd()
    else:
        resolved = path.resolve()
        if not resolved.is_file():
            return [EventInput(str(resolved), "", 0, 0)]
        files, root = [resolved], resolved.parent
    out = []
    for f in files:
        st = f.stat()
        parts = f.relative_to(root).parent.parts if f.is_relative_to(root) else ()
        out.append(EventInput(str(f), _partition(parts), int(st.st_size), int(st.st_mtime_ns)))
    return out


def identity(item: EventInput) -> str:
    """What identifies a file's content: the SHA-256 of its bytes (a URL: of its name, size and
    time, read without fetching it), with its hive partition values, which are data too."""
    if is_remote(item.path):
        digest = "url:" + hashlib.sha256(f"{item.path}\n{item.size}\n{item.mtime_ns}".encode()).hexdigest()
    else:
        digest = file_sha256(item.path)
    if item.partition:
        digest = hashlib.sha256(f"{digest}\n{item.partition}".encode()).hexdigest()
    return digest


def detect_shape(src: Source, shape: EventShape) -> Literal["aggregated", "plays"]:
    """Which of the two events shapes ``src`` has (or check the forced one)."""
    has_count = "play_count" in src.columns
    has_time = "played_at" in src.columns
    if shape == "auto":
        if has_count and has_time:
            raise InputError(
                f"events file {src.path} has both 'play_count' and 'played_at'; say which it is "
                f"with --event-shape aggregated|plays. {NOT_CHANGED}"
            )
        if not has_count and not has_time:
            require_columns(
                src,
                ("user_id", "song_id", "play_count"),
                "events",
                " (aggregated) or user_id, song_id, played_at (one row per play)",
            )
        shape = "aggregated" if has_count else "plays"
    require_columns(src, AGGREGATED_COLUMNS if shape == "aggregated" else PLAYS_COLUMNS, "events")
    return shape


@dataclass(frozen=True)
class EventFile:
    """A new events file of the dataset: where, which shape, which version."""

    src: Source
    shape: Literal["aggregated", "plays"]
    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class CheckedFile:
    """A validated events file and the SQL that reads its columns."""

    file: EventFile
    rows: int
    user_sql: str
    song_sql: str
    value_sql: str  # play count (aggregated) or play time (plays)


#: A user id the store can number directly: a whole number 0 .. 2**32 - 1, written plainly.
USER_NUMBER_PATTERN = "0|[1-9][0-9]{0,9}"

#: One past the largest user number.
USER_NUMBER_LIMIT = 2**32


def user_number_checks(src: Source) -> list[tuple[str, str, str, str | None]]:
    """Checks that every user id of ``src`` is a plain whole number ``0 .. 2**32 - 1``.

    A store whose first events had only such ids numbers users by their ids (no dictionary);
    these checks find the rows of a later file that cannot join it.
    """
    c = quote(src.columns["user_id"])
    reason = (
        "is not a whole number 0..4294967295 like the user ids already in the store (ingest every events "
        "file again with --replace to number text ids)"
    )
    if src.types["user_id"] in INT_TYPES:
        quick = f"CASE WHEN min({c}) < 0 OR max({c}) >= {USER_NUMBER_LIMIT} THEN 1 ELSE 0 END"
        return [("user_id", f"{c} < 0 OR {c} >= {USER_NUMBER_LIMIT}", reason, quick)]
    bad = f"NOT regexp_full_match({c}, '{USER_NUMBER_PATTERN}') OR TRY_CAST({c} AS BIGINT) >= {USER_NUMBER_LIMIT}"
    return [("user_id", bad, reason, None)]


def numbers_fit(con: duckdb.DuckDBPyConnection, src: Source) -> bool:
    """Whether every user id of ``src`` passes :func:`user_number_checks` (one aggregate)."""
    checks = user_number_checks(src)
    preds = " OR ".join(f"({pred})" for _, pred, _, _ in checks)
    return not src.relation(con).aggregate(f"count(*) FILTER (WHERE {preds})").fetchall()[0][0]


def check_events(con: duckdb.DuckDBPyConnection, ev: EventFile, *, user_numbers: bool) -> CheckedFile:
    """Validate one events file (raises ``InputError`` naming rows).

    ``user_numbers``: the store numbers users by their ids, so every id must be one.
    """
    src = ev.src
    checks: list[tuple[str, str, str, str | None]] = []
    for col in ("user_id", "song_id"):
        checks += [(col, *c) for c in id_checks(src, col)]
    if ev.shape == "aggregated":
        value_sql, c = count_expr(src, "play_count")
        checks += [("play_count", *x) for x in c]
    else:
        value_sql, c = time_expr(src, "played_at", "TIMESTAMP")
        checks += [("played_at", *x) for x in c]
    if user_numbers:
        checks += user_number_checks(src)
    rows = run_checks(con, src, "events", checks)
    return CheckedFile(ev, rows, quote(src.columns["user_id"]), quote(src.columns["song_id"]), value_sql)

"""Input files as DuckDB relations: format sniffing, columns, and row checks that name rows.

A local file is recognised by its bytes (CSV, gzipped CSV or Parquet), an object-store URL by
its name; its header is normalised, and every check runs as SQL first (from Parquet statistics
where possible); only a failing check runs a second pass to find the first few bad rows for the
error message. A file inside a hive-partitioned folder (``date=2016-01-01/part-0.parquet``) is
read with its partition values as columns.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import duckdb
import numpy as np

from hitsong.errors import InputError
from hitsong.store.schema import NOT_CHANGED

log = logging.getLogger(__name__)


MAX_ROWS_SHOWN = 5


#: URL schemes handed to DuckDB's httpfs extension.
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "r2://", "https://", "http://")


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is an object-store or web URL rather than a local path."""
    return str(path).startswith(REMOTE_SCHEMES)


@dataclass(frozen=True)
class Source:
    """One input file as DuckDB sees it: a FROM clause and its column map.

    ``path`` is an absolute local path or a URL; ``hive`` reads the ``key=value`` folders of the
    path as columns.
    """

    path: str
    kind: Literal["csv", "parquet"]
    gzip: bool
    delimiter: str
    columns: dict[str, str]  # normalised name -> name in the file
    types: dict[str, str] = field(default_factory=dict)  # normalised name -> DuckDB type
    hive: bool = False

    def relation(self, con: duckdb.DuckDBPyConnection, *, row_numbers: bool = False) -> duckdb.DuckDBPyRelation:
        """The file as a relation (all text for CSV); with ``row_no`` (1-based) when asked."""
        if self.kind == "parquet":
            return _parquet_relation(con, self, row_numbers)
        return _csv_relation(con, self, row_numbers)


def _parquet_relation(con: duckdb.DuckDBPyConnection, src: Source, row_numbers: bool) -> duckdb.DuckDBPyRelation:
    if row_numbers:
        return con.query(
            "SELECT *, file_row_number + 1 AS row_no FROM read_parquet($p, file_row_number = true, "
            "hive_partitioning = $h)",
            params={"p": src.path, "h": src.hive},
        )
    return con.query("SELECT * FROM read_parquet($p, hive_partitioning = $h)", params={"p": src.path, "h": src.hive})


def _csv_relation(con: duckdb.DuckDBPyConnection, src: Source, row_numbers: bool) -> duckdb.DuckDBPyRelation:
    if not row_numbers or is_remote(src.path):
        return con.query(
            "SELECT * FROM read_csv($p, header = true, all_varchar = true, delim = $d, compression = $c, "
            "hive_partitioning = $h)",
            params={"p": src.path, "d": src.delimiter, "c": "gzip" if src.gzip else "none", "h": src.hive},
        )
    # DuckDB's CSV reader has no row numbers; pyarrow reads in order, all columns as text.
    import pyarrow as pa
    import pyarrow.csv as pacsv

    stream = pa.input_stream(str(src.path), compression="gzip" if src.gzip else None)
    table = pacsv.read_csv(
        stream,
        parse_options=pacsv.ParseOptions(delimiter=src.delimiter),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in src.columns.values()},
            strings_can_be_null=True,
        ),
    )
    table = table.append_column("row_no", pa.array(np.arange(1, table.num_rows + 1)))
    return con.from_arrow(table)


_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx file is one; export it as CSV)"),
    (b"ID3", "an MP3 audio file"),
    (b"RIFF", "a RIFF (WAV/AVI) file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg file"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Office file (export it as CSV)"),
)


def _sniff_format(path: Path, what: str) -> tuple[Literal["csv", "parquet"], bool]:
    """Decide the format from the file's bytes, not its name: ``(kind, gzipped)``."""
    if not path.exists():
        raise InputError(f"{what} file {path} does not exist. Check the path. {NOT_CHANGED}")
    if not path.is_file():
        raise InputError(f"{what} file {path} is not a regular file. {NOT_CHANGED}")
    with path.open("rb") as fh:
        head = fh.read(65536)
    if not head.strip():
        raise InputError(f"{what} file {path} is empty. {NOT_CHANGED}")
    if head.startswith(b"PAR1"):
        return "parquet", False
    gz = head.startswith(b"\x1f\x8b")
    if gz:
        import gzip

        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(65536)
        except (OSError, EOFError) as exc:
            raise InputError(
                f"{what} file {path} looks gzipped but cannot be decompressed: {exc}. {NOT_CHANGED}"
            ) from exc
        if not head.strip():
            raise InputError(f"{what} file {path} is empty (after gunzip). {NOT_CHANGED}")
    for magic, name in _MAGIC:
        if head.startswith(magic):
            raise InputError(
                f"{what} file {path} is {name}, not CSV or Parquet. Give a CSV (optionally gzipped) "
                f"or Parquet file. {NOT_CHANGED}"
            )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the read boundary
            raise InputError(
                f"{what} file {path} is not UTF-8 text (bad byte at offset {exc.start}), so it is "
                f"neither CSV nor Parquet. {NOT_CHANGED}"
            ) from exc
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        raise InputError(f"{what} file {path} contains binary data (NUL bytes); it is not a CSV file. {NOT_CHANGED}")
    return "csv", gz


def _normalise(name: str) -> str:
    return name.strip().lower()


def _kind_from_name(url: str, what: str) -> tuple[Literal["csv", "parquet"], bool]:
    """A URL's format from its name (its bytes are not fetched to sniff them)."""
    name = url.lower().rsplit("/", 1)[-1]
    if name.endswith(".parquet"):
        return "parquet", False
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv", False
    if name.endswith((".csv.gz", ".tsv.gz")):
        return "csv", True
    raise InputError(
        f"{what} file {url}: name a .parquet, .csv or .csv.gz object (the format of a URL is read from its name). "
        f"{NOT_CHANGED}"
    )


def open_source(con: duckdb.DuckDBPyConnection, path: str | Path, what: str, *, hive: bool = False) -> Source:
    """Check the file exists and has a readable format; read its column names and types."""
    remote = is_remote(path)
    if remote:
        name = str(path)
        kind, gz = _kind_from_name(name, what)
    else:
        local = Path(path).expanduser().resolve()
        name = str(local)
        kind, gz = _sniff_format(local, what)
    delimiter = ","
    try:
        if kind == "csv":
            sniff = con.execute(
                "SELECT Delimiter FROM sniff_csv($p, header = true, compression = $c)",
                {"p": name, "c": "gzip" if gz else "none"},
            ).fetchall()[0]
            delimiter = sniff[0] if sniff and sniff[0] else ","
        src = Source(name, kind, gz, delimiter, {}, hive=hive)
        rel = src.relation(con)
        names, types = rel.columns, [str(t) for t in rel.types]
    except duckdb.Error as exc:
        why = error_text(exc)
        raise InputError(f"{what} file {name} cannot be read as {kind.upper()}: {why}. {NOT_CHANGED}") from exc
    if kind == "csv" and not remote:
        _check_csv_header(Path(name), gz, delimiter, names, what, hive=hive)
    columns: dict[str, str] = {}
    col_types: dict[str, str] = {}
    for col, typ in zip(names, types):
        key = _normalise(col)
        if key in columns:
            raise InputError(f"{what} file {name}: column {key!r} appears twice in the header. {NOT_CHANGED}")
        columns[key] = col
        col_types[key] = typ
    return Source(name, kind, gz, delimiter, columns, col_types, hive=hive)


def _check_csv_header(
    path: Path, gz: bool, delimiter: str, names: Sequence[str], what: str, *, hive: bool = False
) -> None:
    """DuckDB's sniffer must have read the first line as the header; else find the ragged line."""
    import csv
    import gzip

    # both are closed by the with below
    fh: TextIO = (
        gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115
        if gz
        else open(path, encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115
    )
    with fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, [])
        found = [n.strip() for n in names]
        if hive:  # partition columns come after the file's own
            found = found[: len(header)]
        if [h.strip() for h in header] == found:
            return
        for line_no, row in enumerate(reader, start=2):
            if row and len(row) != len(header):
                raise InputError(
                    f"{what} file {path}: line {line_no} has {len(row)} fields but the header (line 1) "
                    f"has {len(header)} ({delimiter!r}-separated). Every line needs one value per "
                    f"column. {NOT_CHANGED}"
                )
    raise InputError(
        f"{what} file {path}: cannot read a table with the header on line 1 (found columns "
        f"{list(names)}). Check the separator and quoting. {NOT_CHANGED}"
    )


def require_columns(src: Source, required: Sequence[str], what: str, hint: str = "") -> None:
    missing = [c for c in required if c not in src.columns]
    if not missing:
        return
    found = list(src.columns.values())
    guesses = []
    for m in missing:
        close = difflib.get_close_matches(m, [_normalise(f) for f in found], n=1, cutoff=0.6)
        if close:
            guesses.append(f"{src.columns[close[0]]!r} -> {m!r}?")
    raise InputError(
        f"{what} file {src.path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
        f"found {', '.join(repr(f) for f in found)}. The header must name "
        f"{', '.join(required)}{hint}." + (f" Did you mean {'; '.join(guesses)}" if guesses else "") + f" {NOT_CHANGED}"
    )


def first_row(result: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of a result (``None`` when empty), reading it to the end."""
    rows = result.fetchall()
    return rows[0] if rows else None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a local file's bytes (hex)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


#: At most this many characters of a reader's error reach a message (a bad line can be megabytes).
MAX_REASON_CHARS = 600


def error_text(exc: BaseException) -> str:
    """A reader's error as short, printable text for a message.

    DuckDB's CSV errors quote the offending line whole and then list every reader option; the
    quoted line comes from the input file, so it is cut (200 characters a line, ``MAX_REASON_CHARS``
    in all), the option list after the first blank line is left out, and control characters
    (terminal escapes in a hostile file) are shown escaped.
    """
    lines = []
    for line in str(exc).splitlines():
        if not line.strip():
            break
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line[:200])
        lines.append(line + ("..." if len(line) >= 200 else ""))
    text = " ".join(lines).rstrip(" .")
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def quote(name: str) -> str:
    """Quote an identifier taken from a file header."""
    return '"' + name.replace('"', '""') + '"'


INT_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)


_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")


def _is_decimal(t: str) -> bool:
    return t.startswith("DECIMAL")


def id_checks(src: Source, col: str) -> list[tuple[str, str, str | None]]:
    c = quote(src.columns[col])
    checks: list[tuple[str, str, str | None]] = [(f"{c} IS NULL", "is empty", f"count(*) - count({c})")]
    if src.types[col] == "VARCHAR":
        checks = [(f"{c} IS NULL OR trim({c}) = ''", "is empty", None)]
    elif src.types[col] not in INT_TYPES:
        raise InputError(
            f"file {src.path}: column {src.columns[col]!r} has type {src.types[col]}; ids must be "
            f"text or whole numbers. {NOT_CHANGED}"
        )
    return checks


#: The largest play count (and sum of play counts) the store holds: BIGINT.
MAX_COUNT = 2**63 - 1


def count_expr(src: Source, col: str) -> tuple[str, list[tuple[str, str, str | None]]]:
    """SQL for a whole-number count column (as BIGINT) and its checks.

    A check is ``(bad-row predicate, reason, quick)``: ``quick`` is an aggregate that is non-zero
    when a bad row may exist and that DuckDB can answer from Parquet statistics (or ``None``).
    Values beyond BIGINT (``MAX_COUNT``) are refused here, so the cast never fails later.
    """
    c = quote(src.columns[col])
    t = src.types[col]
    too_large = f"is larger than {MAX_COUNT}, the largest play count"
    if t in INT_TYPES:
        checks: list[tuple[str, str, str | None]] = [
            (f"{c} IS NULL", "is empty", f"count(*) - count({c})"),
            (f"{c} < 0", "is negative", f"CASE WHEN min({c}) < 0 THEN 1 ELSE 0 END"),
        ]
        if t in ("UBIGINT", "HUGEINT", "UHUGEINT"):
            big = f"CAST({c} AS HUGEINT) > {MAX_COUNT}"
            checks.append((big, too_large, f"CASE WHEN max(CAST({c} AS HUGEINT)) > {MAX_COUNT} THEN 1 ELSE 0 END"))
            return f"TRY_CAST({c} AS BIGINT)", checks
        return f"CAST({c} AS BIGINT)", checks
    if t in _FLOAT_TYPES or _is_decimal(t) or t == "VARCHAR":
        x = f"TRY_CAST({c} AS DOUBLE)"
        exact = f"TRY_CAST({c} AS BIGINT)"
        checks = [(f"{c} IS NULL", "is empty", f"count(*) - count({c})")]
        if t == "VARCHAR":
            checks.append((f"{c} IS NOT NULL AND {x} IS NULL", "is not a number", None))
        whole = f"isfinite({x}) AND {x} >= 0 AND {x} = floor({x})"
        checks += [
            (f"NOT isfinite({x})", "is not a finite number", None),
            (f"isfinite({x}) AND {x} < 0", "is negative", None),
            (f"isfinite({x}) AND {x} <> floor({x})", "is not a whole number", None),
            (f"{whole} AND {exact} IS NULL", too_large, None),
        ]
        return f"coalesce({exact}, TRY_CAST({x} AS BIGINT))", checks
    raise InputError(
        f"file {src.path}: column {src.columns[col]!r} has type {t}; play counts must be whole numbers. {NOT_CHANGED}"
    )


def time_expr(src: Source, col: str, as_type: str) -> tuple[str, list[tuple[str, str, str | None]]]:
    """SQL for a date/time column cast to ``as_type`` (DATE or TIMESTAMP) and its checks."""
    c = quote(src.columns[col])
    t = src.types[col]
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({c} AS {as_type})", [(f"{c} IS NULL", "is empty", f"count(*) - count({c})")]
    if t == "VARCHAR":
        x = f"TRY_CAST(trim({c}) AS {as_type})"
        return x, [
            (f"{c} IS NULL OR trim({c}) = ''", "is empty", None),
            (f"trim({c}) <> '' AND {x} IS NULL", "is not a date (expected YYYY-MM-DD)", None),
        ]
    raise InputError(
        f"file {src.path}: column {src.columns[col]!r} has type {t}; expected dates (YYYY-MM-DD). {NOT_CHANGED}"
    )


def run_checks(
    con: duckdb.DuckDBPyConnection, src: Source, what: str, checks: Sequence[tuple[str, str, str, str | None]]
) -> int:
    """Run ``(column, predicate, reason, quick)`` checks over the file; raise on the first failing one.

    Quick aggregates run first (from Parquet statistics where possible); a check whose quick
    aggregate is non-zero, or that has none, is counted exactly. Returns the number of rows.
    An empty file (header only) is an error.
    """
    rel = src.relation(con)
    quick = ["count(*)"] + [q or "1" for _, _, _, q in checks]
    try:
        flags = rel.aggregate(", ".join(quick)).fetchall()[0]
        n_rows = int(flags[0])
        suspect = [c for c, flag in zip(checks, flags[1:]) if flag]
        exact = ["count(*)"] + [f"count(*) FILTER (WHERE {pred})" for _, pred, _, _ in suspect]
        counts = rel.aggregate(", ".join(exact)).fetchall()[0] if suspect and n_rows else [n_rows]
    except duckdb.Error as exc:
        raise InputError(f"{what} file {src.path} cannot be read: {error_text(exc)}. {NOT_CHANGED}") from exc
    if n_rows == 0:
        raise InputError(f"{what} file {src.path} has a header but no rows. {NOT_CHANGED}")
    for (col, pred, reason, _), bad in zip(suspect, counts[1:]):
        if bad:
            rows = find_rows(con, src, pred)
            raise InputError(
                f"{what} file {src.path}, column {src.columns[col]!r}: {bad} value(s) {reason} "
                f"({rows_text(src, rows, bad)}). Fix the file and run the ingest again. {NOT_CHANGED}"
            )
    return n_rows


def find_rows(con: duckdb.DuckDBPyConnection, src: Source, pred: str) -> list[int]:
    """The first few 1-based row numbers where ``pred`` holds ([] if they cannot be located)."""
    import pyarrow as pa

    try:
        rel = src.relation(con, row_numbers=True)
        out = rel.filter(pred).order("row_no").limit(MAX_ROWS_SHOWN).project("row_no").fetchall()
    except (duckdb.Error, pa.ArrowException) as exc:  # the error message still names file and column
        log.debug("could not locate rows in %s: %s", src.path, exc)
        return []
    return [int(r[0]) for r in out]


def ids_table(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> str:
    """A temp table ``_ids(i)`` holding ``ids`` (values as parameters, never in SQL text)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _ids (i VARCHAR)")
    con.executemany("INSERT INTO _ids VALUES (?)", [[i] for i in ids])
    return "_ids"


def rows_text(src: Source, rows: Sequence[int], total: int) -> str:
    if not rows:
        return "rows not located"
    more = f" and {total - len(rows)} more" if total > len(rows) else ""
    text = "row" + ("s " if len(rows) > 1 else " ") + ", ".join(str(r) for r in rows) + more
    if src.kind == "csv":
        text += "; line" + ("s " if len(rows) > 1 else " ") + ", ".join(str(r + 1) for r in rows)
    return text + ", first data row = 1"


def refuse_duplicate_ids(con: duckdb.DuckDBPyConnection, src: Source, what: str, rule: str) -> None:
    """Raise ``InputError`` naming a few duplicated ``song_id`` values and their rows; ``rule`` says what is allowed."""
    sid = quote(src.columns["song_id"])
    rel = src.relation(con)
    dup = rel.aggregate(f"count(*) - count(DISTINCT CAST({sid} AS VARCHAR))").fetchall()[0][0]
    if not dup:
        return
    ids = [
        r[0]
        for r in rel.aggregate(f"CAST({sid} AS VARCHAR) AS i, count(*) AS n")
        .filter("n > 1")
        .order("i")
        .limit(3)
        .fetchall()
    ]
    rows = find_rows(con, src, f"CAST({sid} AS VARCHAR) IN (SELECT i FROM {ids_table(con, ids)})")
    raise InputError(
        f"{what} file {src.path}, column {src.columns['song_id']!r}: {dup} duplicate song id(s), "
        f"e.g. {', '.join(repr(i) for i in ids)} ({rows_text(src, rows, len(rows))}). {rule} {NOT_CHANGED}"
    )

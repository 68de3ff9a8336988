"""What to score: audio files, folders (recursive), list files and the DuckDB catalog's songs.

Every item gets the key it is stored under in ``predictions``: the catalog's song id when the
catalog knows the file (``songs.audio_path``), else the file's absolute path. A path that does not
exist is still an item (the scorer records why it could not be read); a folder or list file that
does not exist is an ``InputError`` before any work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from hitsong.audio.ffmpeg import FFMPEG_SUFFIXES
from hitsong.errors import InputError

log = logging.getLogger(__name__)

#: File suffixes a folder scan picks up (libsndfile's formats, plus ffmpeg's when it is installed).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}) | FFMPEG_SUFFIXES


@dataclass(frozen=True)
class Item:
    """One song to score: its key in ``predictions`` and its audio file (``""`` when it has none)."""

    song_id: str
    path: str


def folder_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, hidden entries skipped), sorted.

    Raises
    ------
    InputError
        ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    if not found:
        log.warning("%s holds no audio files (%s)", folder, ", ".join(sorted(AUDIO_SUFFIXES)))
    return sorted(found)


def list_files(list_file: Path) -> list[Path]:
    """The paths in a list file: one per line, relative to the list file's folder; ``#`` comments.

    Raises
    ------
    InputError
        The list file cannot be read as UTF-8 text.
    """
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list file {list_file}: {exc}") from exc
    base = list_file.resolve().parent
    out = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            path = Path(text).expanduser()
            out.append(path if path.is_absolute() else base / path)
    return out


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders as the audio files under them; absolute, first occurrence kept."""
    out: dict[str, Path] = {}
    for path in paths:
        path = Path(path).expanduser()
        for file in folder_files(path) if path.is_dir() else [path]:
            out.setdefault(str(file.resolve()), file.resolve())
    return list(out.values())


def file_items(files: Sequence[Path], known: dict[str, str]) -> list[Item]:
    """Items for files; ``known`` maps catalog audio paths to song ids."""
    return [Item(known.get(str(f), str(f)), str(f)) for f in files]


def catalog_items(songs: pd.DataFrame) -> list[Item]:
    """Items for catalog songs (``song_id, audio_path``); a song without audio keeps ``path=""``."""
    return [
        Item(str(s), "" if pd.isna(p) else str(p)) for s, p in zip(songs["song_id"], songs["audio_path"], strict=True)
    ]


def gather(
    *,
    paths: Sequence[Path] = (),
    list_file: Path | None = None,
    catalog: bool = False,
    db_path: Path | None = None,
    subset: str | None = None,
    released_after: date | None = None,
) -> list[Item]:
    """Every item to score, each once (catalog songs first, newest release first, then files).

    Parameters
    ----------
    paths : sequence of Path
        Audio files and folders (scanned recursively).
    list_file : Path or None
        A file listing audio paths, one per line.
    catalog : bool
        The songs of the DuckDB catalog at ``db_path``, filtered by ``subset`` and ``released_after``.
    db_path : Path or None
        The DuckDB file: the catalog, and where files get their song ids.

    Raises
    ------
    InputError
        Nothing to score, a folder or list file that cannot be read, or ``catalog`` without a database.
    """
    from hitsong.store import connect
    from hitsong.store.predictions import catalog_songs, song_ids_for_paths

    files = expand([*paths, *(list_files(list_file) if list_file is not None else [])])
    items: list[Item] = []
    have_db = db_path is not None and Path(db_path).exists()
    if catalog and not have_db:
        raise InputError(
            f"--catalog needs the DuckDB catalog, and {db_path} does not exist; run `hitsong ingest` first"
        )
    known: dict[str, str] = {}
    if have_db:
        with connect(db_path, read_only=True) as con:  # type: ignore[arg-type]
            if catalog:
                songs = catalog_songs(con, subset=subset, released_after=released_after)
                if songs.empty:
                    log.warning("the catalog %s has no songs for subset=%s released_after=%s", db_path, subset,
                                released_after)  # fmt: skip
                items.extend(catalog_items(songs))
            known = song_ids_for_paths(con, [str(f) for f in files])
    items.extend(file_items(files, known))
    first: dict[str, Item] = {}
    for item in items:
        first.setdefault(item.song_id, item)  # the first occurrence wins
    unique = list(first.values())
    if not unique:
        raise InputError("nothing to score: name audio files or folders, a --list file, or --catalog")
    return unique

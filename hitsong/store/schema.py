"""The listening store's tables, column names and split names: the one place they are defined.

Tables (DESIGN.md section 2, ARCHITECTURE.md):

- ``songs(song_id, title, artist, subset, release_date, audio_path)``: the catalogue, ids as
  text, ``audio_path`` absolute (relative paths resolve against the songs file's folder).
- ``song_stats(song_id, subset, playcount, listeners, events, hit_score, release_quarter,
  quarter_index)``: one row per song, songs without plays included with zeros (the rules of
  :mod:`hitsong.store.rules`). Aggregated once, at ingest.
- ``subset_stats(subset, songs, songs_played, listeners, events, plays)``: listeners are
  distinct users over the whole subset (not a sum over songs), also computed at ingest.
- ``window(window_start, window_end, source)``: the observation window (one row).
- ``splits(song_id, subset, split)`` and ``sample_log``: the experiment sample.
- ``ingest_log`` and ``event_files``: what was ingested, with content hashes.
"""

from __future__ import annotations

from typing import Literal

#: What ingest does with events of songs not in the catalogue.
UnknownSongs = Literal["error", "drop"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


SONG_COLUMNS: tuple[str, ...] = ("song_id", "title", "artist", "subset", "release_date", "audio_path")


AGGREGATED_COLUMNS: tuple[str, ...] = ("user_id", "song_id", "play_count")


PLAYS_COLUMNS: tuple[str, ...] = ("user_id", "song_id", "played_at")


NOT_CHANGED = "The database was not changed."


SCHEMA = """
CREATE TABLE IF NOT EXISTS songs (
    song_id VARCHAR PRIMARY KEY, title VARCHAR, artist VARCHAR, subset VARCHAR NOT NULL,
    release_date DATE NOT NULL, audio_path VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS song_stats (
    song_id VARCHAR NOT NULL, subset VARCHAR NOT NULL, playcount BIGINT NOT NULL,
    listeners BIGINT NOT NULL, events BIGINT NOT NULL, hit_score DOUBLE NOT NULL,
    release_quarter VARCHAR NOT NULL, quarter_index INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subset_stats (
    subset VARCHAR NOT NULL, songs BIGINT, songs_played BIGINT, listeners BIGINT,
    events BIGINT, plays BIGINT);
CREATE TABLE IF NOT EXISTS "window" (window_start DATE NOT NULL, window_end DATE, source VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS splits (song_id VARCHAR PRIMARY KEY, subset VARCHAR NOT NULL, split VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS sample_log (
    created_at TIMESTAMP, per_subset INTEGER, seed BIGINT, fractions VARCHAR, sample_by VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_log (
    ingest_id INTEGER PRIMARY KEY, created_at TIMESTAMP, request_key VARCHAR, songs_path VARCHAR,
    songs_sha256 VARCHAR, report JSON);
CREATE TABLE IF NOT EXISTS event_files (
    ingest_id INTEGER, path VARCHAR, sha256 VARCHAR, shape VARCHAR, rows BIGINT);
"""

"""The listening store's tables, column names and split names: the one place they are defined.

Tables (DESIGN.md section 2, ARCHITECTURE.md):

- ``songs(song_id, title, artist, subset, release_date, audio_path)``: the catalogue, ids as
  text, ``audio_path`` absolute (relative paths resolve against the songs file's folder).
- ``song_stats(song_id, subset, playcount, listeners, events, hit_score, release_quarter,
  quarter_index)``: one row per catalogue song, songs without plays included with zeros (the
  rules of :mod:`hitsong.store.rules`). A view of ``song_totals`` (aggregated at ingest), so
  the counts are stored once and an append writes only the totals of the songs it touched.
- ``subset_stats(subset, songs, songs_played, listeners, events, plays)``: a view; listeners
  are distinct users over the whole subset (not a sum over songs), counted at ingest.
- ``window(window_start, window_end, source)``: the observation window (one row).
- ``splits(song_id, subset, split)`` and ``sample_log``: the experiment sample.
- ``ingest_log`` and ``event_files``: what was ingested; one ``event_files`` row per events file
  counted (path, SHA-256, size, modification time), so that no file is counted twice.

What makes an ingest incremental (``hitsong.store.ingest``; the key sets of
``hitsong.store.keysets`` sit beside the file in ``<db>.pairs/``):

- ``listening_state(format, user_keys, source, listeners)``: one row. ``user_keys`` is
  ``numbers`` (user ids are whole numbers 0..2**32-1 and number themselves) or ``dictionary``
  (``user_numbers`` numbers them); ``source`` is ``events`` (exact pairs kept) or ``song_stats``
  (per-song aggregates given by a warehouse); ``listeners`` is distinct users overall.
- ``song_numbers(song_id, song_no)`` and ``subset_numbers(subset, subset_no, listeners)``: stable
  numbers of every song and subset ever in a catalogue (keys use them), and each subset's
  distinct listeners.
- ``catalogue_numbers(song_no, subset_no, song_key)``: the current catalogue by number: each
  song's number, its subset's number, and its id as a whole number where the id is one (``'7'``:
  7; ``'007'`` or text: NULL). An append of events with whole-number ids finds its songs here
  without reading text.
- ``song_totals(song_no, plays, events, listeners)``: per song, over every events file counted.
- ``key_runs(keyset, file, keys)``: the run files that make up each key set.
"""

from __future__ import annotations

from typing import Literal

from hitsong.store.rules import hit_score_sql, months_sql, quarter_index_sql, quarter_label_sql

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
CREATE TABLE IF NOT EXISTS "window" (window_start DATE NOT NULL, window_end DATE, source VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS splits (song_id VARCHAR PRIMARY KEY, subset VARCHAR NOT NULL, split VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS sample_log (
    created_at TIMESTAMP, per_subset INTEGER, seed BIGINT, fractions VARCHAR, sample_by VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_log (
    ingest_id INTEGER PRIMARY KEY, created_at TIMESTAMP, request_key VARCHAR, songs_path VARCHAR,
    songs_sha256 VARCHAR, report JSON);
CREATE TABLE IF NOT EXISTS event_files (
    ingest_id INTEGER, path VARCHAR, sha256 VARCHAR, shape VARCHAR, rows BIGINT, size BIGINT, mtime_ns BIGINT);
CREATE TABLE IF NOT EXISTS listening_state (
    format INTEGER NOT NULL, user_keys VARCHAR NOT NULL, source VARCHAR NOT NULL, listeners BIGINT);
CREATE TABLE IF NOT EXISTS song_numbers (song_id VARCHAR NOT NULL, song_no INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subset_numbers (subset VARCHAR NOT NULL, subset_no INTEGER NOT NULL, listeners BIGINT);
CREATE TABLE IF NOT EXISTS catalogue_numbers (song_no INTEGER NOT NULL, subset_no INTEGER NOT NULL, song_key BIGINT);
CREATE TABLE IF NOT EXISTS song_totals (
    song_no INTEGER NOT NULL, plays BIGINT NOT NULL, events BIGINT NOT NULL, listeners BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS user_numbers (user_id VARCHAR NOT NULL, user_no BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS key_runs (keyset VARCHAR NOT NULL, file VARCHAR NOT NULL, keys BIGINT NOT NULL);
"""

VIEWS = f"""
CREATE OR REPLACE VIEW song_stats AS
WITH q AS (
    SELECT s.song_id, s.subset, t.plays AS playcount, t.listeners, t.events,
           {months_sql("s.release_date", "w.window_start")} AS months
    FROM songs s JOIN song_numbers n USING (song_id) JOIN song_totals t USING (song_no) CROSS JOIN "window" w)
SELECT song_id, subset, playcount, listeners, events, {hit_score_sql("playcount", "listeners")} AS hit_score,
       {quarter_label_sql("months")} AS release_quarter, CAST({quarter_index_sql("months")} AS INTEGER) AS quarter_index
FROM q;
CREATE OR REPLACE VIEW subset_stats AS
SELECT st.subset, count(*) AS songs, count(*) FILTER (WHERE playcount > 0) AS songs_played,
       any_value(b.listeners) AS listeners, CAST(sum(events) AS BIGINT) AS events,
       CAST(sum(playcount) AS BIGINT) AS plays
FROM song_stats st LEFT JOIN subset_numbers b USING (subset) GROUP BY st.subset;
"""

#: Version of the incremental layout (``listening_state.format``); a store without it is rebuilt.
#: 3: ``song_stats`` and ``subset_stats`` are views of the totals (2 stored them as tables).
#: 4: ``catalogue_numbers`` (a format-3 store gets it at its next ingest, which then numbers the
#: catalogue as if it had changed).
STORE_FORMAT = 4

#: Earlier formats an ingest brings up to date.
UPGRADABLE_FORMATS = (3,)

#: The tables an ingest rewrites or appends to (the others belong to sampling and features).
LISTENING_TABLES = (
    "songs",
    "song_stats",
    "subset_stats",
    "window",
    "event_files",
    "listening_state",
    "song_numbers",
    "subset_numbers",
    "catalogue_numbers",
    "song_totals",
    "user_numbers",
    "key_runs",
)

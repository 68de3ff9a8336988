"""The staging database ingests work in: kept between ingests of a process, never shared between them."""

from __future__ import annotations

import os
import threading

import duckdb
import numpy as np

import hitsong.store.staging as staging_module
from hitsong.store.staging import staging


def _kept() -> duckdb.DuckDBPyConnection | None:
    return staging_module._kept.get(os.getpid())


def test_ingests_reuse_one_database_but_not_each_others_tables_settings_or_attachments(tmp_path):
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with staging(tmp_path / "a.tmp", 256) as con:
        con.execute("CREATE TEMP TABLE leftover AS SELECT 1 AS x")
        con.register("_arrays", {"x": np.arange(2)})
        con.execute("ATTACH $p AS store (READ_ONLY)", {"p": str(other)})  # as if its detach had failed
        first = _kept()
    assert first is not None
    with staging(tmp_path / "b.tmp", 128) as con:
        assert _kept() is first
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'leftover'").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = '_arrays'").fetchall() == [(0,)]
        assert "store" not in {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [("122.0 MiB",)]
        assert con.execute("SELECT current_setting('temp_directory')").fetchall() == [(str(tmp_path / "b.tmp"),)]


def test_a_database_that_spilled_is_closed_and_its_spill_folder_removed(tmp_path):
    spill = tmp_path / "db.tmp"
    with staging(spill, 64) as con:
        first = _kept()
        con.execute("CREATE TEMP TABLE big AS SELECT range AS a FROM range(12_000_000)")  # ~96 MB > 64 MB
        assert spill.is_dir()
    assert not spill.exists()
    assert _kept() is None
    with staging(tmp_path / "next.tmp", 64) as con:  # DuckDB cannot move a used spill folder: a new database
        assert _kept() is not first
        assert con.execute("SELECT 1").fetchall() == [(1,)]


def test_an_ingest_in_another_thread_meanwhile_gets_its_own_database(tmp_path):
    seen: list[duckdb.DuckDBPyConnection | None] = []

    def other() -> None:
        with staging(tmp_path / "b.tmp", 64) as con:
            seen.append(_kept())
            con.execute("CREATE TEMP TABLE mine AS SELECT 2 AS x")
            seen.append(con)

    with staging(tmp_path / "a.tmp", 256) as con:
        kept = _kept()
        con.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        assert con.execute("SELECT x FROM mine").fetchall() == [(1,)]
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [("244.1 MiB",)]
    assert seen[0] is kept  # the kept one exists, but the other thread's ingest did not take it
    assert seen[1] is not kept and _kept() is kept

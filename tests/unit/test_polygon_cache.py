"""``adapters.polygon.cache.HistoryCache``: parquet files, atomic writes, corrupt-file handling."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adapters.polygon.cache import HistoryCache


def _table() -> pa.Table:
    return pa.table({"t": pa.array([1, 2, 3], pa.int64()), "c": [1.5, 2.5, 3.5]})


def test_store_when_loaded_then_same_table_and_no_temp_files(tmp_path: Path) -> None:
    cache = HistoryCache(tmp_path)
    path = cache.store("minute_aggs", "I:VIX", "2026-11-24", table=_table())
    assert path == tmp_path / "minute_aggs" / "I_VIX" / "2026-11-24.parquet"
    loaded = cache.load("minute_aggs", "I:VIX", "2026-11-24", columns=["t", "c"])
    assert loaded is not None
    assert loaded.column("c").to_pylist() == [1.5, 2.5, 3.5]
    assert [p.name for p in path.parent.iterdir()] == ["2026-11-24.parquet"]


def test_load_when_absent_then_none(tmp_path: Path) -> None:
    assert HistoryCache(tmp_path).load("minute_aggs", "SPY", "2026-11-24") is None


def test_load_when_file_corrupt_then_logged_deleted_and_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = HistoryCache(tmp_path)
    path = cache.store("option_quotes", "SPY", "2026-11-24", "2026-11-24", table=_table())
    path.write_bytes(path.read_bytes()[:40])  # truncated, as after a crash without atomicity
    with caplog.at_level(logging.WARNING, logger="adapters.polygon.cache"):
        assert cache.load("option_quotes", "SPY", "2026-11-24", "2026-11-24") is None
    assert "unusable file" in caplog.text
    assert not path.exists()


def test_load_when_columns_missing_or_foreign_file_then_none(tmp_path: Path) -> None:
    cache = HistoryCache(tmp_path)
    cache.store("daily_aggs", "SPY", "2026-11-23", table=_table())
    assert cache.load("daily_aggs", "SPY", "2026-11-23", columns=["t", "o"]) is None
    foreign = cache.path("daily_aggs", "SPY", "2026-11-20")
    foreign.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_table(), foreign)  # no schema-version metadata: not ours
    assert cache.load("daily_aggs", "SPY", "2026-11-20") is None


def test_path_when_key_part_is_traversal_then_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache key"):
        HistoryCache(tmp_path).path("minute_aggs", "..", "x")

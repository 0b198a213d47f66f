"""Parquet cache of Polygon history under one directory (the caller decides what is final).

Layout (one file per key, ``:`` in a ticker never reaches a file name)::

    {root}/minute_aggs/{SYMBOL}/{YYYY-MM-DD}.parquet          minute aggregates of one day
    {root}/daily_aggs/{SYMBOL}/{YYYY-MM-DD}.parquet           the daily bar of one session
    {root}/contracts/{UNDERLYING}/{YYYY-MM-DD}_h{N}.parquet   contracts listed that day (N-day horizon)
    {root}/contracts/{UNDERLYING}/{YYYY-MM-DD}_e{EXPIRY}.parquet   one expiry's contracts that day
    {root}/option_quotes/{UNDERLYING}/{EXPIRY}/{YYYY-MM-DD}.parquet   every contract's last quote
                                                              at each session minute, one file

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a reader never
sees half a file. A file that cannot be read, lacks a column or carries another schema version is
logged, deleted and reported as missing, so the caller downloads it again. Only completed days
should be stored: this class does not know what "complete" means.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_META_KEY = b"dte_polygon_cache"
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


def _safe(part: str) -> str:
    cleaned = _SAFE.sub("_", part)
    if not cleaned or cleaned in (".", ".."):
        raise ValueError(f"bad cache key part {part!r}")
    return cleaned


class HistoryCache:
    """Parquet files keyed by (kind, parts...): ``load`` / ``store`` whole pyarrow tables."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, kind: str, *parts: str) -> Path:
        if not parts:
            raise ValueError("a cache key needs at least one part")
        *dirs, name = (_safe(p) for p in parts)
        return self.root.joinpath(_safe(kind), *dirs, f"{name}.parquet")

    def load(self, kind: str, *parts: str, columns: Sequence[str] = ()) -> pa.Table | None:
        """The stored table, or None if absent or unusable (an unusable file is deleted)."""
        path = self.path(kind, *parts)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            meta = table.schema.metadata or {}
            version = meta.get(_META_KEY, b"").decode()
            if version != SCHEMA_VERSION:
                raise ValueError(f"schema version {version!r}, expected {SCHEMA_VERSION!r}")
            missing = [c for c in columns if c not in table.column_names]
            if missing:
                raise ValueError(f"missing columns {missing}")
        except (OSError, ValueError, pa.ArrowException) as exc:
            log.warning(
                "polygon cache: unusable file %s (%s: %s); it will be downloaded again",
                path,
                type(exc).__name__,
                exc,
            )
            self._remove(path)
            return None
        return table

    def store(self, kind: str, *parts: str, table: pa.Table) -> Path:
        """Write ``table`` atomically (temporary file + rename); returns the final path."""
        path = self.path(kind, *parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = SCHEMA_VERSION.encode()
        table = table.replace_schema_metadata(meta)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                self._remove(tmp)
        return path

    def exists(self, kind: str, *parts: str) -> bool:
        return self.path(kind, *parts).exists()

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - permissions; the next store overwrites it
            log.warning("polygon cache: could not delete %s: %s", path, exc)

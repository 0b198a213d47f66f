"""Implementations of the ``Metrics`` port: InfluxDB v2 (batching), no-op, and in-memory.

All three validate a point the same way, so a bad name fails in development and tests, not in
live trading:

* measurement, tag keys and field names match ``[A-Za-z][A-Za-z0-9_]*`` (at most 128 characters).
  That keeps them legal in Flux, InfluxQL *and* PromQL: VictoriaMetrics (the test peer, also a
  valid production sink) names a series ``{measurement}_{field}`` and PromQL cannot select names
  with ``-`` or ``.`` in them. A bad name raises ``ValueError`` (a programming error).
* tag values are non-empty strings without line breaks (``ValueError`` otherwise);
* field values are real numbers, written as floats (InfluxDB rejects a field that changes type);
  a NaN or infinite field is dropped and counted (``stats.dropped_fields``) with a warning logged
  the first time per ``measurement.field``; a point left with no field is dropped and counted
  (``stats.dropped_points``);
* ``ts`` must be timezone-aware (``ValueError`` otherwise); it is sent as UTC microseconds.

``InfluxMetrics.write`` only appends to the client's in-memory batch: the HTTP write happens on a
background thread of influxdb-client's batching ``WriteApi``. Write failures never reach the
caller: they are counted (``stats.failed``) and logged, one warning per outage and "metrics
restored" on the next success. The token is never logged. ``flush()`` sends what is buffered and
waits (bounded by ``flush_timeout_s``) for the outcome.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

PRECISION = "us"  # datetime's resolution; VictoriaMetrics keeps milliseconds of it
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class MetricPoint:
    """One validated point: the fields are finite floats, ``ts`` is timezone-aware."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, float]
    ts: datetime


@dataclass(frozen=True)
class MetricsStats:
    """Counters in points since construction.

    ``accepted``: points handed to the sink; ``written``/``failed``: points whose batch the server
    took / did not take; ``pending``: accepted and not yet settled; ``dropped_fields``: NaN/inf
    fields removed; ``dropped_points``: points not sent at all (no finite field left, buffer full,
    or written after ``close()``); ``failed_batches``: HTTP writes that failed after retries.
    """

    accepted: int = 0
    written: int = 0
    failed: int = 0
    pending: int = 0
    dropped_fields: int = 0
    dropped_points: int = 0
    failed_batches: int = 0


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(f"invalid {kind} name {name!r}: must match {NAME_PATTERN.pattern}")
    return name


class _PointValidator:
    """Shared validation and the NaN/inf bookkeeping of every Metrics implementation."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._dropped_fields = 0
        self._dropped_points = 0
        self._warned: set[str] = set()

    def _validate(
        self,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, float],
        ts: datetime,
    ) -> MetricPoint | None:
        """The point to send, ``None`` if nothing finite is left; raises ``ValueError``."""
        _check_name("measurement", measurement)
        clean_tags: dict[str, str] = {}
        for key, value in tags.items():
            _check_name("tag", key)
            if not isinstance(value, str) or not value or "\n" in value or "\r" in value:
                raise ValueError(f"tag {key!r} of {measurement!r} has an invalid value {value!r}")
            clean_tags[key] = value
        if not fields:
            raise ValueError(f"a point of {measurement!r} needs at least one field")
        if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"ts of {measurement!r} must be a timezone-aware datetime: {ts!r}")
        clean_fields: dict[str, float] = {}
        dropped: list[str] = []
        for name, raw in fields.items():
            _check_name("field", name)
            if isinstance(raw, bool) or not isinstance(raw, Real):
                raise ValueError(f"field {name!r} of {measurement!r} is not a number: {raw!r}")
            number = float(raw)
            if math.isfinite(number):
                clean_fields[name] = number
            else:
                dropped.append(name)
        if dropped:
            self._drop_fields(measurement, dropped)
        if not clean_fields:
            with self._guard:
                self._dropped_points += 1
            return None
        return MetricPoint(
            measurement, MappingProxyType(clean_tags), MappingProxyType(clean_fields), ts
        )

    def _drop_fields(self, measurement: str, names: list[str]) -> None:
        with self._guard:
            self._dropped_fields += len(names)
            new = [n for n in names if f"{measurement}.{n}" not in self._warned]
            self._warned.update(f"{measurement}.{n}" for n in new)
            total = self._dropped_fields
        if new:
            log.warning(
                "metrics: dropped non-finite field(s) %s of %r (not sent; %d dropped so far; "
                "later drops of the same field are only counted)",
                ", ".join(new),
                measurement,
                total,
            )


class NullMetrics(_PointValidator):
    """Validates and discards every point (development without InfluxDB)."""

    def write(
        self,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, float],
        ts: datetime,
    ) -> None:
        self._validate(measurement, tags, fields, ts)

    @property
    def stats(self) -> MetricsStats:
        with self._guard:
            return MetricsStats(
                dropped_fields=self._dropped_fields, dropped_points=self._dropped_points
            )

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryMetrics(_PointValidator):
    """Keeps the last ``max_points`` validated points in memory (demo, tests)."""

    def __init__(self, max_points: int = 100_000) -> None:
        super().__init__()
        self._points: deque[MetricPoint] = deque(maxlen=max_points)
        self._accepted = 0

    def write(
        self,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, float],
        ts: datetime,
    ) -> None:
        point = self._validate(measurement, tags, fields, ts)
        if point is not None:
            with self._guard:
                self._points.append(point)
                self._accepted += 1

    @property
    def points(self) -> list[MetricPoint]:
        """A copy of the kept points, oldest first."""
        with self._guard:
            return list(self._points)

    def of(self, measurement: str) -> list[MetricPoint]:
        return [p for p in self.points if p.measurement == measurement]

    @property
    def stats(self) -> MetricsStats:
        with self._guard:
            return MetricsStats(
                accepted=self._accepted,
                written=self._accepted,
                dropped_fields=self._dropped_fields,
                dropped_points=self._dropped_points,
            )

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class _Counters:
    accepted: int = 0
    written: int = 0
    failed: int = 0
    overflow: int = 0
    failed_batches: int = 0
    outage: bool = False
    warned_overflow: bool = False
    warned_closed: bool = False


class InfluxMetrics(_PointValidator):
    """``Metrics`` on the InfluxDB v2 write API (``/api/v2/write``) in batching mode.

    A point is buffered until ``batch_size`` points or ``flush_interval_ms`` have gone by, then a
    background thread posts the batch (``timeout_ms`` per request, ``max_retries`` retries with
    back-off capped by ``max_retry_time_ms``). At most ``max_pending`` unsettled points are held;
    beyond that new points are dropped and counted, so an outage cannot eat the host's memory.
    Nothing connects, and no thread starts, until the first ``write``.
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        batch_size: int = 500,
        flush_interval_ms: int = 1_000,
        timeout_ms: int = 5_000,
        max_retries: int = 3,
        retry_interval_ms: int = 1_000,
        max_retry_time_ms: int = 30_000,
        flush_timeout_s: float = 10.0,
        max_pending: int = 50_000,
        default_tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or flush_interval_ms <= 0 or timeout_ms <= 0 or max_pending <= 0:
            raise ValueError("batch_size, flush_interval_ms, timeout_ms, max_pending must be > 0")
        if not bucket or not org:
            raise ValueError("org and bucket are required")
        self.url = _redact(url)
        self.org = org
        self.bucket = bucket
        self._url = url
        self._token = token
        self._default_tags = {
            _check_name("tag", k): v for k, v in (default_tags or {}).items() if v
        }
        self._batch_size = batch_size
        self._flush_interval_ms = flush_interval_ms
        self._timeout_ms = timeout_ms
        self._max_retries = max_retries
        self._retry_interval_ms = retry_interval_ms
        self._max_retry_time_ms = max_retry_time_ms
        self._flush_timeout_s = flush_timeout_s
        self._max_pending = max_pending
        self._api_lock = threading.Lock()
        self._client: Any = None
        self._api: Any = None
        self._scheduler: Any = None
        self._closed = False
        self._counters = _Counters()

    def __repr__(self) -> str:
        return f"InfluxMetrics({self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    # -- the Metrics port -----------------------------------------------------------------------

    def write(
        self,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, float],
        ts: datetime,
    ) -> None:
        point = self._validate(measurement, {**self._default_tags, **tags}, fields, ts)
        if point is None:
            return
        record = self._to_record(point)
        with self._api_lock:
            if self._closed:
                self._drop_closed()
                return
            with self._guard:
                c = self._counters
                if c.accepted - c.written - c.failed >= self._max_pending:
                    c.overflow += 1
                    warn = not c.warned_overflow
                    c.warned_overflow = True
                else:
                    c.accepted += 1
                    warn = None
            if warn is not None:
                if warn:
                    log.warning(
                        "metrics: %d points waiting for %s; dropping new points until it drains",
                        self._max_pending,
                        self.url,
                    )
                return
            try:
                self._write_api().write(
                    bucket=self.bucket, org=self.org, record=record, write_precision=PRECISION
                )
            except Exception as error:  # the batching write only enqueues; be safe anyway
                self._settle_failed(1, error)

    # -- extras ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Send everything buffered now and wait (up to ``flush_timeout_s``) for the outcome.

        influxdb-client 1.x's ``WriteApi.flush()`` is a no-op, so this closes the current batching
        ``WriteApi`` (which posts the open batch and waits for in-flight ones) and lets the next
        ``write`` start a fresh one.
        """
        with self._api_lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()

    def close(self) -> None:
        """Flush, then release the HTTP client and threads; later writes are dropped, counted."""
        with self._api_lock:
            self._closed = True
        self.flush()
        with self._api_lock:
            client, self._client = self._client, None
            scheduler, self._scheduler = self._scheduler, None
        if client is not None:
            client.close()
        if scheduler is not None:
            scheduler.executor.shutdown(wait=False)

    @property
    def stats(self) -> MetricsStats:
        with self._guard:
            c = self._counters
            return MetricsStats(
                accepted=c.accepted,
                written=c.written,
                failed=c.failed,
                pending=c.accepted - c.written - c.failed,
                dropped_fields=self._dropped_fields,
                dropped_points=self._dropped_points + c.overflow,
                failed_batches=c.failed_batches,
            )

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _to_record(point: MetricPoint) -> dict[str, Any]:
        """The client's dictionary form of a point (it escapes line protocol itself)."""
        return {
            "measurement": point.measurement,
            "tags": dict(point.tags),
            "fields": dict(point.fields),
            "time": point.ts.astimezone(UTC),
        }

    def _write_api(self) -> Any:
        """The current batching WriteApi (created on first use); caller holds ``_api_lock``."""
        if self._api is None:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import WriteOptions
            from reactivex.scheduler import ThreadPoolScheduler

            if self._client is None:
                self._client = InfluxDBClient(
                    url=self._url, token=self._token, org=self.org, timeout=self._timeout_ms
                )
                # Our own sender thread: WriteOptions' default scheduler is shared process-wide.
                self._scheduler = ThreadPoolScheduler(max_workers=1)
            options = WriteOptions(
                batch_size=self._batch_size,
                flush_interval=self._flush_interval_ms,
                retry_interval=self._retry_interval_ms,
                max_retries=self._max_retries,
                max_retry_time=self._max_retry_time_ms if self._max_retries > 0 else 0,
                max_retry_delay=max(self._retry_interval_ms, self._max_retry_time_ms // 2),
                max_close_wait=int(self._flush_timeout_s * 1000),
                write_scheduler=self._scheduler,
            )
            self._api = self._client.write_api(
                write_options=options,
                success_callback=self._on_success,
                error_callback=self._on_error,
                retry_callback=self._on_retry,
            )
        return self._api

    @staticmethod
    def _lines(data: bytes | str) -> int:
        body = data.encode() if isinstance(data, str) else data
        return body.count(b"\n") + 1 if body else 0

    def _on_success(self, conf: tuple[str, str, str], data: bytes | str) -> None:
        with self._guard:
            c = self._counters
            c.written += self._lines(data)
            restored = c.outage
            c.outage = False
            if c.accepted - c.written - c.failed < self._max_pending // 2:
                c.warned_overflow = False
            failed = c.failed
        if restored:
            log.info("metrics restored: %s accepts writes again (%d points lost)", self.url, failed)

    def _on_error(self, conf: tuple[str, str, str], data: bytes | str, error: Exception) -> None:
        self._settle_failed(self._lines(data), error)

    def _on_retry(self, conf: tuple[str, str, str], data: bytes | str, error: Exception) -> None:
        log.debug("metrics: retrying a batch to %s: %s", self.url, self._describe(error))

    def _settle_failed(self, points: int, error: BaseException) -> None:
        with self._guard:
            c = self._counters
            c.failed += points
            c.failed_batches += 1
            first = not c.outage
            c.outage = True
            failed = c.failed
        if first:
            log.warning(
                "metrics: write of %d point(s) to %s failed (%s); points dropped, trading "
                "continues; further failures are counted until a write succeeds",
                points,
                self.url,
                self._describe(error),
            )
        else:
            log.debug("metrics: another batch failed (%d points lost so far)", failed)

    def _drop_closed(self) -> None:
        with self._guard:
            self._dropped_points += 1
            warn = not self._counters.warned_closed
            self._counters.warned_closed = True
        if warn:
            log.warning("metrics: write after close() to %s dropped", self.url)

    def _describe(self, error: BaseException) -> str:
        text = f"{type(error).__name__}: {error}"
        if self._token:
            text = text.replace(self._token, "***")
        return text[:500]

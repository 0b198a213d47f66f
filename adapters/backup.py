"""Backups of the trade store: dump, restore-verify, retention and restore.

What a backup is
----------------
* SQLite: a page copy made with SQLite's online backup API (``sqlite3.Connection.backup``) while
  writers keep going, saved as ``<dir>/dte-<YYYYmmddTHHMMSSZ>.sqlite3`` in rollback-journal mode
  (one self-contained file, no ``-wal``).
* PostgreSQL: ``pg_dump --format=custom`` (zlib-compressed data blocks, restorable with
  ``pg_restore``), saved as ``<dir>/dte-<YYYYmmddTHHMMSSZ>.dump``.

The stamp is the UTC time of the dump; retention reads it from the name. Files are written as
``<name>.partial`` and renamed when complete, so a crash never leaves a half-written file under a
valid name. A backup that fails verification is moved to ``<dir>/rejected/``: every file at the
top of ``<dir>`` with a backup name has been restore-verified.

What verification compares, and why
------------------------------------
The question is "does this file give back the database as it was when it was dumped?". So the row
count of every table of the database (all of them, ``alembic_version`` included, not only the ORM
tables) is read **inside the snapshot the dump is made from**:

* SQLite: the counts and the backup run on one connection inside one read transaction; the backup
  API reuses an open read transaction of the source, so both see the same snapshot even while the
  trading loop writes.
* PostgreSQL: a ``REPEATABLE READ`` transaction exports its snapshot (``pg_export_snapshot()``),
  counts the rows and stays open while ``pg_dump --snapshot=<id>`` dumps that very snapshot.

The file is then restored into a scratch database (SQLite: a copy in a temporary directory checked
with ``PRAGMA integrity_check``; PostgreSQL: ``CREATE DATABASE dte_verify_<hex>`` + ``pg_restore
--exit-on-error``, dropped afterwards) whose row counts must equal the snapshot's exactly: same
tables, same counts. Concurrent writes can therefore never cause a false alarm, and any difference
is a defect of the file. The sha256 taken right after the dump is recomputed as well, so a file
changed after it was written fails even if it still happens to restore. Row counts do not prove
every value; the bytes are covered by ``integrity_check`` (SQLite) and by pg_restore reading every
compressed block and COPY stream (PostgreSQL).

Restore
-------
``stage_restore(file, url)`` first proves the file: a kind it recognises, ``PRAGMA
integrity_check`` on a copy (SQLite) or ``pg_restore --list`` plus a full restore into a scratch
database (PostgreSQL), and an ``alembic_version`` naming a revision this code knows. Only then does
``StagedRestore.apply()`` migrate the staged copy to head, keep a copy of the current database and
swap: SQLite ``os.replace`` of the file (the current one is kept as ``<db>.pre-restore-<stamp>``,
byte for byte if SQLite can no longer read it), PostgreSQL ``DROP DATABASE ... WITH (FORCE)`` +
``ALTER DATABASE <staged> RENAME`` (the current one is kept as ``pre-restore-<db>-<stamp>.dump``
next to the backup file). The staged PostgreSQL database is created by the connecting role from
``template0`` and restored with ``--no-owner``: the database-level owner, settings and grants of
the old database are not carried over (table grants are). A corrupted file never touches the target. Stop the worker and
every ``dte`` process using the database before restoring: a process that keeps the old SQLite
file open keeps writing to the replaced file.

Passwords never appear in messages: URLs are rendered masked, subprocesses get the password in
``PGPASSWORD`` (not on their command line) and their stderr is scrubbed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import URL

from adapters.store import MIGRATIONS_DIR, TradeStore, normalize_url

SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"
SUFFIXES: Final = {SQLITE: ".sqlite3", POSTGRESQL: ".dump"}
REJECTED: Final = "rejected"
PARTIAL: Final = ".partial"
STAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
BACKUP_NAME: Final = re.compile(
    r"^dte-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<seq>\d+))?(?P<suffix>\.sqlite3|\.dump)$"
)
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
PGDMP_MAGIC: Final = b"PGDMP"
SUBPROCESS_TIMEOUT_S: Final = 3600.0
_MAINTENANCE_DB: Final = "postgres"


class BackupError(RuntimeError):
    """A backup, verification or restore step failed (the message never holds a password)."""


class CorruptBackupError(BackupError):
    """The backup file cannot be restored, or restores to something else than was dumped."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A freshly written backup and what it must restore to (``source_counts``)."""

    path: Path
    kind: str
    taken_at: datetime
    size_bytes: int
    sha256: str
    source_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of restoring a backup into a scratch database and comparing it with its source."""

    ok: bool
    sha256: str
    restored_counts: dict[str, int]
    problems: tuple[str, ...]

    @property
    def message(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        tables = len(self.restored_counts)
        rows = sum(self.restored_counts.values())
        return f"restore-verified: {tables} tables, {rows} rows, counts equal to the source"


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """What was recorded for one backup attempt; ``path`` is where the file ended up."""

    backup_id: int | None
    status: str
    kind: str
    path: Path | None
    taken_at: datetime
    size_bytes: int
    sha256: str
    row_counts: dict[str, int]
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class BackupEntry:
    """A file in the backup directory with a backup name."""

    path: Path
    kind: str
    taken_at: datetime


@dataclass(frozen=True, slots=True)
class RestoreResult:
    target: str  # masked URL
    revision: str
    counts: dict[str, int]  # every table of the restored database, after migrate()
    previous_copy: Path | None  # the target as it was before, None if it did not exist


# --------------------------------------------------------------------------------------------
# URLs, names, files
# --------------------------------------------------------------------------------------------


def url_kind(url: str | URL) -> str:
    """The backend of ``url``: "sqlite" or "postgresql" (BackupError for any other)."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend not in SUFFIXES:
        raise BackupError(f"cannot back up a {backend!r} database: only SQLite and PostgreSQL")
    return backend


def mask_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***``."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def redact(text: str, url: str | URL) -> str:
    """``text`` with the password of ``url`` (if any) replaced by ``***``."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    password = parsed.password
    if password:
        text = text.replace(str(password), "***")
    return text


def backup_name(kind: str, at: datetime, seq: int = 0) -> str:
    """``dte-<UTC stamp>[-seq].<suffix>``."""
    stamp = at.astimezone(UTC).strftime(STAMP_FORMAT)
    return f"dte-{stamp}{f'-{seq}' if seq else ''}{SUFFIXES[kind]}"


def parse_backup_name(name: str) -> tuple[datetime, str] | None:
    """(UTC time, kind) of a backup file name; None for any other name."""
    match = BACKUP_NAME.match(name)
    if match is None:
        return None
    at = datetime.strptime(match["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    kind = SQLITE if match["suffix"] == SUFFIXES[SQLITE] else POSTGRESQL
    return at, kind


def _sequence(name: str) -> int:
    match = BACKUP_NAME.match(name)
    return int(match["seq"]) if match is not None and match["seq"] else 0


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def detect_kind(path: Path) -> str:
    """The kind of a backup file from its first bytes; CorruptBackupError if neither."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc
    if head == SQLITE_MAGIC:
        return SQLITE
    if head.startswith(PGDMP_MAGIC):
        return POSTGRESQL
    raise CorruptBackupError(
        f"{path} is neither a SQLite database nor a pg_dump custom archive (corrupted?)"
    )


def _free_path(directory: Path, kind: str, at: datetime) -> Path:
    for seq in range(1000):
        candidate = directory / backup_name(kind, at, seq)
        if not candidate.exists() and not candidate.with_name(candidate.name + PARTIAL).exists():
            return candidate
    raise BackupError(f"no free backup name in {directory} for {at.isoformat()}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _known_revision(revision: str | None) -> str:
    """``revision`` if the migrations of this code know it, else CorruptBackupError."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    if not revision:
        raise CorruptBackupError("the backup has no alembic_version row: not a dte ledger")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        found = ScriptDirectory.from_config(cfg).get_revision(revision)
    except (CommandError, RevisionError):
        found = None
    if found is None:
        raise CorruptBackupError(
            f"the backup is at schema revision {revision!r}, unknown to this build (newer code?)"
        )
    return revision


def _compare_counts(expected: Mapping[str, int], actual: Mapping[str, int]) -> list[str]:
    """Human-readable differences between two {table: rows} maps (empty when equal)."""
    diffs: list[str] = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            diffs.append(f"{table}: missing from the restored copy")
        elif table not in expected:
            diffs.append(f"{table}: not in the source")
        elif expected[table] != actual[table]:
            diffs.append(f"{table}: {expected[table]} rows in the source, {actual[table]} restored")
    return diffs


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


def _sqlite_file(url: URL) -> Path:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise BackupError("cannot back up an in-memory SQLite database")
    return Path(database).expanduser()


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    # autocommit at the driver level: we issue BEGIN/COMMIT ourselves
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    return {
        name: int(conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0])
        for name in names
    }


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def _sqlite_check(path: Path) -> tuple[dict[str, int], str | None]:
    """``integrity_check`` then (row counts, alembic revision) of a SQLite file we own."""
    try:
        with closing(_sqlite_connect(path)) as conn:
            conn.text_factory = lambda raw: raw.decode("utf-8", "replace")  # damaged text
            problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise CorruptBackupError("PRAGMA integrity_check: " + "; ".join(problems[:5]))
            return _sqlite_counts(conn), _sqlite_revision(conn)
    except sqlite3.DatabaseError as exc:
        raise CorruptBackupError(f"SQLite cannot read the file: {exc}") from exc
    except UnicodeDecodeError as exc:  # SQLite's error text quoted damaged bytes
        raise CorruptBackupError(f"SQLite cannot read the file: malformed ({exc.reason})") from exc


def _sqlite_snapshot_copy(source: Path, dest: Path) -> dict[str, int]:
    """Copy ``source`` into ``dest`` with the online backup API; returns the row counts of the
    very snapshot that was copied (same connection, same read transaction)."""
    if not source.is_file():
        raise BackupError(f"SQLite database {source} does not exist")
    with closing(_sqlite_connect(source)) as src, closing(sqlite3.connect(str(dest))) as dst:
        src.execute("BEGIN")
        try:
            counts = _sqlite_counts(src)  # the first read fixes the snapshot
            src.backup(dst)  # reuses src's open read transaction: the same snapshot
        finally:
            src.execute("COMMIT")
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal
    _fsync(dest)
    return counts


def _sqlite_checkpoint(path: Path, single_file: bool) -> None:
    """Fold the WAL into the main file (BackupError if another connection prevents it);
    ``single_file``: also leave the database in rollback-journal mode (no ``-wal`` at all)."""
    with closing(_sqlite_connect(path)) as conn:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy is not None and busy[0]:
            raise BackupError(
                f"{path} is in use (WAL checkpoint blocked): stop the worker and every dte "
                "process using it, then retry"
            )
        if single_file:
            conn.execute("PRAGMA journal_mode = DELETE")


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """(conninfo URL without password, environment for pg_* tools with PGPASSWORD set)."""
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return conninfo, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found on PATH: install the PostgreSQL client tools "
            "(same major version as the server or newer)"
        )
    return found


def _run(args: list[str], url: URL, env: dict[str, str], what: str) -> str:
    """Run a pg_* tool; stdout on success, BackupError with scrubbed stderr otherwise."""
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{what} timed out after {exc.timeout:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        raise BackupError(f"{what} failed (exit {done.returncode}): {redact(tail, url)}")
    return done.stdout


def _pg_connect(url: URL, **kwargs: Any) -> Any:
    import psycopg

    conninfo, _ = _libpq(url)
    if url.password:
        kwargs["password"] = str(url.password)
    try:
        return psycopg.connect(conninfo, connect_timeout=10, **kwargs)
    except psycopg.Error as exc:
        raise BackupError(
            f"cannot connect to {mask_url(url)}: {redact(str(exc), url).strip()}"
        ) from None


def _pg_counts(conn: Any) -> dict[str, int]:
    from psycopg import sql

    tables = conn.execute(
        "SELECT schemaname, tablename FROM pg_catalog.pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
        "AND schemaname NOT LIKE 'pg\\_%' ORDER BY schemaname, tablename"
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        stmt = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        key = table if schema == "public" else f"{schema}.{table}"
        counts[key] = int(conn.execute(stmt).fetchone()[0])
    return counts


def _pg_revision(conn: Any) -> str | None:
    exists = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
    return None if row is None else str(row[0])


def _pg_database_exists(url: URL) -> bool:
    with _pg_connect(url.set(database=_MAINTENANCE_DB), autocommit=True) as admin:
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
        return row.fetchone() is not None


def _pg_snapshot_dump(url: URL, dest: Path) -> dict[str, int]:
    """``pg_dump --format=custom`` into ``dest``; returns the row counts of the snapshot dumped.

    The counting transaction exports its snapshot and stays open while pg_dump runs with
    ``--snapshot``, so the counts describe exactly the data in the file.
    """
    import psycopg

    pg_dump = _tool("pg_dump")
    conninfo, env = _libpq(url)
    with _pg_connect(url, autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
            counts = _pg_counts(conn)
            _run(
                [
                    pg_dump,
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    "--no-password",
                    f"--file={dest}",
                    f"--dbname={conninfo}",
                ],
                url,
                env,
                "pg_dump",
            )
        except psycopg.Error as exc:
            raise BackupError(f"counting rows for the dump: {redact(str(exc), url)}") from None
    return counts


def _pg_restore_into(path: Path, target: URL) -> None:
    conninfo, env = _libpq(target)
    _run(
        [
            _tool("pg_restore"),
            "--no-owner",
            "--exit-on-error",
            "--no-password",
            f"--dbname={conninfo}",
            str(path),
        ],
        target,
        env,
        "pg_restore",
    )


def _pg_list(path: Path, url: URL) -> None:
    """``pg_restore --list``: the archive header and table of contents are readable."""
    _, env = _libpq(url)
    try:
        _run([_tool("pg_restore"), "--list", str(path)], url, env, "pg_restore --list")
    except BackupError as exc:
        raise CorruptBackupError(str(exc)) from None


@contextmanager
def _pg_scratch(url: URL, prefix: str) -> Iterator[URL]:
    """A new empty database on ``url``'s server; dropped on exit unless renamed meanwhile."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin_url = url.set(database=_MAINTENANCE_DB)
    with _pg_connect(admin_url, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE DATABASE {_quote(name)} TEMPLATE template0")
        except psycopg.Error as exc:
            raise BackupError(
                f"cannot create scratch database {name}: {redact(str(exc), url).strip()}"
            ) from None
    try:
        yield url.set(database=name)
    finally:
        with _pg_connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


def _pg_scratch_contents(scratch: URL) -> tuple[dict[str, int], str | None]:
    with _pg_connect(scratch, autocommit=True) as conn:
        return _pg_counts(conn), _pg_revision(conn)


# --------------------------------------------------------------------------------------------
# Dump, verify, record, prune
# --------------------------------------------------------------------------------------------


def dump(db_url: str, backup_dir: str | Path, now: datetime | None = None) -> BackupFile:
    """Write a backup of ``db_url`` into ``backup_dir``; counts rows of the dumped snapshot."""
    url = normalize_url(db_url)
    kind = url_kind(url)
    taken_at = (now or datetime.now(UTC)).astimezone(UTC)
    directory = Path(backup_dir)
    directory.mkdir(parents=True, exist_ok=True)
    final = _free_path(directory, kind, taken_at)
    partial = final.with_name(final.name + PARTIAL)
    try:
        if kind == SQLITE:
            counts = _sqlite_snapshot_copy(_sqlite_file(url), partial)
        else:
            counts = _pg_snapshot_dump(url, partial)
        os.replace(partial, final)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"SQLite backup of {mask_url(url)} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupFile(
        path=final,
        kind=kind,
        taken_at=taken_at,
        size_bytes=final.stat().st_size,
        sha256=sha256_of(final),
        source_counts=counts,
    )


@contextmanager
def _restored_copy(path: Path, kind: str, db_url: str) -> Iterator[tuple[dict[str, int], str]]:
    """Restore ``path`` into a throwaway database; yields (row counts, alembic revision or "")."""
    found = detect_kind(path)
    if found != kind:
        raise CorruptBackupError(f"{path.name} holds a {found} backup, expected {kind}")
    if kind == SQLITE:
        with tempfile.TemporaryDirectory(prefix="dte-verify-") as tmp:
            copy = Path(tmp) / "scratch.sqlite3"
            shutil.copyfile(path, copy)
            counts, revision = _sqlite_check(copy)
            yield counts, revision or ""
        return
    url = normalize_url(db_url)
    with _pg_scratch(url, "dte_verify") as scratch:
        try:
            _pg_restore_into(path, scratch)
        except BackupError as exc:
            raise CorruptBackupError(str(exc)) from None
        counts, revision = _pg_scratch_contents(scratch)
        yield counts, revision or ""


def verify(backup: BackupFile, db_url: str) -> Verification:
    """Restore ``backup`` into a scratch database and compare it with the dumped snapshot.

    Compared: the sha256 of the file now with the one taken right after the dump, and the row
    count of every table of the restored copy with the counts read inside the dump's snapshot
    (exact equality, same set of tables). Every problem is reported, none raises.
    """
    problems: list[str] = []
    if not backup.path.is_file():
        return Verification(False, "", {}, (f"{backup.path} is missing",))
    sha = sha256_of(backup.path)
    if sha != backup.sha256:
        problems.append(f"sha256 changed since the dump ({backup.sha256[:12]}... -> {sha[:12]}...)")
    restored: dict[str, int] = {}
    try:
        with _restored_copy(backup.path, backup.kind, db_url) as (counts, _revision):
            restored = counts
    except BackupError as exc:
        problems.append(f"restore into a scratch database failed: {exc}")
    except Exception as exc:  # an unexpected failure still means "not verified"
        detail = redact(f"{type(exc).__name__}: {exc}", db_url)
        problems.append(f"restore into a scratch database failed: {detail}")
    else:
        diffs = _compare_counts(backup.source_counts, restored)
        if diffs:
            problems.append("row counts differ: " + ", ".join(diffs))
    return Verification(not problems, sha, restored, tuple(problems))


def reject(path: Path) -> Path:
    """Move a backup into ``<its dir>/rejected/`` (idempotent); returns the new path."""
    if path.parent.name == REJECTED:
        return path
    dest = path.parent / REJECTED / path.name
    if path.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest
    return dest if dest.exists() else path  # moved by an earlier try, or gone


def settle(backup: BackupFile, verification: Verification, store: TradeStore) -> BackupOutcome:
    """Keep a verified backup, or move a failed one to ``rejected/``; record it either way.

    The file is moved before the row is written, so a failed backup is never left among the
    valid ones even if recording fails. The recorded ``row_counts`` are the source snapshot's
    (what the file must restore to) and ``sha256`` is the one taken right after the dump.
    """
    status = "ok" if verification.ok else "failed"
    path = backup.path if verification.ok else reject(backup.path)
    message = verification.message
    if not verification.ok:
        message = f"rejected ({path}): {message}"
    backup_id = store.record_backup(
        at=backup.taken_at,
        url_kind=backup.kind,
        path=str(path),
        size_bytes=backup.size_bytes,
        sha256=backup.sha256,
        verified=verification.ok,
        row_counts=backup.source_counts,
        status=status,
        message=message,
    )
    return BackupOutcome(
        backup_id=backup_id,
        status=status,
        kind=backup.kind,
        path=path,
        taken_at=backup.taken_at,
        size_bytes=backup.size_bytes,
        sha256=backup.sha256,
        row_counts=dict(backup.source_counts),
        message=message,
    )


def record_failure(
    store: TradeStore, db_url: str, message: str, at: datetime | None = None
) -> BackupOutcome:
    """Record a backup attempt that produced no file (the dump itself failed)."""
    taken_at = (at or datetime.now(UTC)).astimezone(UTC)
    kind = url_kind(db_url)
    backup_id = store.record_backup(
        at=taken_at,
        url_kind=kind,
        path="",
        size_bytes=0,
        sha256="",
        verified=False,
        row_counts={},
        status="failed",
        message=message,
    )
    return BackupOutcome(backup_id, "failed", kind, None, taken_at, 0, "", {}, message)


def valid_backups(backup_dir: str | Path) -> list[BackupEntry]:
    """Backups kept in ``backup_dir`` (verified ones: ``rejected/`` is not looked at), oldest
    first by the time in their name."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    entries = []
    for path in directory.iterdir():
        parsed = parse_backup_name(path.name)
        if parsed is not None and path.is_file():
            entries.append(BackupEntry(path, parsed[1], parsed[0]))
    return sorted(entries, key=lambda e: (e.taken_at, _sequence(e.path.name)))


def prune(backup_dir: str | Path, keep_days: int, now: datetime | None = None) -> list[Path]:
    """Delete backups whose name is more than ``keep_days`` days old; returns what was deleted.

    The newest valid backup of each kind is always kept, however old. Rejected files and
    leftover ``.partial`` files older than ``keep_days`` are deleted too.
    """
    if keep_days < 0:
        raise ValueError(f"keep_days must be >= 0, got {keep_days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    directory = Path(backup_dir)
    deleted: list[Path] = []
    entries = valid_backups(directory)
    newest = {e.kind: e for e in entries}  # sorted oldest first: the last one wins
    for entry in entries:
        if entry.taken_at < cutoff and newest[entry.kind] is not entry:
            entry.path.unlink(missing_ok=True)
            deleted.append(entry.path)
    for folder, suffix in ((directory / REJECTED, ""), (directory, PARTIAL)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or not path.name.endswith(suffix):
                continue
            parsed = parse_backup_name(path.name.removesuffix(PARTIAL) if suffix else path.name)
            if parsed is not None and parsed[0] < cutoff:
                path.unlink(missing_ok=True)
                deleted.append(path)
    return deleted


# --------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------


@dataclass
class StagedRestore:
    """A backup restored and checked next to its target; ``apply()`` swaps it in."""

    source: Path
    kind: str
    target: URL
    revision: str
    counts: dict[str, int]  # every table of the backup, as restored
    _staged: Path | URL
    applied: bool = field(default=False)

    @property
    def target_masked(self) -> str:
        return mask_url(self.target)

    def apply(self, keep_dir: Path | None = None, now: datetime | None = None) -> RestoreResult:
        """Migrate the staged copy to head, keep a copy of the current target, swap, migrate.

        ``keep_dir``: where the copy of the current database goes (default: next to the SQLite
        file; the backup file's folder for PostgreSQL).
        """
        if self.applied:
            raise BackupError("this staged restore was already applied")
        stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime(STAMP_FORMAT)
        if isinstance(self._staged, Path):
            previous = self._apply_sqlite(self._staged, keep_dir, stamp)
        else:
            previous = self._apply_postgresql(self._staged, keep_dir, stamp)
        self.applied = True
        store = TradeStore(self.target.render_as_string(hide_password=False))
        try:
            store.migrate()
            revision = store.schema_revision() or ""
        finally:
            store.dispose()
        return RestoreResult(self.target_masked, revision, _counts_of(self.target), previous)

    def _migrate_staged(self, url: URL) -> None:
        store = TradeStore(url.render_as_string(hide_password=False))
        try:
            store.migrate()
        except Exception as exc:
            raise BackupError(f"migrating the restored copy failed: {exc}") from exc
        finally:
            store.dispose()

    def _apply_sqlite(self, staged: Path, keep_dir: Path | None, stamp: str) -> Path | None:
        target = _sqlite_file(self.target)
        self._migrate_staged(URL.create("sqlite", database=str(staged)))
        _sqlite_checkpoint(staged, single_file=True)
        previous: Path | None = None
        if target.exists():
            previous = (keep_dir or target.parent) / f"{target.name}.pre-restore-{stamp}"
            previous.parent.mkdir(parents=True, exist_ok=True)
            _keep_sqlite(target, previous)
        # The old database's -wal must not meet the new file: drop it (it is in the kept copy)
        # before the swap, so there is no moment where the new file has a foreign WAL.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(staged, target)
        return previous

    def _apply_postgresql(self, staged: URL, keep_dir: Path | None, stamp: str) -> Path | None:
        self._migrate_staged(staged)
        previous: Path | None = None
        if _pg_database_exists(self.target):
            folder = keep_dir or self.source.parent
            folder.mkdir(parents=True, exist_ok=True)
            previous = folder / f"pre-restore-{self.target.database}-{stamp}.dump"
            try:
                _pg_snapshot_dump(self.target, previous)
            except BackupError as exc:
                previous.unlink(missing_ok=True)
                raise BackupError(
                    f"could not keep a copy of the current database, so it was left as it is "
                    f"({exc}); to restore anyway, drop database {self.target.database} first"
                ) from None
        with _pg_connect(self.target.set(database=_MAINTENANCE_DB), autocommit=True) as admin:
            admin.execute(
                f"DROP DATABASE IF EXISTS {_quote(str(self.target.database))} WITH (FORCE)"
            )
            admin.execute(
                f"ALTER DATABASE {_quote(str(staged.database))} "
                f"RENAME TO {_quote(str(self.target.database))}"
            )
        return previous


def _keep_sqlite(target: Path, previous: Path) -> None:
    """Copy the current database aside before it is replaced, then fold its WAL in.

    The online backup API gives a consistent copy; a database SQLite cannot read any more (often
    the reason for a restore) is copied byte for byte instead, its -wal alongside.
    """
    try:
        _sqlite_snapshot_copy(target, previous)
    except sqlite3.DatabaseError as exc:
        previous.unlink(missing_ok=True)
        if not _is_damage(exc):
            raise BackupError(f"cannot copy the current database aside: {exc}") from exc
        shutil.copyfile(target, previous)
        wal = Path(f"{target}-wal")
        if wal.exists():
            shutil.copyfile(wal, Path(f"{previous}-wal"))
        return
    try:
        _sqlite_checkpoint(target, single_file=False)  # BackupError if a reader holds it
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise BackupError(f"cannot checkpoint the current database: {exc}") from exc


def _is_damage(exc: sqlite3.Error) -> bool:
    """The file is not (or no longer) a readable database, as opposed to busy or locked."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _counts_of(url: URL) -> dict[str, int]:
    if url_kind(url) == SQLITE:
        with closing(_sqlite_connect(_sqlite_file(url))) as conn:
            return _sqlite_counts(conn)
    with _pg_connect(url, autocommit=True) as conn:
        return _pg_counts(conn)


@contextmanager
def stage_restore(backup_path: str | Path, db_url: str) -> Iterator[StagedRestore]:
    """Prove ``backup_path`` restorable and stage it next to ``db_url``'s database.

    Raises CorruptBackupError (nothing touched) when the file is not a backup of the target's
    kind, fails ``PRAGMA integrity_check`` / ``pg_restore --list`` / a full restore, or has no
    known schema revision. The staged copy is discarded on exit unless ``apply()`` was called.
    """
    path = Path(backup_path)
    url = normalize_url(db_url)
    target_kind = url_kind(url)
    if not path.is_file():
        raise BackupError(f"{path} does not exist")
    kind = detect_kind(path)
    if kind != target_kind:
        raise BackupError(f"{path.name} is a {kind} backup but the target is {target_kind}")
    if kind == SQLITE:
        target = _sqlite_file(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f"{target.name}.restore-{uuid.uuid4().hex[:12]}")
        try:
            shutil.copyfile(path, staged)
            counts, revision = _sqlite_check(staged)
            sqlite_stage = StagedRestore(path, kind, url, _known_revision(revision), counts, staged)
            yield sqlite_stage
        finally:
            for leftover in (staged, Path(f"{staged}-wal"), Path(f"{staged}-shm")):
                leftover.unlink(missing_ok=True)
        return
    _pg_list(path, url)
    with _pg_scratch(url, "dte_restore") as scratch:
        try:
            _pg_restore_into(path, scratch)
        except BackupError as exc:
            raise CorruptBackupError(str(exc)) from None
        counts, revision = _pg_scratch_contents(scratch)
        yield StagedRestore(path, kind, url, _known_revision(revision), counts, scratch)


def restore(
    backup_path: str | Path,
    db_url: str,
    keep_dir: Path | None = None,
    now: datetime | None = None,
) -> RestoreResult:
    """Verify ``backup_path`` and restore it over ``db_url`` (no confirmation asked)."""
    with stage_restore(backup_path, db_url) as staged:
        return staged.apply(keep_dir, now)

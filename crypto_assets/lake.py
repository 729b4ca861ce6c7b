"""The DuckLake warehouse of the cluster deployment: the same tables and SQL as the DuckDB file,
with the catalog in PostgreSQL and the data in Parquet files under a data path (a folder here,
object storage in production), so many processes on many machines read and write at once.

What differs from the file, and why:

- **No primary keys** (DuckLake has no PRIMARY KEY or UNIQUE): the schema is the file's with them
  left out (:data:`LAKE_SCHEMA_SQL`). The registry keeps its guarantees inside its transactions:
  every registry write first updates the one row of ``registry.write_guard``, so two registry
  writers that overlap always delete from the same file and the second to commit fails
  (``crypto_assets/registry.py``).
- **Writers of different partitions commit side by side**: DuckLake detects conflicts per data file
  (two transactions that deleted from the same file), so every partitioned table is partitioned
  by day (or split), and a partition's rewrite only ever deletes from that day's files
  (:data:`PARTITIONING`). Two writers of the same partition still conflict: the second committer
  gets ``duckdb.TransactionException`` "Transaction conflict", which :meth:`LakeWarehouse.connect`
  turns into a bounded, logged step retry (``dg.RetryRequested``); the retried step rewrites its
  partition from the committed state.
- **Extensions** come from PyPI's ``duckdb-ext-ducklake`` / ``duckdb-ext-postgres`` (``duckdb_ext``
  points DuckDB's extension directory at them): these machines cannot download extensions. Without
  that package DuckDB's own directory is used, where a production machine ran
  ``INSTALL ducklake; INSTALL postgres`` once.
- **Small writes stay small**: data inlining is off by default (``inlining_row_limit=0``): DuckLake
  checks deletes of inlined rows per table, not per file, so inlined hourly rows would make every two
  writers of a table conflict. Each hourly rewrite writes one small file per table and day and
  retires the previous one; :func:`maintain` (the ``lake_maintenance`` asset) merges files and
  deletes retired ones.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from crypto_assets.duckdb_errors import is_write_conflict
from crypto_assets.settings import LAKE_CATALOG_ENV, LAKE_DATA_PATH_ENV
from crypto_assets.warehouse import _SCHEMA_SQL, Warehouse, prepare_layout, transaction

CATALOG_ALIAS = "lake"

# schema.sql without comments and primary keys: "..., PRIMARY KEY (a, b)" and "col TYPE NOT NULL PRIMARY KEY".
LAKE_SCHEMA_SQL = re.sub(r",\s*PRIMARY KEY\s*\([^)]*\)", "", re.sub(r"--[^\n]*", "", _SCHEMA_SQL)).replace(
    " PRIMARY KEY", ""
)
assert "PRIMARY KEY" not in LAKE_SCHEMA_SQL and "UNIQUE" not in LAKE_SCHEMA_SQL

_DAY = "year(partition_hour), month(partition_hour), day(partition_hour)"
# How each table's files are laid out: by what a partition's rewrite deletes, so that rewrites of
# different partitions never delete from the same file (DuckLake's unit of write conflicts).
PARTITIONING = {
    "raw.market_snapshots": _DAY,
    "raw.market_quarantine": _DAY,
    "raw.anomaly_ground_truth": _DAY,
    "features.coin_features": _DAY,
    "features.coin_labels": _DAY,
    "serving.model_scores": f"model_name, {_DAY}",
    "serving.prediction_outcomes": _DAY,
    "ml.split_summaries": "split_id",
    "ml.walk_forward_scores": "model_name, split_id",
    "ml.model_evaluations": "model_name, split_id",
    "ml.gate_evidence": "model_name, split_id",
    "ml.feature_drift": "split_id",
    "ml.drift_summaries": "split_id",
}


class LakeSetupError(ValueError):
    """The DuckLake catalog or data path cannot be used; the message names the setting."""


def _literal(value: str) -> str:
    """A SQL string literal. ATTACH takes no bound parameters, so its two strings are quoted here."""
    return "'" + value.replace("'", "''") + "'"


def use_packaged_extensions(conn: duckdb.DuckDBPyConnection) -> None:
    """Load DuckLake and Postgres from the pip packages when installed, else from DuckDB's own extension directory."""
    try:
        import duckdb_ext
    except ImportError:  # production: `INSTALL ducklake; INSTALL postgres` was run once on the machine
        pass
    else:
        duckdb_ext.init(conn)  # SET extension_directory to the packages', no downloads at run time
    conn.execute("LOAD ducklake")
    conn.execute("LOAD postgres")


class LakeWarehouse(Warehouse):
    """The project's tables in a DuckLake: catalog in PostgreSQL, Parquet files under ``data_path``.

    Every connection is a fresh in-memory DuckDB that attaches the lake, so any number of
    processes read and write at once; each sees the snapshot committed when its transaction began.
    """

    database: str = Field(default="ducklake", description="A label for messages (the lake has no file).")
    catalog: str = Field(
        description=f"libpq connection string or postgres URL of the catalog, no password ({LAKE_CATALOG_ENV})."
    )
    data_path: str = Field(description=f"Folder or object-store prefix of the Parquet files ({LAKE_DATA_PATH_ENV}).")
    inlining_row_limit: int = Field(
        default=0, ge=0, description="Rows written to the catalog instead of a file (0: always files; see lake.py)."
    )
    conflict_retries: int = Field(
        default=5, ge=0, description="Step retries after a DuckLake write conflict (the same partition written twice)."
    )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the lake with every table created; a write conflict becomes a step retry."""
        conn = self._open()
        try:
            yield conn
        except duckdb.TransactionException as exc:
            if not is_write_conflict(exc):
                raise
            wait = 1.0 + 2.0 * random.random()  # jitter: two losers do not collide again
            dg.get_dagster_logger().warning(
                f"DuckLake write conflict, another run committed the same files first; retrying the step in "
                f"{wait:.1f}s (at most {self.conflict_retries} retries): {exc}"
            )
            raise dg.RetryRequested(max_retries=self.conflict_retries, seconds_to_wait=wait) from exc
        finally:
            conn.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A new connection (cursor) of this process's DuckDB instance that has the lake attached.

        Starting DuckDB, loading the two extensions and attaching cost ~1 s, a cursor nothing: each
        process does it once. Cursors are separate transactions, and DuckLake checks them for
        conflicts like separate processes.
        """
        key = (os.getpid(), self.catalog, self.data_path, self.inlining_row_limit)
        with _LOCK:
            if key not in _INSTANCES:
                with _catalog_lock(self.catalog):
                    instance = self._attach()
                    try:
                        self._prepare(instance)
                    except BaseException:
                        instance.close()
                        raise
                _INSTANCES[key] = instance
            conn = _INSTANCES[key].cursor()
        conn.execute(f"USE {CATALOG_ALIAS}")
        return _LakeConnection(conn)

    def _attach(self) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(":memory:", config=dict(self.connection_config))
        try:
            use_packaged_extensions(conn)
            data_path = self.data_path
            if "://" not in data_path:  # a local folder; object storage needs none
                folder = Path(data_path).expanduser().resolve()
                folder.mkdir(parents=True, exist_ok=True)
                data_path = str(folder) + "/"
            conn.execute(
                f"ATTACH {_literal('ducklake:postgres:' + self.catalog)} AS {CATALOG_ALIAS} "
                f"(DATA_PATH {_literal(data_path)}, DATA_INLINING_ROW_LIMIT {int(self.inlining_row_limit)})"
            )
            conn.execute(f"USE {CATALOG_ALIAS}")
        except duckdb.Error as exc:
            conn.close()
            raise LakeSetupError(
                f"warehouse (lake): cannot attach the DuckLake catalog {LAKE_CATALOG_ENV} with data path "
                f"{self.data_path!r} ({LAKE_DATA_PATH_ENV}): {str(exc).splitlines()[0]}"
            ) from None
        return conn

    def _prepare(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Create or migrate the layout; processes that create a new lake at once take turns through conflicts."""
        for attempt in range(1, 11):
            try:
                prepare_layout(conn, "lake", schema_sql=LAKE_SCHEMA_SQL)
                _set_up_lake(conn)
                return
            except (duckdb.TransactionException, duckdb.CatalogException) as exc:
                # Two processes creating the same tables: the second committer loses, then finds them.
                if attempt == 10 or not (is_write_conflict(exc) or "already exists" in str(exc)):
                    raise
                dg.get_dagster_logger().info(f"lake layout created by another process, looking again: {exc}")
                time.sleep(0.2 * attempt)


class _LakeConnection:
    """A lake connection whose cursors use the lake too: DuckDB starts every new connection of an
    instance in its in-memory default database, and ``USE`` holds for one connection only
    (``warehouse.query_frame`` reads through a cursor)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection):
        self._conn = conn

    def cursor(self) -> _LakeConnection:
        cursor = self._conn.cursor()
        cursor.execute(f"USE {CATALOG_ALIAS}")
        return _LakeConnection(cursor)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@contextmanager
def _catalog_lock(catalog: str) -> Iterator[None]:
    """One process at a time attaches the lake and prepares its layout, on every machine alike.

    The first ATTACH of a new lake creates DuckLake's own tables in PostgreSQL, and two processes
    doing it at once collide (two Celery workers starting their first steps together: one failed
    with "cannot attach"). A PostgreSQL advisory lock on the catalog's database serializes it; the
    lock goes with the session. If the catalog cannot be reached, ATTACH says why in its own words.
    """
    import psycopg2

    try:
        session = psycopg2.connect(catalog, connect_timeout=10)
    except psycopg2.Error:
        yield
        return
    try:
        session.autocommit = True
        with session.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_ATTACH_LOCK_KEY])
        yield
    finally:
        session.close()


_ATTACH_LOCK_KEY = 0x6C616B65  # "lake": the advisory lock id the processes of one catalog share

# One DuckDB instance per process and lake (see LakeWarehouse._open).
_INSTANCES: dict[tuple, duckdb.DuckDBPyConnection] = {}
_LOCK = threading.Lock()


def _set_up_lake(conn: duckdb.DuckDBPyConnection) -> None:
    """Once per lake, atomically: partition the tables, and create the registry's guard row.

    ``meta.lake_setup`` is created without IF NOT EXISTS, so of two processes doing this at once
    the second fails to commit and finds it done.
    """
    done = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'meta' AND table_name = 'lake_setup'"
    ).fetchone()[0]
    if done:
        return
    with transaction(conn):
        conn.execute("CREATE TABLE meta.lake_setup (done_at TIMESTAMP NOT NULL)")
        for table, keys in PARTITIONING.items():  # code constants, never input
            conn.execute(f"ALTER TABLE {table} SET PARTITIONED BY ({keys})")
        if conn.execute("SELECT count(*) FROM registry.write_guard").fetchone()[0] == 0:
            conn.execute("INSERT INTO registry.write_guard VALUES (now()::TIMESTAMP)")
        conn.execute("INSERT INTO meta.lake_setup VALUES (now()::TIMESTAMP)")


def file_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Live data files per table (what a reader opens), from the lake's catalog."""
    rows = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_catalog = ? AND table_type = 'BASE TABLE'",
        [CATALOG_ALIAS],
    ).fetchall()
    counts = {}
    for (name,) in rows:
        schema, table = name.split(".")
        counts[name] = conn.execute(
            "SELECT count(*) FROM ducklake_list_files(?, ?, schema => ?)", [CATALOG_ALIAS, table, schema]
        ).fetchone()[0]
    return counts


def maintain(conn: duckdb.DuckDBPyConnection, keep_snapshots_hours: float = 24.0) -> dict[str, int]:
    """Merge small files of each partition, expire snapshots older than ``keep_snapshots_hours`` and delete
    the files no snapshot needs any more. Returns the live and on-disk file counts after."""
    conn.execute(f"CALL ducklake_merge_adjacent_files({_literal(CATALOG_ALIAS)})")
    conn.execute(
        f"CALL ducklake_expire_snapshots({_literal(CATALOG_ALIAS)}, older_than => now() - to_seconds(?))",
        [keep_snapshots_hours * 3600],
    )
    conn.execute(f"CALL ducklake_cleanup_old_files({_literal(CATALOG_ALIAS)}, cleanup_all => true)")
    live = file_counts(conn)
    return {"live_files": sum(live.values())}

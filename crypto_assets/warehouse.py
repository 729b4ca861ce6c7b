"""The DuckDB warehouse: one file holds every table; writes replace whole partitions atomically.

The file records its layout version in ``meta.layout_history``. Opening a file of an older layout
applies the migrations in ``MIGRATIONS`` (in one transaction, each recorded with its note); a file
of a newer layout than this code knows is refused, so old code never misreads new tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from crypto_assets.duckdb_errors import lock_holder
from crypto_assets.market.schema import utc_naive

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd

_SCHEMA_SQL = resources.files("crypto_assets").joinpath("sql/schema.sql").read_text()

# Version 1: files written before the layout was recorded (hourly partitions).
# Version 2: daily partitions, walk-forward splits and evidence, model lineage, shadow scores.
# Version 3: prediction outcomes of every model judged against a label; baseline versions.
LAYOUT_VERSION = 3
# from version -> (what the migration to the next version does, its SQL statements).
MIGRATIONS: dict[int, tuple[str, list[str]]] = {
    1: (
        "daily partitions, walk-forward evaluation, lineage, shadow scores. Snapshots, labels, registry versions, "
        "aliases and promotion events are kept; feature rows keep the feature_spec_version that computed them "
        "(splits refuse them until coin_features is re-materialized); row-level splits and split summaries are "
        "dropped (re-materialize training_splits).",
        [
            "DROP TABLE IF EXISTS ml.training_splits",
            "DROP TABLE IF EXISTS ml.split_summaries",
            "ALTER TABLE IF EXISTS registry.model_versions ADD COLUMN IF NOT EXISTS train_positives BIGINT",
            "ALTER TABLE IF EXISTS registry.model_versions ADD COLUMN IF NOT EXISTS training_frame_sha256 VARCHAR",
            "ALTER TABLE IF EXISTS registry.model_versions ADD COLUMN IF NOT EXISTS evaluation_start TIMESTAMP",
            "ALTER TABLE IF EXISTS registry.model_versions ADD COLUMN IF NOT EXISTS evaluation_end TIMESTAMP",
            "ALTER TABLE IF EXISTS registry.model_versions ADD COLUMN IF NOT EXISTS evaluation_positives BIGINT",
            "ALTER TABLE IF EXISTS serving.model_scores ADD COLUMN IF NOT EXISTS role VARCHAR DEFAULT 'champion'",
            "ALTER TABLE IF EXISTS serving.prediction_outcomes ADD COLUMN IF NOT EXISTS role VARCHAR "
            "DEFAULT 'champion'",
            "ALTER TABLE IF EXISTS serving.prediction_outcomes ADD COLUMN IF NOT EXISTS live BOOLEAN DEFAULT false",
            *(
                f"ALTER TABLE IF EXISTS ml.drift_summaries ADD COLUMN IF NOT EXISTS {c}"
                for c in (
                    "reference_start TIMESTAMP",
                    "reference_end TIMESTAMP",
                    "current_start TIMESTAMP",
                    "current_end TIMESTAMP",
                    "drift_detected BOOLEAN",
                    "rule VARCHAR",
                )
            ),
        ],
    ),
    2: (
        "prediction outcomes for every model judged against a label: serving.prediction_outcomes is derived "
        "data and is dropped (re-materialize prediction_outcomes); model versions say whether they are a model "
        "or a baseline serving as champion of last resort (existing versions: model); promotion events name "
        "the version each decision was about.",
        [
            "DROP TABLE IF EXISTS serving.prediction_outcomes",
            "ALTER TABLE IF EXISTS registry.model_versions ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'model'",
            "ALTER TABLE IF EXISTS registry.promotion_events ADD COLUMN IF NOT EXISTS candidate_version VARCHAR",
        ],
    ),
}
_PROJECT_SCHEMAS = ("raw", "features", "ml", "registry", "serving")


class WarehouseBusyError(RuntimeError):
    """Another process held the DuckDB file for longer than ``lock_timeout_s``."""


class WarehouseLayoutError(RuntimeError):
    """The DuckDB file was written by a newer version of crypto_assets than this one."""


class Warehouse(DuckDBResource):
    """The project's DuckDB database file.

    DuckDB lets one process at a time open a file. Runs launched from the queue take turns through
    the ``duckdb_writer`` pool; runs started from the command line skip the queue, so opening the
    file waits for another process's lock to go, at most ``lock_timeout_s``, logging every 30 s which
    process holds it, then fails naming the setting: a run never waits forever. Any other error
    (a corrupt or foreign file) fails at once.
    """

    lock_timeout_s: float = Field(
        default=900.0, gt=0, description="How long to wait for another process to release the DuckDB file, in seconds."
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse the run when any op's config of it is out of its declared range, before a step writes.

        Every step that writes opens the warehouse, so this is where a run's whole config is checked
        (crypto_assets/config_validation.py): in one process once before the first step, with a process
        per step (Celery) at the start of each.
        """
        from crypto_assets.config_validation import check_run_config

        run = context.run
        if run is not None:
            check_run_config(run.run_config, run.job_name)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse with every schema and table created; closed on exit."""
        conn = self._open()
        try:
            prepare_layout(conn, self.database)
            yield conn
        finally:
            conn.close()

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one read query and release the file at once."""
        with self.connect() as conn:
            return conn.execute(sql, params or []).df()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.database != ":memory:":
            folder = Path(self.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise ValueError(
                    f"warehouse.database: folder {folder} does not exist (database path {self.database!r})"
                )
        started = time.monotonic()
        deadline = started + self.lock_timeout_s
        delay = 0.05
        logged_at = None
        while True:
            try:
                return duckdb.connect(self.database, config=dict(self.connection_config))
            except duckdb.IOException as exc:
                holder = lock_holder(exc)
                if holder is None:  # not another process's lock: waiting would not help
                    raise ValueError(
                        f"warehouse.database: cannot open {self.database!r} as a DuckDB database: {_first_line(exc)}"
                    ) from None
                now = time.monotonic()
                if now >= deadline:
                    raise WarehouseBusyError(
                        f"warehouse.database {self.database!r} stayed locked by {holder} for "
                        f"{self.lock_timeout_s:g}s (warehouse.lock_timeout_s); DuckDB allows one process at a time. "
                        "Wait for the other run to finish, or raise the timeout."
                    ) from exc
                if logged_at is None or now - logged_at >= LOCK_LOG_EVERY_S:
                    logged_at = now
                    dg.get_dagster_logger().info(
                        f"warehouse.database {self.database!r} is held by {holder}; waited {now - started:.0f}s "
                        f"of {self.lock_timeout_s:g}s (warehouse.lock_timeout_s)"
                    )
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 1.0)


LOCK_LOG_EVERY_S = 30.0  # a waiting open says so at least this often


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def layout_version(conn: duckdb.DuckDBPyConnection) -> int | None:
    """The file's layout version: None for a new, empty file; 1 for a file from before versions were recorded."""
    has_history = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'meta' AND table_name = 'layout_history'"
    ).fetchone()[0]
    if has_history:
        return conn.execute("SELECT max(version) FROM meta.layout_history").fetchone()[0]
    tables = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema IN (SELECT unnest(?::VARCHAR[]))",
        [list(_PROJECT_SCHEMAS)],
    ).fetchone()[0]
    return 1 if tables else None


def prepare_layout(conn: duckdb.DuckDBPyConnection, database: str = "", schema_sql: str = _SCHEMA_SQL) -> None:
    """Bring the file to ``LAYOUT_VERSION`` (creating tables, migrating an older layout), or refuse a newer one.

    ``schema_sql``: the DuckLake warehouse passes schema.sql without primary keys (crypto_assets/lake.py).
    """
    version = layout_version(conn)
    if version is not None and version > LAYOUT_VERSION:
        raise WarehouseLayoutError(
            f"warehouse.database {database!r} has layout version {version}, written by a newer crypto_assets; "
            f"this version reads up to {LAYOUT_VERSION}. Upgrade crypto_assets, or point "
            "CRYPTO_ASSETS_DUCKDB_PATH at another file."
        )
    if version == LAYOUT_VERSION:
        conn.execute(schema_sql)  # idempotent; cheap
        sync_feature_columns(conn)
        return
    with transaction(conn):
        conn.execute("CREATE SCHEMA IF NOT EXISTS meta")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS meta.layout_history (version INTEGER NOT NULL, applied_at "
            "TIMESTAMP NOT NULL, note VARCHAR NOT NULL)"
        )
        notes = []
        for step in range(version or LAYOUT_VERSION, LAYOUT_VERSION):
            note, statements = MIGRATIONS[step]
            for statement in statements:
                conn.execute(statement)
            notes.append(f"from {step}: {note}")
        conn.execute(schema_sql)
        sync_feature_columns(conn)
        conn.execute(
            "INSERT INTO meta.layout_history VALUES (?, ?, ?)",
            [LAYOUT_VERSION, utc_naive(datetime.now(UTC)), "; ".join(notes) if notes else "new file"],
        )


def sync_feature_columns(conn: duckdb.DuckDBPyConnection) -> None:
    """Make features.coin_features have exactly the feature spec's columns: add the missing, drop the retired.

    Feature rows are derived data; rows written by an older spec keep their feature_spec_version,
    and splits refuse them until coin_features is re-materialized.
    """
    from crypto_assets.feature_spec import feature_table_columns

    found = dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'features' "
            "AND table_name = 'coin_features'"
        ).fetchall()
    )
    wanted = {name: duck_type for name, duck_type, _ in feature_table_columns()}
    if found == wanted:
        return
    for name, duck_type in wanted.items():  # names and types come from the spec, never from input
        if name not in found:
            conn.execute(f"ALTER TABLE features.coin_features ADD COLUMN {name} {duck_type}")
        elif found[name] != duck_type:
            conn.execute(f"ALTER TABLE features.coin_features ALTER COLUMN {name} TYPE {duck_type}")
    for name in found.keys() - wanted.keys():
        conn.execute(f"ALTER TABLE features.coin_features DROP COLUMN {name}")


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, rolled back on any error so a partition is never half-written."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def replace_window(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    *,
    column: str,
    start: datetime,
    end: datetime,
) -> int:
    """Replace every row of ``table`` whose ``column`` lies in [start, end) with ``frame``.

    Call inside :func:`transaction`. ``table`` and ``column`` are code constants, never user
    input; the window bounds are bound as parameters. Returns the number of rows deleted.
    """
    deleted = conn.execute(
        f"DELETE FROM {table} WHERE {column} >= ? AND {column} < ?", [utc_naive(start), utc_naive(end)]
    ).fetchone()[0]
    insert_frame(conn, table, frame)
    return int(deleted)


def replace_window_with_query(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    query: str,
    params: dict | list[dict],
    *,
    column: str,
    start: datetime,
    end: datetime,
) -> int:
    """Like :func:`replace_window`, with the new rows coming from ``query`` inside DuckDB (no DataFrame).

    ``query``'s columns are matched to ``table``'s by name; its values are bound from ``params``. A
    list of parameter sets runs the query once per set (pieces of the window, to bound memory).
    Returns the number of rows inserted.
    """
    conn.execute(f"DELETE FROM {table} WHERE {column} >= ? AND {column} < ?", [utc_naive(start), utc_naive(end)])
    pieces = params if isinstance(params, list) else [params]
    return sum(
        int(conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({query})", p).fetchone()[0]) for p in pieces
    )


def query_frame(conn: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame, through Arrow (seconds faster than ``.df()`` on wide frames).

    It runs on a cursor of ``conn`` (the same database, its own result): DuckDB refuses new work on
    a connection whose last result was not fetched to the end (``fetchone``).
    """
    cursor = conn.cursor()
    try:
        return cursor.sql(sql, params=params).to_arrow_table().to_pandas()
    finally:
        cursor.close()


def insert_frame(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append ``frame``'s rows to ``table``, matching columns by name (``table`` is a code constant)."""
    if frame.empty:
        return
    conn.register("_incoming", frame)
    try:
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")

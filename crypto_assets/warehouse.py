"""The DuckDB warehouse: one file holds every table; writes replace whole partitions atomically."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from crypto_assets.market.schema import utc_naive

_SCHEMA_SQL = resources.files("crypto_assets").joinpath("sql/schema.sql").read_text()


class Warehouse(DuckDBResource):
    """The project's DuckDB database file.

    DuckDB lets one process at a time open a file for writing. Writers are serialized by the
    ``duckdb_writer`` concurrency pool; on top of that, opening the file waits (up to
    ``lock_timeout_s``) for another process's lock to go, rather than failing at once.
    """

    lock_timeout_s: float = Field(default=120.0, description="How long to wait for another process's lock.")

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse with every schema and table created; closed on exit."""
        conn = self._open()
        try:
            conn.execute(_SCHEMA_SQL)
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
                raise ValueError(f"warehouse.database: folder {folder} does not exist (database path {self.database!r})")
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(self.database, config=dict(self.connection_config))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise ValueError(f"warehouse.database: cannot open {self.database!r}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)


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


def insert_frame(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append ``frame``'s rows to ``table``, matching columns by name (``table`` is a code constant)."""
    if frame.empty:
        return
    conn.register("_incoming", frame)
    try:
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")

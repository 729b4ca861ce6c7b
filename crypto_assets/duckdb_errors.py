"""DuckDB's errors told apart by type and DuckDB's own wording, never by a path inside the message.

Another process holding the file:

``IO Error: Could not set lock on file "<path>": Conflicting lock is held in <program> (PID <n>). See also
https://duckdb.org/docs/stable/connect/concurrency``. The error is matched on that wording and its type, never
on the path, which may itself contain "lock" (a corrupt file under ``.../blockchain/`` is not busy).

A DuckLake write conflict: ``TransactionException`` "... Transaction conflict - attempting to ... but another
transaction has ...". DuckLake also says "failed to get files with deletions for conflict resolution" when it
cannot read its catalog: that is no conflict, and retrying it as one would hide the real error.
"""

from __future__ import annotations

import re

_LOCK_CONFLICT = re.compile(
    r'^IO Error: Could not set lock on file ".*": Conflicting lock is held in (.+?)(?:\. See also .*)?$'
)


def lock_holder(exc: BaseException) -> str | None:
    """For DuckDB's lock-conflict error, who holds the file (``"<program> (PID n)"``); for any other error None.

    Any other error (a corrupt or foreign file, a folder, a file system without locks) is None:
    waiting would not make it go away.
    """
    import duckdb

    text = str(exc).strip()
    if not isinstance(exc, duckdb.IOException) or not text:
        return None
    match = _LOCK_CONFLICT.match(text.splitlines()[0])
    return match.group(1) if match else None


def is_write_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckLake refusing a commit because another transaction changed the same files first."""
    import duckdb

    return isinstance(exc, duckdb.TransactionException) and "Transaction conflict - " in str(exc)

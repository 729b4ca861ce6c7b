"""Helpers that turn results into the metadata people read in the Dagster UI.

Numbers are stored as numbers, rounded to what a person reads (so the Plots tab charts them);
tables that would be clipped as markdown are ``MetadataValue.table`` with a schema; a run that
covers several partitions gives each partition its own facts (``add_partition_metadata``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd

SIGNIFICANT_DIGITS = 4


def rounded(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """A float rounded to ``digits`` significant digits (NaN and inf unchanged); numpy scalars as Python numbers."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def column_schema(columns: list[tuple[str, str, str]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, duck_type, description) for name, duck_type, description in columns]
    )


def _cell(value: Any) -> str | int | float | bool | None:
    value = rounded(value)
    if value is None or isinstance(value, str | int | float | bool):
        return None if isinstance(value, float) and math.isnan(value) else value
    if isinstance(value, datetime) or hasattr(value, "isoformat"):
        return str(value)[:19]
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def table(frame: pd.DataFrame, limit: int | None = None) -> dg.TableMetadataValue:
    """A table the UI renders whole (no markdown clipping), numbers rounded, with a column schema."""
    kinds = {"b": "boolean", "i": "integer", "u": "integer", "f": "float", "M": "timestamp"}
    rows = frame if limit is None else frame.head(limit)
    schema = dg.TableSchema(
        columns=[dg.TableColumn(str(c), kinds.get(frame[c].dtype.kind, "string")) for c in frame.columns]
    )
    records = [
        dg.TableRecord({str(c): _cell(v) for c, v in zip(frame.columns, row, strict=True)})
        for row in rows.itertuples(index=False)
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def markdown_preview(frame: pd.DataFrame, limit: int = 10) -> dg.MarkdownMetadataValue:
    """A small markdown table; floats rounded so it reads well."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False, floatfmt=".4g"))


def count_table(counts: dict[str, int], key: str, value: str = "rows") -> dg.MarkdownMetadataValue:
    import pandas as pd

    if not counts:
        return dg.MetadataValue.md("_none_")
    frame = pd.DataFrame(sorted(counts.items(), key=lambda kv: -kv[1]), columns=[key, value])
    return dg.MetadataValue.md(frame.to_markdown(index=False))


def partition_days(context: dg.AssetExecutionContext) -> list[tuple[str, datetime, datetime]]:
    """(key, start, end) of every partition the run covers, in order (one for a single-partition run)."""
    partitions_def = context.assets_def.partitions_def
    return [
        (key, window.start, window.end)
        for key in context.partition_keys
        for window in [partitions_def.time_window_for_partition_key(key)]
    ]


def add_partition_metadata(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, by_partition: Mapping[str, Mapping[str, Any]]
) -> None:
    """Give each partition's materialization its own metadata, also in a run that covers many partitions.

    Metadata returned with the run's ``MaterializeResult`` goes to every partition, so only keys
    that say they are run totals (``run/…``) belong there.
    """
    for key, metadata in by_partition.items():
        context.add_asset_metadata({k: rounded(v) for k, v in metadata.items()}, asset_key=asset_key, partition_key=key)

"""Helpers that turn tables into the metadata people read in the Dagster UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd


def column_schema(columns: list[tuple[str, str, str]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, duck_type, description) for name, duck_type, description in columns]
    )


def markdown_preview(frame: pd.DataFrame, limit: int = 10) -> dg.MarkdownMetadataValue:
    """A small markdown table; floats rounded so it reads well."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False, floatfmt=".6g"))


def count_table(counts: dict[str, int], key: str, value: str = "rows") -> dg.MarkdownMetadataValue:
    import pandas as pd

    if not counts:
        return dg.MetadataValue.md("_none_")
    frame = pd.DataFrame(sorted(counts.items(), key=lambda kv: -kv[1]), columns=[key, value])
    return dg.MetadataValue.md(frame.to_markdown(index=False))

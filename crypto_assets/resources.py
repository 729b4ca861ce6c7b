"""Resources, and the ones each deployment gets.

``build_resources()`` binds, from the environment (``crypto_assets/settings.py``):

- ``warehouse``: the DuckDB file (``crypto_assets/warehouse.py``), or for ``CRYPTO_ASSETS_WAREHOUSE=lake``
  the DuckLake warehouse (``crypto_assets/lake.py``);
- ``market_source``: one of ``crypto_assets.market.sources.SOURCES`` (synthetic offline by default,
  live CoinGecko for prod, or replayed files);
- ``reports``: the folder of the reports people open from the UI (Evidently drift reports,
  evaluation charts), and the http address that serves it;
- ``alert_webhook``: where failed runs are posted, if anywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
from pydantic import Field

from crypto_assets.market.sources import SOURCES
from crypto_assets.settings import ALERT_WEBHOOK_ENV, Settings, SettingsError, read_settings
from crypto_assets.warehouse import Warehouse


class Reports(dg.ConfigurableResource):
    """The folder of the reports people open from the UI, and the http address serving it (one-click links)."""

    folder: str = Field(description="Absolute folder of the HTML and SVG reports.")
    base_url: str | None = Field(
        default=None, description="http(s) address serving the folder (python -m crypto_assets.report_server)."
    )

    def path(self, kind: str, *parts: str, suffix: str = ".html") -> Path:
        """``<kind>_<part>_<part>…<suffix>``, anything but letters, digits, '.', '-' and '_' replaced."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join((kind, *parts)))
        return Path(self.folder) / f"{safe}{suffix}"

    def url(self, path: Path) -> str | None:
        return f"{self.base_url.rstrip('/')}/{path.name}" if self.base_url else None

    def write(self, path: Path, write_to) -> None:
        """Write a report atomically (a reader never sees half a file): ``write_to(temporary path)`` then rename."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        write_to(tmp)
        os.replace(tmp, path)


class AlertWebhook(dg.ConfigurableResource):
    """Where ``run_failure_alert_sensor`` posts a short JSON message; unset, it only logs."""

    url: str | None = Field(default=None, description=f"Set from {ALERT_WEBHOOK_ENV} only (it may hold a token).")
    timeout_s: float = Field(default=5.0, gt=0)

    def post(self, message: dict) -> None:
        import requests

        response = requests.post(self.url, json=message, timeout=self.timeout_s)
        response.raise_for_status()


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of ``settings`` (default: this process's environment)."""
    settings = settings or read_settings()
    source = SOURCES.get(settings.source)
    if source is None:
        raise SettingsError(f"CRYPTO_ASSETS_SOURCE must be one of {', '.join(SOURCES)}; got {settings.source!r}")
    return {
        "warehouse": build_warehouse(settings),
        "market_source": source.from_settings(settings),
        "reports": Reports(folder=str(settings.reports_dir), base_url=settings.reports_url),
        # EnvVar: Dagster resolves the URL at run time and shows the variable's name, never its value.
        "alert_webhook": AlertWebhook(url=dg.EnvVar(ALERT_WEBHOOK_ENV) if settings.alert_webhook_set else None),
    }


def build_warehouse(settings: Settings) -> Warehouse:
    """The DuckDB file, or the DuckLake warehouse (imported only then: it loads two DuckDB extensions)."""
    if settings.warehouse == "lake":
        from crypto_assets.lake import LakeWarehouse

        return LakeWarehouse(catalog=settings.lake_catalog, data_path=settings.lake_data_path)
    return Warehouse(database=settings.duckdb_path)

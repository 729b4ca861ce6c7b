"""Resources, and the ones each deployment gets.

``build_resources()`` binds, from the environment (``crypto_assets/settings.py``):

- ``warehouse``: the DuckDB file (``crypto_assets/warehouse.py``), or for ``CRYPTO_ASSETS_WAREHOUSE=lake``
  the DuckLake warehouse (``crypto_assets/lake.py``);
- ``market_source``: one of ``crypto_assets.market.sources.SOURCES`` (synthetic offline by default,
  live CoinGecko for prod, or replayed files);
- ``drift_reports``: where the Evidently reports are written, and the http address that serves them;
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


class DriftReports(dg.ConfigurableResource):
    """The folder drift reports are written to, and the http address serving it (for one-click links in the UI)."""

    folder: str = Field(description="Absolute folder of the HTML reports.")
    base_url: str | None = Field(
        default=None, description="http(s) address serving the folder (python -m crypto_assets.report_server)."
    )

    def path(self, split_id: str, comparison: str) -> Path:
        """``feature_drift_<split_id>_<comparison>.html``, anything but letters, digits, '.', '-' and '_' replaced."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{split_id}_{comparison}")
        return Path(self.folder) / f"feature_drift_{safe}.html"

    def url(self, path: Path) -> str | None:
        return f"{self.base_url.rstrip('/')}/{path.name}" if self.base_url else None

    def save_html(self, snapshot, path: Path) -> None:
        """Write an Evidently snapshot's HTML report atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        snapshot.save_html(str(tmp))
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
        "drift_reports": DriftReports(folder=str(settings.reports_dir), base_url=settings.reports_url),
        # EnvVar: Dagster resolves the URL at run time and shows the variable's name, never its value.
        "alert_webhook": AlertWebhook(url=dg.EnvVar(ALERT_WEBHOOK_ENV) if settings.alert_webhook_set else None),
    }


def build_warehouse(settings: Settings) -> Warehouse:
    """The DuckDB file, or the DuckLake warehouse (imported only then: it loads two DuckDB extensions)."""
    if settings.warehouse == "lake":
        from crypto_assets.lake import LakeWarehouse

        return LakeWarehouse(catalog=settings.lake_catalog, data_path=settings.lake_data_path)
    return Warehouse(database=settings.duckdb_path)

"""Resources, and the defaults each deployment gets.

``DAGSTER_DEPLOYMENT`` picks the defaults: ``local`` (the default) runs offline on the synthetic
market and a DuckDB file under ``.local/``; ``prod`` reads the live CoinGecko API. Environment
variables override single settings:

- ``CRYPTO_ASSETS_SOURCE``: ``synthetic`` | ``coingecko`` | ``csv``
- ``CRYPTO_ASSETS_DUCKDB_PATH``: the DuckDB file
- ``CRYPTO_ASSETS_CSV_PATHS``: files or folders to replay, separated by ``:``
- ``COINGECKO_API_KEY`` (read at run time, never shown), ``COINGECKO_API_PLAN`` (demo | pro),
  ``COINGECKO_BASE_URL``
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from crypto_assets.instance import DEPLOYMENTS, current_deployment
from crypto_assets.market.schema import SourceBatch
from crypto_assets.warehouse import Warehouse

SOURCE_KINDS = ("synthetic", "coingecko", "csv")
DEFAULT_CSV_PATHS = ["../shared/data/market"]


class SyntheticMarketConfig(dg.Config):
    seed: int = Field(default=7, description="Random seed: the same seed and hour always give the same rows.")
    universe_size: int = Field(default=20, ge=1, le=1000, description="Number of coins to simulate.")
    anomaly_rate: float = Field(
        default=0.02, ge=0.0, lt=0.5, description="Share of coin-hours inside an injected anomaly."
    )
    regime_shift_at: str | None = Field(
        default=None,
        description="Testing drift: from this hour (UTC, ISO like 2026-03-01T12:00) on, the first regime_shift_coins coins are more volatile.",
    )
    regime_shift_coins: int = Field(
        default=5, ge=1, le=1000, description="How many coins (in universe order) the regime shift affects."
    )
    regime_shift_multiplier: float = Field(
        default=2.0, gt=0.0, le=100.0, description="Volatility multiplier of the regime shift."
    )

    @field_validator("regime_shift_at")
    @classmethod
    def _an_hour(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                at = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"regime_shift_at must be an ISO date and hour like 2026-03-01T12:00, got {value!r}"
                ) from None
            if (at.minute, at.second, at.microsecond) != (0, 0, 0):
                raise ValueError(f"regime_shift_at must be on the hour, got {value!r}")
        return value

    def regime_shift(self):
        from crypto_assets.market.synthetic import RegimeShift

        if self.regime_shift_at is None:
            return None
        at = datetime.fromisoformat(self.regime_shift_at)
        return RegimeShift(
            at if at.tzinfo else at.replace(tzinfo=UTC), self.regime_shift_coins, self.regime_shift_multiplier
        )


class CoinGeckoMarketConfig(dg.Config):
    base_url: str = Field(
        default="https://api.coingecko.com/api/v3", description="API root; the pro plan uses pro-api.coingecko.com."
    )
    api_key: str | None = Field(default=None, description="Set from the COINGECKO_API_KEY environment variable only.")
    api_plan: Literal["demo", "pro"] = Field(default="demo", description="Which API key header to send.")
    coin_ids: list[str] = Field(default_factory=list, description="Coins to ingest; empty means the default 20.")
    requests_per_minute: float = Field(default=25.0, gt=0, description="Client-side rate limit.")
    timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    max_attempts: int = Field(default=5, ge=1, description="Attempts per request (retries on 429, 5xx, timeouts).")


class CsvMarketConfig(dg.Config):
    paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CSV_PATHS), description="CSV/Parquet files or folders to replay."
    )
    inject_anomalies: bool = Field(default=True, description="Inject labeled anomalies into the replayed prices.")
    anomaly_rate: float = Field(
        default=0.02, ge=0.0, lt=0.5, description="Share of coin-hours inside an injected anomaly."
    )
    seed: int = Field(default=7, description="Seed of the injected anomalies.")


class MarketSource(dg.ConfigurableResource):
    """Where market snapshots come from: ``synthetic`` (offline), ``coingecko`` (live) or ``csv`` (replay)."""

    kind: Literal["synthetic", "coingecko", "csv"] = Field(default="synthetic", description="Which source to read.")
    synthetic: SyntheticMarketConfig = SyntheticMarketConfig()
    coingecko: CoinGeckoMarketConfig = CoinGeckoMarketConfig()
    csv: CsvMarketConfig = CsvMarketConfig()

    @property
    def is_live(self) -> bool:
        return self.kind == "coingecko"

    def expected_coins(self) -> list[str] | None:
        """The coin ids the source should deliver every hour, or None when it varies (CSV replay)."""
        from crypto_assets.market.universe import DEFAULT_COINS, default_universe

        if self.kind == "synthetic":
            return [c.coin_id for c in default_universe(self.synthetic.universe_size)]
        if self.kind == "coingecko":
            return list(self.coingecko.coin_ids) or [c.coin_id for c in DEFAULT_COINS]
        return None

    def fetch(self, start: datetime, end: datetime) -> SourceBatch:
        """Snapshots, quarantined records and anomaly ground truth for the hours in [start, end)."""
        if self.kind == "synthetic":
            from crypto_assets.market.synthetic import synthetic_window
            from crypto_assets.market.universe import default_universe

            cfg = self.synthetic
            return synthetic_window(
                default_universe(cfg.universe_size), cfg.seed, start, end, cfg.anomaly_rate, cfg.regime_shift()
            )
        if self.kind == "coingecko":
            from crypto_assets.market.coingecko import CoinGeckoClient, CoinGeckoSettings, fetch_coingecko_window

            cfg = self.coingecko
            settings = CoinGeckoSettings(
                base_url=cfg.base_url,
                api_key=cfg.api_key,
                api_plan=cfg.api_plan,
                requests_per_minute=cfg.requests_per_minute,
                timeout_s=cfg.timeout_s,
                max_attempts=cfg.max_attempts,
                **({"coin_ids": tuple(cfg.coin_ids)} if cfg.coin_ids else {}),
            )
            return fetch_coingecko_window(CoinGeckoClient(settings), start, end)
        from crypto_assets.market.csv_replay import csv_window

        batch = csv_window(self.csv.paths, start, end)
        if self.csv.inject_anomalies:
            batch = _inject_into_replay(batch, self.csv.seed, self.csv.anomaly_rate)
        return batch


def _inject_into_replay(batch: SourceBatch, seed: int, rate: float) -> SourceBatch:
    """Overlay labeled anomalies on replayed real candles, so detectors can be scored on real markets."""
    from crypto_assets.market.anomalies import inject_anomalies
    from crypto_assets.market.schema import GROUND_TRUTH_COLUMNS, SNAPSHOT_COLUMNS, conform

    altered, truth = inject_anomalies(batch.snapshots, seed=seed, rate=rate, source="csv")
    truth = truth.assign(partition_hour=truth["observed_at"].dt.floor("h"))
    stats = {**batch.stats, "anomalous_rows": len(truth)}
    return SourceBatch(
        conform(altered, SNAPSHOT_COLUMNS),
        batch.quarantine,
        conform(truth, GROUND_TRUTH_COLUMNS),
        stats,
        batch.warnings,
    )


def default_database_path() -> str:
    return os.environ.get("CRYPTO_ASSETS_DUCKDB_PATH", ".local/crypto_assets.duckdb")


def build_resources(deployment: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for ``deployment`` (default: ``DAGSTER_DEPLOYMENT``, else ``local``)."""
    deployment = deployment or current_deployment()
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"DAGSTER_DEPLOYMENT must be one of {', '.join(DEPLOYMENTS)}; got {deployment!r}")
    kind = os.environ.get("CRYPTO_ASSETS_SOURCE", "coingecko" if deployment == "prod" else "synthetic")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"CRYPTO_ASSETS_SOURCE must be one of {', '.join(SOURCE_KINDS)}; got {kind!r}")
    coingecko = CoinGeckoMarketConfig(
        base_url=os.environ.get("COINGECKO_BASE_URL", CoinGeckoMarketConfig().base_url),
        api_plan=os.environ.get("COINGECKO_API_PLAN", "demo"),
        # EnvVar keeps the key out of the code location and the UI: Dagster shows the variable's name.
        api_key=dg.EnvVar("COINGECKO_API_KEY") if os.environ.get("COINGECKO_API_KEY") else None,
    )
    csv_paths = os.environ.get("CRYPTO_ASSETS_CSV_PATHS")
    csv = CsvMarketConfig(paths=csv_paths.split(":")) if csv_paths else CsvMarketConfig()
    return {
        "warehouse": Warehouse(database=default_database_path()),
        "market_source": MarketSource(kind=kind, coingecko=coingecko, csv=csv),
    }

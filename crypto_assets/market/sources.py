"""Market sources: one interface, one resource class per source.

Ingestion asks for ``market_source: MarketSource``; the deployment binds one of ``SOURCES``
(``crypto_assets/resources.py``). A source returns, for the hours [start, end), a
:class:`~crypto_assets.market.schema.SourceBatch`: snapshots in the unified schema, the records it
rejected with a reason, and the ground truth of any anomalies it injected. Adding a source is one
class here, registered in ``SOURCES``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, Literal

import dagster as dg
from pydantic import Field, field_validator

from crypto_assets.market.schema import SourceBatch

if TYPE_CHECKING:  # only for annotations
    from crypto_assets.settings import Settings


class MarketSource(dg.ConfigurableResource):
    """Where market snapshots come from."""

    kind: ClassVar[str]  # the name CRYPTO_ASSETS_SOURCE selects it by; also each row's `source`
    is_live: ClassVar[bool] = False  # data arrives as time passes (freshness is checked)

    def expected_coins(self) -> list[str] | None:
        """The coin ids the source should deliver every hour, or None when it varies (replayed files)."""
        return None

    def fetch(self, start: datetime, end: datetime) -> SourceBatch:
        """Snapshots, quarantined records and anomaly ground truth for the hours in [start, end)."""
        raise NotImplementedError

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketSource:
        """The source as the deployment's environment configures it."""
        return cls()


class SyntheticMarket(MarketSource):
    """A deterministic, offline simulator (``crypto_assets/market/synthetic.py``), with labeled anomalies."""

    kind: ClassVar[str] = "synthetic"

    seed: int = Field(default=7, description="Random seed: the same seed and hour always give the same rows.")
    universe_size: int = Field(default=20, ge=1, le=1000, description="Number of coins to simulate.")
    anomaly_rate: float = Field(
        default=0.02, ge=0.0, lt=0.5, description="Share of coin-hours inside an injected anomaly."
    )
    anomaly_generator: str = Field(
        default="crypto_assets.market.anomalies:inject_anomalies",
        description=(
            "module:function of the anomaly generator, with the signature of crypto_assets.market.anomalies."
            "inject_anomalies; e.g. crypto_assets.market.holdout_anomalies:inject_holdout_anomalies to validate."
        ),
    )
    regime_shift_at: str | None = Field(
        default=None,
        description=(
            "Testing drift: from this hour (UTC, ISO like 2026-03-01T12:00) on, the first regime_shift_coins "
            "coins are more volatile."
        ),
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

    def expected_coins(self) -> list[str]:
        from crypto_assets.market.universe import default_universe

        return [c.coin_id for c in default_universe(self.universe_size)]

    def fetch(self, start: datetime, end: datetime) -> SourceBatch:
        from crypto_assets.market.synthetic import synthetic_window
        from crypto_assets.market.universe import default_universe

        universe = default_universe(self.universe_size)
        return synthetic_window(
            universe, self.seed, start, end, self.anomaly_rate, self.regime_shift(), self.anomaly_generator
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SyntheticMarket:
        """CRYPTO_ASSETS_UNIVERSE_SIZE coins (up to 1000), or the default 20."""
        return cls(universe_size=settings.universe_size) if settings.universe_size else cls()


class CoinGeckoMarket(MarketSource):
    """The live CoinGecko API (``crypto_assets/market/coingecko.py``)."""

    kind: ClassVar[str] = "coingecko"
    is_live: ClassVar[bool] = True

    base_url: str = Field(
        default="https://api.coingecko.com/api/v3", description="API root; the pro plan uses pro-api.coingecko.com."
    )
    api_key: str | None = Field(default=None, description="Set from the COINGECKO_API_KEY environment variable only.")
    api_plan: Literal["demo", "pro"] = Field(default="demo", description="Which API key header to send.")
    coin_ids: list[str] = Field(default_factory=list, description="Coins to ingest; empty means the default 20.")
    requests_per_minute: float = Field(default=25.0, gt=0, description="Client-side rate limit.")
    timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    max_attempts: int = Field(default=5, ge=1, description="Attempts per request (retries on 429, 5xx, timeouts).")

    def expected_coins(self) -> list[str]:
        from crypto_assets.market.universe import DEFAULT_COINS

        return list(self.coin_ids) or [c.coin_id for c in DEFAULT_COINS]

    def fetch(self, start: datetime, end: datetime) -> SourceBatch:
        from crypto_assets.market.coingecko import CoinGeckoClient, CoinGeckoSettings, fetch_coingecko_window

        settings = CoinGeckoSettings(
            base_url=self.base_url,
            api_key=self.api_key,
            api_plan=self.api_plan,
            requests_per_minute=self.requests_per_minute,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            **({"coin_ids": tuple(self.coin_ids)} if self.coin_ids else {}),
        )
        return fetch_coingecko_window(CoinGeckoClient(settings), start, end)

    @classmethod
    def from_settings(cls, settings: Settings) -> CoinGeckoMarket:
        from crypto_assets.settings import COINGECKO_API_KEY_ENV

        return cls(
            **({"base_url": settings.coingecko_base_url} if settings.coingecko_base_url else {}),
            api_plan=settings.coingecko_api_plan,
            # EnvVar keeps the key out of the code location and the UI: Dagster shows the variable's name.
            api_key=dg.EnvVar(COINGECKO_API_KEY_ENV) if settings.coingecko_api_key_set else None,
        )


class CsvReplayMarket(MarketSource):
    """Hourly candles replayed from files (``crypto_assets/market/csv_replay.py``), with labeled anomalies injected."""

    kind: ClassVar[str] = "csv"

    paths: list[str] = Field(description="CSV/Parquet files or folders to replay.")
    inject_anomalies: bool = Field(default=True, description="Inject labeled anomalies into the replayed prices.")
    anomaly_rate: float = Field(
        default=0.02, ge=0.0, lt=0.5, description="Share of coin-hours inside an injected anomaly."
    )
    seed: int = Field(default=7, description="Seed of the injected anomalies.")
    anomaly_generator: str = Field(
        default="crypto_assets.market.anomalies:inject_anomalies",
        description=(
            "module:function of the anomaly generator, with the signature of crypto_assets.market.anomalies."
            "inject_anomalies; e.g. crypto_assets.market.holdout_anomalies:inject_holdout_anomalies to validate."
        ),
    )

    def fetch(self, start: datetime, end: datetime) -> SourceBatch:
        from crypto_assets.market.csv_replay import csv_window

        batch = csv_window(self.paths, start, end)
        return self._with_anomalies(batch) if self.inject_anomalies else batch

    def _with_anomalies(self, batch: SourceBatch) -> SourceBatch:
        """Overlay labeled anomalies on replayed real candles, so detectors can be scored on real markets."""
        from crypto_assets.market.anomalies import resolve_generator, run_generator
        from crypto_assets.market.schema import GROUND_TRUTH_COLUMNS, SNAPSHOT_COLUMNS, conform

        generator, _ = resolve_generator(self.anomaly_generator)
        altered, truth = run_generator(
            generator, batch.snapshots, seed=self.seed, rate=self.anomaly_rate, source=self.kind
        )
        truth = truth.assign(partition_hour=truth["observed_at"].dt.floor("h"))
        stats = {**batch.stats, "anomalous_rows": len(truth)}
        return SourceBatch(
            conform(altered, SNAPSHOT_COLUMNS),
            batch.quarantine,
            conform(truth, GROUND_TRUTH_COLUMNS),
            stats,
            batch.warnings,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> CsvReplayMarket:
        return cls(paths=list(settings.csv_paths))


SOURCES: dict[str, type[MarketSource]] = {s.kind: s for s in (SyntheticMarket, CoinGeckoMarket, CsvReplayMarket)}

"""Per-coin drift: a CUSUM of each coin's scale against the market, relative to the coin's own reference.

The dataset-level comparison (Evidently, ``crypto_assets/assets/drift.py``) pools every coin's rows,
so a volatility shift on a quarter of the coins is diluted among the others. Here each coin is
compared with itself and with the market, day by day, and evidence accumulates:

- hourly log returns are winsorized at ``clip_sigmas`` robust standard deviations of the coin's
  reference, each day's ``trim_hours`` largest contributions to the slope below are left out (a
  flash crash and its rebound move a day's statistic little), and frozen hours (a return of
  exactly 0: a stale feed) are left out too;
- ``market`` = the median of the coins' returns each hour;
- per coin and day, two estimates of how much larger the coin's moves have become against the
  market's, each 0 on a quiet day and log 2 = 0.69 when the coin has become twice as volatile:
  ``beta_x`` = log(beta today / the median of its reference days' betas), ``beta`` the slope of its
  returns on the market's (through the origin): a shift of the coin scales its co-movement, while a
  market-wide storm moves the market with the coin and leaves it alone; ``level_x`` = log(its mean
  |return| today / its reference days' median), minus the median of that over the coins (the
  market's own change), without the day's ``trim_hours`` largest |returns|: a shift scales the
  coin's own noise too. ``x`` is their mean, winsorized at ±``max_daily``: the two err on different
  hours, so on one day of a shift their mean is less noisy than either (the first day is when
  an alarm is worth most);
- an upward CUSUM (Page 1954) over the monitored days: S = max(0, S + x - k), ``k`` the allowance
  (daily moves below it never add up), alarm when S exceeds ``h``;
- for reading, the coin's robust volatility against its own reference, ``self_x`` = log(its mean
  |winsorized return| today / over the reference), and the same for the market.

The per-coin rule: drift when at least ``min_coins`` coins' CUSUM exceed ``h`` on the day (one coin's
idiosyncratic noise does not raise the alarm; a shift of several coins does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd

MARKET = "(market)"
COLUMNS = ["coin_id", "reference_beta", "days", "beta_x", "level_x", "x", "self_x", "cusum", "drifted"]


@dataclass(frozen=True)
class CusumSettings:
    allowance: float = 0.2  # k, in log ratio: a day at 1.22x its reference adds nothing
    threshold: float = 0.35  # h: one day at 1.75x, or two days at about 1.45x
    max_daily: float = 0.7  # one day adds at most log 2 - k: a single wild day cannot fire it alone
    clip_sigmas: float = 8.0
    trim_hours: int = 2  # each day's hours with the largest contributions to beta (and largest |returns|), left out
    min_hours: int = 12  # a day with fewer usable hours adds no evidence
    min_coins: int = 3  # two coins past h together happen on quiet synthetic days (crypto_assets_tests/test_drift.py)


def _hours_by_coin(frame: pd.DataFrame) -> pd.DataFrame:
    wide = frame.pivot_table(index="partition_hour", columns="coin_id", values="ret_1h", aggfunc="first")
    return wide.where(wide != 0)  # frozen hours say nothing about co-movement


def coin_drift(
    reference: pd.DataFrame, monitored: pd.DataFrame, settings: CusumSettings = CusumSettings()
) -> pd.DataFrame:
    """Per coin (and a ``(market)`` row): today's x, the CUSUM over the monitored days, whether it drifted.

    ``reference`` and ``monitored``: coin_id, partition_hour, ret_1h; the monitored days follow the
    reference, the last of them is the day judged. Coins without a usable reference are left out.
    """
    import numpy as np
    import pandas as pd

    ref, mon = _hours_by_coin(reference), _hours_by_coin(monitored)
    coins = [c for c in ref.columns if c in mon.columns]
    if len(coins) < 2 or ref.empty or mon.empty:
        return pd.DataFrame(columns=COLUMNS)
    ref, mon = ref[coins], mon[coins]
    scale = (ref - ref.median()).abs().median() * 1.4826
    coins = [c for c in coins if scale[c] > 0]
    ref, mon, scale = ref[coins], mon[coins], scale[coins]

    def clip(wide):
        return wide.clip(lower=-settings.clip_sigmas * scale, upper=settings.clip_sigmas * scale, axis=1)

    ref, mon = clip(ref), clip(mon)
    ref_market, mon_market = ref.median(axis=1), mon.median(axis=1)

    def trimmed(values, groups):
        # Leave out each day's largest values: one wild hour (a crash and its rebound) moves neither estimate.
        rank = values.abs().groupby(groups).rank(ascending=False, method="first")
        return values.where(rank > settings.trim_hours)

    def slope(wide, market, groups):
        contribution = trimmed(wide.mul(market, axis=0), groups)
        present = contribution.notna()
        num = contribution.groupby(groups).sum(min_count=1)
        den = present.mul(market**2, axis=0).groupby(groups).sum()
        hours = present.groupby(groups).sum()
        return (num / den.where(den > 0)).where(hours >= settings.min_hours)

    # the median of daily betas: estimated exactly as each monitored day's is, so a quiet day's x is 0
    reference_beta = slope(ref, ref_market, ref.index.floor("D")).median()
    days = mon.index.floor("D")
    beta = slope(mon, mon_market, days)
    usable = reference_beta[reference_beta > 0.1].index  # a coin that does not move with the market has no beta
    beta_x = np.log(beta[usable].clip(lower=0.05 * reference_beta[usable], axis=1) / reference_beta[usable])

    def level(wide, groups):
        kept = trimmed(wide.abs(), groups)
        return kept.groupby(groups).mean().where(kept.notna().groupby(groups).sum() >= settings.min_hours)

    own = np.log(level(mon, days) / level(ref, ref.index.floor("D")).median())
    level_x = own.sub(own.median(axis=1), axis=0)[usable]
    x = (
        beta_x.clip(-settings.max_daily, settings.max_daily) + level_x.clip(-settings.max_daily, settings.max_daily)
    ) / 2
    ref_level, mon_level = ref.abs().mean(), mon.abs().groupby(days).mean()
    self_x = np.log(mon_level / ref_level)
    market_self = np.log(mon_market.abs().groupby(days).mean() / ref_market.abs().mean())

    rows = []
    for coin in coins:
        stat, values = 0.0, x[coin].to_numpy() if coin in x else np.array([])
        for value in values:
            if not np.isnan(value):
                stat = max(0.0, stat + value - settings.allowance)
        rows.append(
            {
                "coin_id": coin,
                "reference_beta": float(reference_beta[coin]),
                "days": int(np.isfinite(values).sum()),
                "beta_x": _last(beta_x, coin),
                "level_x": _last(level_x, coin),
                "x": float(values[-1]) if len(values) else float("nan"),
                "self_x": float(self_x[coin].iloc[-1]),
                "cusum": stat,
                "drifted": bool(stat > settings.threshold),
            }
        )
    rows.append(
        {
            "coin_id": MARKET,
            "reference_beta": 1.0,
            "days": int(market_self.notna().sum()),
            "beta_x": float("nan"),
            "level_x": float("nan"),
            "x": float("nan"),
            "self_x": float(market_self.iloc[-1]),
            "cusum": float("nan"),
            "drifted": False,
        }
    )
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.sort_values(["drifted", "cusum"], ascending=False, kind="stable", na_position="last").reset_index(
        drop=True
    )


def _last(frame: pd.DataFrame, coin: str) -> float:
    return float(frame[coin].iloc[-1]) if coin in frame and len(frame) else float("nan")


def coins_drifted(result: pd.DataFrame) -> list[str]:
    return [c for c, d in zip(result["coin_id"], result["drifted"], strict=True) if d and c != MARKET]

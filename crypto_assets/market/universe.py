"""The default coin universe: CoinGecko ids, ticker symbols and realistic price scales."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Coin:
    coin_id: str
    symbol: str
    base_price: float  # typical USD price, the level the simulator's prices revert to
    base_volume: float  # typical hourly USD volume
    supply: float  # circulating supply, for market cap
    beta: float  # sensitivity to the common market factor


DEFAULT_COINS: tuple[Coin, ...] = (
    Coin("bitcoin", "BTC", 62_000.0, 1.2e9, 19.7e6, 1.0),
    Coin("ethereum", "ETH", 3_100.0, 6.0e8, 120.2e6, 1.15),
    Coin("binancecoin", "BNB", 560.0, 8.0e7, 146.0e6, 0.9),
    Coin("solana", "SOL", 150.0, 1.5e8, 465.0e6, 1.4),
    Coin("ripple", "XRP", 0.58, 7.0e7, 56.0e9, 1.1),
    Coin("cardano", "ADA", 0.45, 2.0e7, 35.5e9, 1.2),
    Coin("dogecoin", "DOGE", 0.14, 5.0e7, 145.0e9, 1.5),
    Coin("avalanche-2", "AVAX", 32.0, 1.8e7, 395.0e6, 1.35),
    Coin("polkadot", "DOT", 6.5, 1.2e7, 1.4e9, 1.2),
    Coin("chainlink", "LINK", 14.0, 1.6e7, 587.0e6, 1.25),
    Coin("tron", "TRX", 0.12, 1.5e7, 87.0e9, 0.7),
    Coin("matic-network", "MATIC", 0.65, 1.4e7, 9.3e9, 1.3),
    Coin("litecoin", "LTC", 78.0, 1.5e7, 74.5e6, 1.0),
    Coin("bitcoin-cash", "BCH", 420.0, 1.2e7, 19.7e6, 1.05),
    Coin("uniswap", "UNI", 8.0, 6.0e6, 600.0e6, 1.3),
    Coin("stellar", "XLM", 0.11, 4.0e6, 29.0e9, 1.0),
    Coin("cosmos", "ATOM", 8.5, 6.0e6, 390.0e6, 1.2),
    Coin("near", "NEAR", 5.2, 1.0e7, 1.07e9, 1.45),
    Coin("aptos", "APT", 8.8, 7.0e6, 450.0e6, 1.4),
    Coin("filecoin", "FIL", 5.0, 6.0e6, 560.0e6, 1.3),
)

_BY_SYMBOL = {c.symbol: c for c in DEFAULT_COINS}


def default_universe(size: int = 20) -> list[Coin]:
    """The first ``size`` default coins; beyond the 20 real ones, synthetic coins ``synth-021``…

    Extra coins exist so benchmarks can scale the universe (for example to 100 coins).
    """
    if size < 1:
        raise ValueError(f"universe_size must be at least 1, got {size}")
    coins = list(DEFAULT_COINS[:size])
    for i in range(len(DEFAULT_COINS), size):
        template = DEFAULT_COINS[i % len(DEFAULT_COINS)]
        coins.append(
            Coin(
                coin_id=f"synth-{i + 1:03d}",
                symbol=f"SYN{i + 1:03d}",
                base_price=template.base_price * (0.5 + (i % 7) / 4),
                base_volume=template.base_volume / 4,
                supply=template.supply,
                beta=0.8 + (i % 9) / 10,
            )
        )
    return coins


def coin_id_for_symbol(symbol: str) -> str:
    """CoinGecko id for a ticker symbol; unknown symbols map to their lower-case ticker."""
    coin = _BY_SYMBOL.get(symbol.upper())
    return coin.coin_id if coin else symbol.lower()

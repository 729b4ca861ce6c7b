"""Market data sources: synthetic simulator, CoinGecko API, CSV replay."""

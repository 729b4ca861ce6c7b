"""crypto_assets: crypto market snapshots to monitored, versioned ML models, as Dagster assets."""

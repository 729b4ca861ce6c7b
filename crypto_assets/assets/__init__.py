"""Assets grouped by pipeline stage, with the checks that guard them."""


def asset_modules(lake: bool = False) -> list:
    """The modules that define the code location's assets and checks (lake_maintenance: the DuckLake warehouse only)."""
    from crypto_assets.assets import (
        candidates,
        drift,
        evaluations,
        features,
        ingestion,
        promotion,
        serving,
        splits,
    )

    modules = [ingestion, features, splits, drift, candidates, evaluations, promotion, serving]
    if lake:
        from crypto_assets.assets import lake_maintenance

        modules.append(lake_maintenance)
    return modules

"""Serving and monitoring: hourly scores from the champion current at run time, and live outcomes."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from crypto_assets import registry
from crypto_assets.assets.features import FEATURES_KEY, LABELS_KEY
from crypto_assets.assets.promotion import CHAMPION_KEY
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.models import FAMILIES_BY_NAME, ModelFamily
from crypto_assets.partitions import hourly_partitions
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

SCORE_TABLES = {"anomaly_detector": "anomaly_scores", "volatility_model": "volatility_forecasts"}
OUTCOMES_KEY = dg.AssetKey("prediction_outcomes")
LIVE_WINDOW = timedelta(days=7)


def build_scoring_asset(family: ModelFamily, asset_name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=asset_name,
        deps=[FEATURES_KEY, CHAMPION_KEY],
        partitions_def=hourly_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb_writer",
        group_name="serving",
        kinds=family.kinds | {"python"},
        owners=["team:ml-platform"],
        output_required=False,
        description=(
            f"Hourly {family.name} scores for every coin, from the champion current at run time; "
            "each row names the model version that produced it. Skipped, with the reason, while there is no champion."
        ),
        metadata={"dagster/table_name": "serving.model_scores"},
    )
    def _scores(context: dg.AssetExecutionContext, warehouse: Warehouse):
        window = context.partition_time_window
        with warehouse.connect() as conn:
            champion = registry.champion(conn, family.name)
            skip = None
            if champion is None:
                skip = f"no {family.name} champion yet: nothing scored (train, evaluate and promote one first)"
            elif champion.feature_spec_version != FEATURE_SPEC_VERSION:
                skip = (f"champion {champion.version_id} was trained on feature spec {champion.feature_spec_version}, "
                        f"features are now {FEATURE_SPEC_VERSION}: retrain before scoring")
            if skip:
                context.log.warning(skip)
                context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata={"skipped": skip}))
                return
            model = registry.load_artifact(conn, champion)  # sha256-verified before unpickling
            features = conn.execute(
                "SELECT * FROM features.coin_features WHERE partition_hour >= ? AND partition_hour < ? ORDER BY partition_hour, coin_id",
                [utc_naive(window.start), utc_naive(window.end)],
            ).df()
            scores = model.scores(features) if len(features) else []
            rows = pd.DataFrame({
                "model_name": family.name,
                "coin_id": features["coin_id"],
                "partition_hour": features["partition_hour"],
                "version_id": champion.version_id,
                "score": scores,
                "flagged": model.flags(features) if len(features) else [],
                "scored_at": utc_naive(datetime.now(timezone.utc)),
            })
            with transaction(conn):
                conn.execute(
                    "DELETE FROM serving.model_scores WHERE model_name = ? AND partition_hour >= ? AND partition_hour < ?",
                    [family.name, utc_naive(window.start), utc_naive(window.end)],
                )
                insert_frame(conn, "serving.model_scores", rows)
        top = rows.merge(features[["coin_id", "partition_hour", "symbol"]]).sort_values("score", ascending=False)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(rows),
                "model_version": champion.version_id,
                "flagged_rows": int(rows["flagged"].sum()),
                "flag_rate": float(rows["flagged"].mean()) if len(rows) else 0.0,
                "top_scores": markdown_preview(top[["partition_hour", "symbol", "score", "flagged"]]),
            }
        )

    return _scores


scoring_assets = [build_scoring_asset(FAMILIES_BY_NAME[name], asset) for name, asset in SCORE_TABLES.items()]


@dg.asset(
    key=OUTCOMES_KEY,
    deps=["volatility_forecasts", LABELS_KEY],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_writer",
    group_name="serving",
    kinds={"duckdb", "sql"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "serving.prediction_outcomes"},
)
def prediction_outcomes(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Volatility forecasts joined with the observed outcome once the 6-hour horizon has passed.

    Reports live precision and recall over the trailing 7 days; hours still inside their horizon
    are left out until their labels exist.
    """
    window = context.partition_time_window
    bounds = [utc_naive(window.start), utc_naive(window.end)]
    with warehouse.connect() as conn:
        with transaction(conn):
            conn.execute("DELETE FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?", bounds)
            conn.execute(
                """
                INSERT INTO serving.prediction_outcomes
                SELECT s.coin_id, s.partition_hour, s.version_id, s.score, s.flagged, l.volatility_spike
                FROM serving.model_scores s JOIN features.coin_labels l USING (coin_id, partition_hour)
                WHERE s.model_name = 'volatility_model' AND l.volatility_spike IS NOT NULL
                  AND s.partition_hour >= ? AND s.partition_hour < ?
                """,
                bounds,
            )
        written = conn.execute(
            "SELECT count(*) FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?", bounds
        ).fetchone()[0]
        live = conn.execute(
            """
            SELECT version_id, count(*) AS rows,
                   count(*) FILTER (WHERE predicted_spike AND actual_spike) AS true_positives,
                   count(*) FILTER (WHERE predicted_spike) AS predicted, count(*) FILTER (WHERE actual_spike) AS actual
            FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?
            GROUP BY version_id ORDER BY version_id
            """,
            [utc_naive(window.end - LIVE_WINDOW), utc_naive(window.end)],
        ).df()
    tp, predicted, actual = (int(live[c].sum()) for c in ("true_positives", "predicted", "actual"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(written),
            "live_precision_7d": tp / predicted if predicted else 0.0,
            "live_recall_7d": tp / actual if actual else 0.0,
            "live_rows_7d": int(live["rows"].sum()),
            "by_model_version": markdown_preview(live),
        }
    )

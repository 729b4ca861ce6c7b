"""Serving and monitoring: hourly scores from the champion, the latest candidate scored beside it in
shadow, and both joined with what happened.

Each score row names the version that produced it and its role then: ``champion`` (serving) or
``shadow`` (the latest candidate, not serving). ``scored_at`` is when that version first scored the
hour: re-running a day keeps it, so a forecast made within ``LIVE_WITHIN`` of its hour's end is
*live*, and hours scored later (a backfill, or a new champion re-scoring the day) are kept apart
from the live record.
"""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from crypto_assets import registry
from crypto_assets.assets.features import FEATURES_KEY, LABELS_KEY
from crypto_assets.assets.promotion import CHAMPION_KEY
from crypto_assets.assets.splits import refuse_stale_features
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.ml.families import FAMILIES_BY_NAME, ModelFamily
from crypto_assets.partitions import daily_data_partitions
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    pass

SCORE_TABLES = {"anomaly_detector": "anomaly_scores", "volatility_model": "volatility_forecasts"}
OUTCOMES_KEY = dg.AssetKey("prediction_outcomes")
CHAMPION_ROLE, SHADOW_ROLE = "champion", "shadow"
LIVE_WINDOW = timedelta(days=7)
# A forecast counts as live when it was made within this long after its hour ended (the hourly
# schedule scores an hour a few minutes after it ends).
LIVE_WITHIN = timedelta(hours=2)


def scorers(conn, family: ModelFamily) -> tuple[list[tuple[str, registry.ModelVersion]], list[str]]:
    """(role, version) pairs to score with now, and why any is missing."""
    notes = []
    champion = registry.champion(conn, family.name)
    try:
        latest = registry.resolve(conn, family.name, "latest")
    except registry.RegistryError:
        latest = None
    pairs = []
    if champion is None:
        notes.append(f"no {family.name} champion yet: nothing served (train, evaluate and promote one first)")
    elif champion.feature_spec_version != FEATURE_SPEC_VERSION:
        notes.append(
            f"champion {champion.version_id} was trained on feature spec {champion.feature_spec_version}, "
            f"features are now {FEATURE_SPEC_VERSION}: retrain before scoring"
        )
    else:
        pairs.append((CHAMPION_ROLE, champion))
    if (
        latest is not None
        and latest.feature_spec_version == FEATURE_SPEC_VERSION
        and (champion is None or latest.version_id != champion.version_id)
    ):
        pairs.append((SHADOW_ROLE, latest))
    return pairs, notes


def build_scoring_asset(family: ModelFamily, asset_name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=asset_name,
        deps=[FEATURES_KEY, CHAMPION_KEY],
        partitions_def=daily_data_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb_writer",
        group_name="serving",
        kinds=family.kinds | {"python"},
        owners=["team:ml-platform"],
        output_required=False,
        description=(
            f"Hourly {family.name} scores for every coin from the champion current at run time, and from the latest "
            "candidate beside it in shadow (not serving); each row names its version and role. Skipped, with the reason, "
            "while there is nothing to score with."
        ),
        metadata={"dagster/table_name": "serving.model_scores"},
    )
    def _scores(context: dg.AssetExecutionContext, warehouse: Warehouse):
        import pandas as pd

        window = context.partition_time_window
        start, end = utc_naive(window.start), utc_naive(window.end)
        now = utc_naive(datetime.now(UTC))
        with warehouse.connect() as conn:
            pairs, notes = scorers(conn, family)
            for note in notes:
                context.log.warning(note)
            if not pairs:
                context.log_event(
                    dg.AssetObservation(asset_key=context.asset_key, metadata={"skipped": "; ".join(notes)})
                )
                return
            refuse_stale_features(conn, start, end)  # a model reads the columns of its own feature spec only
            features = conn.execute(
                "SELECT * FROM features.coin_features WHERE partition_hour >= ? AND partition_hour < ? ORDER BY partition_hour, coin_id",
                [start, end],
            ).df()
            parts = []
            for role, version in pairs:
                model = registry.load_artifact(conn, version)  # sha256-verified before unpickling
                parts.append(
                    pd.DataFrame(
                        {
                            "model_name": family.name,
                            "role": role,
                            "version_id": version.version_id,
                            "coin_id": features["coin_id"],
                            "partition_hour": features["partition_hour"],
                            "score": model.scores(features) if len(features) else [],
                            "flagged": model.flags(features) if len(features) else [],
                        }
                    )
                )
            rows = pd.concat(parts, ignore_index=True)
            with transaction(conn):
                first_scored = conn.execute(
                    """
                    SELECT role, version_id, coin_id, partition_hour, min(scored_at) AS scored_at FROM serving.model_scores
                    WHERE model_name = ? AND partition_hour >= ? AND partition_hour < ? AND list_contains(?, version_id)
                    GROUP BY ALL
                    """,
                    [family.name, start, end, [v.version_id for _, v in pairs]],
                ).df()
                rows = rows.merge(first_scored, how="left", on=["role", "version_id", "coin_id", "partition_hour"])
                rows["scored_at"] = rows["scored_at"].fillna(now)
                for role, version in pairs:
                    conn.execute(
                        "DELETE FROM serving.model_scores WHERE model_name = ? AND role = ? AND version_id = ? AND partition_hour >= ? AND partition_hour < ?",
                        [family.name, role, version.version_id, start, end],
                    )
                insert_frame(conn, "serving.model_scores", rows)
        served = rows[rows["role"] == CHAMPION_ROLE]
        top = served.merge(features[["coin_id", "partition_hour", "symbol"]]).sort_values("score", ascending=False)
        versions = {role: version.version_id for role, version in pairs}
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(rows),
                "champion_version": versions.get(CHAMPION_ROLE, "none"),
                "shadow_version": versions.get(SHADOW_ROLE, "none"),
                "flagged_rows": int(served["flagged"].sum()),
                "flag_rate": float(served["flagged"].mean()) if len(served) else 0.0,
                "not_served": "; ".join(notes) or "none",
                "top_scores": markdown_preview(top[["partition_hour", "symbol", "score", "flagged"]]),
            }
        )

    return _scores


scoring_assets = [build_scoring_asset(FAMILIES_BY_NAME[name], asset) for name, asset in SCORE_TABLES.items()]


@dg.asset(
    key=OUTCOMES_KEY,
    deps=["volatility_forecasts", LABELS_KEY],
    partitions_def=daily_data_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_writer",
    group_name="serving",
    kinds={"duckdb", "sql"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "serving.prediction_outcomes"},
)
def prediction_outcomes(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Volatility forecasts of the champion and of the shadow candidate, joined with the outcome once the 6-hour horizon has passed.

    Reports live precision, recall and PR-AUC by version and role over the trailing 7 days, so a
    challenger's live record can be read before and after it is promoted. Hours still inside their
    horizon are left out until their labels exist.
    """
    window = context.partition_time_window
    bounds = [utc_naive(window.start), utc_naive(window.end)]
    with warehouse.connect() as conn:
        with transaction(conn):
            conn.execute(
                "DELETE FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?", bounds
            )
            conn.execute(
                """
                INSERT INTO serving.prediction_outcomes BY NAME
                SELECT s.coin_id, s.partition_hour, s.version_id, s.role, s.score AS probability, s.flagged AS predicted_spike,
                       l.volatility_spike AS actual_spike,
                       s.scored_at <= s.partition_hour + INTERVAL 1 HOUR + to_seconds(?) AS live
                FROM serving.model_scores s JOIN features.coin_labels l USING (coin_id, partition_hour)
                WHERE s.model_name = 'volatility_model' AND l.volatility_spike IS NOT NULL
                  AND s.partition_hour >= ? AND s.partition_hour < ?
                """,
                [LIVE_WITHIN.total_seconds(), *bounds],
            )
        written = conn.execute(
            "SELECT count(*) FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?", bounds
        ).fetchone()[0]
        by_version = conn.execute(
            """
            SELECT version_id, role, live, count(*) AS rows,
                   count(*) FILTER (WHERE predicted_spike AND actual_spike) AS true_positives,
                   count(*) FILTER (WHERE predicted_spike) AS predicted, count(*) FILTER (WHERE actual_spike) AS actual,
                   count(*) FILTER (WHERE predicted_spike AND actual_spike) / nullif(count(*) FILTER (WHERE predicted_spike), 0) AS precision,
                   count(*) FILTER (WHERE predicted_spike AND actual_spike) / nullif(count(*) FILTER (WHERE actual_spike), 0) AS recall
            FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?
            GROUP BY ALL ORDER BY version_id, role, live DESC
            """,
            [utc_naive(window.end - LIVE_WINDOW), utc_naive(window.end)],
        ).df()
    live_champion = by_version[(by_version["role"] == CHAMPION_ROLE) & by_version["live"]]
    tp, predicted, actual = (int(live_champion[c].sum()) for c in ("true_positives", "predicted", "actual"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(written),
            # NaN, not 0, when there is nothing to measure: no flag raised, or no spike happened.
            "live_precision_7d": tp / predicted if predicted else float("nan"),
            "live_recall_7d": tp / actual if actual else float("nan"),
            "live_rows_7d": int(live_champion["rows"].sum()),
            "by_version_and_role": markdown_preview(by_version, limit=30),
        }
    )

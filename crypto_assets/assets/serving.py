"""Serving and monitoring: hourly scores from the champion, the latest candidate scored beside it in
shadow, and both joined with what happened.

Each score row names the version that produced it and its role then: ``champion`` (serving) or
``shadow`` (the latest candidate, not serving). ``scored_at`` is when that version first scored the
hour: re-running a day keeps it, so a forecast made within ``LIVE_WITHIN`` of its hour's end is
*live*, and hours scored later (a backfill, or a new champion re-scoring the day) are kept apart
from the live record.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from crypto_assets import registry
from crypto_assets.assets.features import FEATURES_KEY, LABELS_KEY
from crypto_assets.assets.promotion import CHAMPION_KEY
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.ml.family import ModelFamily
from crypto_assets.partitions import daily_data_partitions, data_backfill_policy
from crypto_assets.training_data import refuse_stale_features
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

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


def score_key(family: ModelFamily) -> dg.AssetKey:
    return dg.AssetKey(family.score_asset)


# Families whose live forecasts are judged against a label: prediction_outcomes joins them.
JUDGED_FAMILIES = [f for f in MODEL_FAMILIES if f.outcome_label]


def build_scoring_asset(family: ModelFamily) -> dg.AssetsDefinition:
    @dg.asset(
        key=score_key(family),
        deps=[FEATURES_KEY, CHAMPION_KEY],
        partitions_def=daily_data_partitions,
        backfill_policy=data_backfill_policy,
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


scoring_assets = [build_scoring_asset(f) for f in MODEL_FAMILIES]


@dg.asset(
    key=OUTCOMES_KEY,
    deps=[*(score_key(f) for f in JUDGED_FAMILIES), LABELS_KEY],
    partitions_def=daily_data_partitions,
    backfill_policy=data_backfill_policy,
    pool="duckdb_writer",
    group_name="serving",
    kinds={"duckdb", "sql"},
    owners=["team:ml-platform"],
    metadata={"dagster/table_name": "serving.prediction_outcomes"},
)
def prediction_outcomes(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Forecasts of the champion and of the shadow candidate, joined with the outcome once its horizon has passed.

    For every model whose forecasts are judged against a label (the volatility model: a spike in
    the next 6 hours). Reports live precision and recall by version and role over the trailing 7
    days, so a challenger's live record can be read before and after it is promoted. Hours still
    inside their horizon are left out until their labels exist.
    """
    window = context.partition_time_window
    bounds = [utc_naive(window.start), utc_naive(window.end)]
    with warehouse.connect() as conn:
        with transaction(conn):
            conn.execute(
                "DELETE FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?", bounds
            )
            for family in JUDGED_FAMILIES:
                # The label column is a code constant of the family; values are bound.
                conn.execute(
                    f"""
                    INSERT INTO serving.prediction_outcomes BY NAME
                    SELECT s.model_name, s.coin_id, s.partition_hour, s.version_id, s.role, s.score, s.flagged,
                           l.{family.outcome_label} AS actual,
                           s.scored_at <= s.partition_hour + INTERVAL 1 HOUR + to_seconds(?) AS live
                    FROM serving.model_scores s JOIN features.coin_labels l USING (coin_id, partition_hour)
                    WHERE s.model_name = ? AND l.{family.outcome_label} IS NOT NULL
                      AND s.partition_hour >= ? AND s.partition_hour < ?
                    """,
                    [LIVE_WITHIN.total_seconds(), family.name, *bounds],
                )
        written = conn.execute(
            "SELECT count(*) FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?", bounds
        ).fetchone()[0]
        by_version = conn.execute(
            """
            SELECT model_name, version_id, role, live, count(*) AS rows,
                   count(*) FILTER (WHERE flagged AND actual) AS true_positives,
                   count(*) FILTER (WHERE flagged) AS predicted, count(*) FILTER (WHERE actual) AS actual,
                   count(*) FILTER (WHERE flagged AND actual) / nullif(count(*) FILTER (WHERE flagged), 0) AS precision,
                   count(*) FILTER (WHERE flagged AND actual) / nullif(count(*) FILTER (WHERE actual), 0) AS recall
            FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?
            GROUP BY ALL ORDER BY model_name, version_id, role, live DESC
            """,
            [utc_naive(window.end - LIVE_WINDOW), utc_naive(window.end)],
        ).df()
    metadata = {"dagster/row_count": int(written), "by_version_and_role": markdown_preview(by_version, limit=30)}
    for family in JUDGED_FAMILIES:
        live = by_version[
            (by_version["model_name"] == family.name) & (by_version["role"] == CHAMPION_ROLE) & by_version["live"]
        ]
        tp, predicted, actual = (int(live[c].sum()) for c in ("true_positives", "predicted", "actual"))
        prefix = f"{family.name}/" if len(JUDGED_FAMILIES) > 1 else ""
        # NaN, not 0, when there is nothing to measure: no flag raised, or nothing happened.
        metadata[f"{prefix}live_precision_7d"] = tp / predicted if predicted else float("nan")
        metadata[f"{prefix}live_recall_7d"] = tp / actual if actual else float("nan")
        metadata[f"{prefix}live_rows_7d"] = int(live["rows"].sum())
    return dg.MaterializeResult(metadata=metadata)

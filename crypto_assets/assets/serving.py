"""Serving and monitoring: hourly scores from the champion, the latest candidate scored beside it in
shadow, and both joined with what happened.

Each score row names the version that produced it and its role then: ``champion`` (serving) or
``shadow`` (the latest trained candidate that is not champion, never served). There is exactly one
row per (model, role, coin, hour): re-scoring a day replaces its rows, except rows that were *live*
(scored within ``LIVE_WITHIN`` of their hour's end, by the version serving then): those are the
record of what was served, and stay. ``scored_at`` is when that version first scored the hour.

Outcomes tell three kinds of forecast apart (``serving.prediction_outcomes.evidence``): *live*
(made in time), *out_of_time* (made later, by a version trained only on earlier hours: a fair
replay, as after a backfill or on a fresh install) and *in_sample* (the version trained on that
hour: no evidence, shown apart and never in the headline numbers).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from crypto_assets import registry, serving_snapshot
from crypto_assets.assets.features import FEATURES_KEY, LABELS_KEY
from crypto_assets.assets.promotion import CHAMPION_KEY
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import add_partition_metadata, markdown_preview, partition_days, rounded, table
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.scoring import score_rows as model_scores
from crypto_assets.partitions import daily_data_partitions, data_backfill_policy, observed_window
from crypto_assets.training_data import refuse_stale_features
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

OUTCOMES_KEY = dg.AssetKey("prediction_outcomes")
CHAMPION_ROLE, SHADOW_ROLE = "champion", "shadow"
LIVE, OUT_OF_TIME, IN_SAMPLE = "live", "out_of_time", "in_sample"
OUTCOME_WINDOW = timedelta(days=7)
# A forecast counts as live when it was made within this long after its hour ended (the hourly
# schedule scores an hour a few minutes after it ends).
LIVE_WITHIN = timedelta(hours=2)


def scorers(conn, family: ModelFamily) -> tuple[list[tuple[str, registry.ModelVersion]], list[str]]:
    """(role, version) pairs to score with now, and why any is missing."""
    notes = []
    champion = registry.champion(conn, family.name)
    latest = registry.latest_model(conn, family.name)
    pairs = []
    if champion is None:
        notes.append(f"no {family.name} champion yet: nothing served (materialize daily_training_job first)")
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


# Families whose forecasts are judged against a label: prediction_outcomes joins them.
JUDGED_FAMILIES = [f for f in MODEL_FAMILIES if f.outcome_label]
_LIVE_SQL = "scored_at <= partition_hour + INTERVAL 1 HOUR + to_seconds(?)"


def score_rows(family: ModelFamily, role: str, version: registry.ModelVersion, model, features):
    """One model's scores of feature rows, as serving.model_scores rows (through the scoring path the service uses)."""
    import pandas as pd

    scores, flags = model_scores(model, features)
    return pd.DataFrame(
        {
            "model_name": family.name,
            "role": role,
            "version_id": version.version_id,
            "coin_id": features["coin_id"],
            "partition_hour": features["partition_hour"],
            "score": scores,
            "flagged": flags,
        }
    )


def replace_scores(conn, family: ModelFamily, rows, start: datetime, end: datetime, now: datetime):
    """Make ``rows`` the window's scores of ``family``: one row per role, coin and hour; live rows stay.

    Call inside a transaction. A row that was live is the record of what was served then and is
    never replaced; every other row of the window is (a re-run with the same versions writes the
    same rows, keeping when each version first scored each hour).
    """
    previous = conn.execute(
        f"""
        SELECT role, version_id, coin_id, partition_hour, scored_at, {_LIVE_SQL} AS live
        FROM serving.model_scores WHERE model_name = ? AND partition_hour >= ? AND partition_hour < ?
        """,
        [LIVE_WITHIN.total_seconds(), family.name, start, end],
    ).df()
    conn.execute(
        f"DELETE FROM serving.model_scores WHERE model_name = ? AND partition_hour >= ? AND partition_hour < ? "
        f"AND NOT ({_LIVE_SQL})",
        [family.name, start, end, LIVE_WITHIN.total_seconds()],
    )
    kept = previous.loc[previous["live"], ["role", "coin_id", "partition_hour"]].assign(kept=True)
    rows = rows.merge(kept, how="left", on=["role", "coin_id", "partition_hour"])
    rows = rows[rows["kept"].isna()].drop(columns="kept")
    first = previous.loc[~previous["live"], ["role", "version_id", "coin_id", "partition_hour", "scored_at"]]
    rows = rows.merge(first, how="left", on=["role", "version_id", "coin_id", "partition_hour"])
    rows["scored_at"] = rows["scored_at"].fillna(now)
    insert_frame(conn, "serving.model_scores", rows)


def build_scoring_asset(family: ModelFamily) -> dg.AssetsDefinition:
    key = score_key(family)

    @dg.asset(
        key=key,
        deps=[FEATURES_KEY, CHAMPION_KEY],
        partitions_def=daily_data_partitions,
        backfill_policy=data_backfill_policy,
        pool="duckdb_writer",
        group_name="serving",
        kinds=family.kinds | {"python"},
        owners=["team:ml-platform"],
        output_required=False,
        description=(
            f"Hourly {family.name} scores for every coin from the champion current at run time (a baseline while "
            "no model has passed its gates), and from the latest candidate beside it in shadow (never served); one "
            "row per role, coin and hour, naming its version. Skipped, with the reason, while nothing can serve."
        ),
        metadata={"dagster/table_name": "serving.model_scores"},
    )
    def _scores(context: dg.AssetExecutionContext, warehouse: Warehouse):
        import pandas as pd

        window = context.partition_time_window
        start, end = utc_naive(window.start), utc_naive(window.end)
        now = utc_naive(datetime.now(UTC))
        days = partition_days(context)
        with warehouse.connect() as conn:
            pairs, notes = scorers(conn, family)
            for note in notes:
                context.log.warning(note)
            if not pairs:
                context.log_event(dg.AssetObservation(asset_key=key, metadata={"skipped": "; ".join(notes)}))
                return
            refuse_stale_features(conn, start, end)  # a model reads the columns of its own feature spec only
            features = conn.execute(
                "SELECT * FROM features.coin_features WHERE partition_hour >= ? AND partition_hour < ? "
                "ORDER BY partition_hour, coin_id",
                [start, end],
            ).df()
            featured = set(features["partition_hour"].dt.strftime("%Y-%m-%d")) if len(features) else set()
            missing = [k for k, s, e in days if k not in featured and _has_ended_hours(s, e)]
            if missing:
                raise dg.Failure(
                    description=(
                        f"no coin_features on {len(missing)} day(s) whose hours have ended: {', '.join(missing[:10])}"
                        f"{' …' if len(missing) > 10 else ''}; materialize coin_features for them first"
                    ),
                    metadata={"days_without_features": len(missing)},
                )
            parts = [
                score_rows(family, role, version, registry.load_artifact(conn, version), features)  # sha256-verified
                for role, version in pairs
            ]
            with transaction(conn):
                replace_scores(conn, family, pd.concat(parts, ignore_index=True), start, end, now)
            serving_snapshot.publish(conn, warehouse.database, context.log)  # what the prediction service answers
            stored = conn.execute(
                """
                SELECT strftime(s.partition_hour, '%Y-%m-%d') AS day, s.role, s.version_id, s.coin_id, f.symbol,
                       s.partition_hour, s.score, s.flagged,
                       s.scored_at <= s.partition_hour + INTERVAL 1 HOUR + to_seconds(?) AS live
                FROM serving.model_scores s LEFT JOIN features.coin_features f USING (coin_id, partition_hour)
                WHERE s.model_name = ? AND s.partition_hour >= ? AND s.partition_hour < ?
                """,
                [LIVE_WITHIN.total_seconds(), family.name, start, end],
            ).df()
        served = stored[stored["role"] == CHAMPION_ROLE]
        add_partition_metadata(context, key, {k: _day_facts(stored[stored["day"] == k]) for k, _, _ in days})
        versions = {role: version.version_id for role, version in pairs}
        yield dg.MaterializeResult(
            metadata={
                "champion_version": versions.get(CHAMPION_ROLE, "none"),
                "champion_is_baseline": any(r == CHAMPION_ROLE and v.is_baseline for r, v in pairs),
                "shadow_version": versions.get(SHADOW_ROLE, "none"),
                "not_served": "; ".join(notes) or "none",
                "run/partitions": len(days),
                "run/rows": len(stored),
                "run/flag_rate": float(served["flagged"].mean()) if len(served) else float("nan"),
            },
        )

    return _scores


def _has_ended_hours(start: datetime, end: datetime) -> bool:
    ended = observed_window(dg.TimeWindow(start, end))
    return ended[1] > ended[0]


def _day_facts(day_rows) -> dict:
    """One day's scores as its partition shows them: its rows, who served them, what was flagged."""
    served = day_rows[day_rows["role"] == CHAMPION_ROLE]
    top = served.sort_values("score", ascending=False)
    versions = served.groupby("version_id").agg(hours=("partition_hour", "nunique"), live=("live", "sum"))
    return {
        "dagster/row_count": len(day_rows),
        "champion_versions": ", ".join(
            f"{v} ({int(r.hours)} h{', ' + str(int(r.live)) + ' live rows' if r.live else ''})"
            for v, r in versions.iterrows()
        )
        or "none",
        "shadow_versions": ", ".join(sorted(day_rows.loc[day_rows["role"] == SHADOW_ROLE, "version_id"].unique()))
        or "none",
        "flagged_rows": int(served["flagged"].sum()),
        "flag_rate": float(served["flagged"].mean()) if len(served) else float("nan"),
        "top_scores": markdown_preview(top[["partition_hour", "symbol", "score", "flagged", "version_id"]]),
    }


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
    the next 6 hours). Each day reports precision, recall and PR-AUC by version and role over the
    trailing 7 days, on the forecasts that are evidence: live ones, and out-of-time replays by a
    version that never saw the hour; in-sample rows are counted apart. Hours still inside their
    horizon are left out until their labels exist.
    """
    window = context.partition_time_window
    bounds = [utc_naive(window.start), utc_naive(window.end)]
    days = partition_days(context)
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
                           CASE WHEN s.scored_at <= s.partition_hour + INTERVAL 1 HOUR + to_seconds(?) THEN '{LIVE}'
                                WHEN v.train_end IS NOT NULL AND v.train_end <= s.partition_hour THEN '{OUT_OF_TIME}'
                                ELSE '{IN_SAMPLE}' END AS evidence
                    FROM serving.model_scores s
                    JOIN features.coin_labels l USING (coin_id, partition_hour)
                    LEFT JOIN registry.model_versions v USING (model_name, version_id)
                    WHERE s.model_name = ? AND l.{family.outcome_label} IS NOT NULL
                      AND s.partition_hour >= ? AND s.partition_hour < ?
                    """,
                    [LIVE_WITHIN.total_seconds(), family.name, *bounds],
                )
        outcomes = conn.execute(
            "SELECT model_name, version_id, role, evidence, partition_hour, score, flagged, actual "
            "FROM serving.prediction_outcomes WHERE partition_hour >= ? AND partition_hour < ?",
            [utc_naive(window.start - OUTCOME_WINDOW), bounds[1]],
        ).df()
    add_partition_metadata(context, OUTCOMES_KEY, {key: outcome_facts(outcomes, end) for key, _, end in days})
    return dg.MaterializeResult(metadata={"run/partitions": len(days)})


def outcome_facts(outcomes, day_end: datetime) -> dict:
    """A day's own outcome rows, and the trailing week's record by model, version, role and evidence, up to its end."""
    from crypto_assets.ml.evidence import average_precision

    day_end = utc_naive(day_end)
    week = outcomes[(outcomes["partition_hour"] < day_end) & (outcomes["partition_hour"] >= day_end - OUTCOME_WINDOW)]
    day = week[week["partition_hour"] >= day_end - timedelta(days=1)]
    facts = {"dagster/row_count": len(day)}
    rows = []
    for (model, version, role, evidence), group in week.groupby(["model_name", "version_id", "role", "evidence"]):
        flagged, actual = group["flagged"].astype(bool), group["actual"].astype(bool)
        rows.append(
            {
                "model": model,
                "version": version,
                "role": role,
                "evidence": evidence,
                "rows": len(group),
                "actual_positives": int(actual.sum()),
                "flagged": int(flagged.sum()),
                "precision": (flagged & actual).sum() / flagged.sum() if flagged.sum() else float("nan"),
                "recall": (flagged & actual).sum() / actual.sum() if actual.sum() else float("nan"),
                "pr_auc": average_precision(actual.to_numpy(), group["score"].to_numpy())
                if actual.any()
                else float("nan"),
            }  # fmt: skip
        )
    for family in JUDGED_FAMILIES:
        prefix = f"{family.name}/" if len(JUDGED_FAMILIES) > 1 else ""
        champion = week[(week["model_name"] == family.name) & (week["role"] == CHAMPION_ROLE)]
        evidence = champion[champion["evidence"] != IN_SAMPLE]
        flagged, actual = evidence["flagged"].astype(bool), evidence["actual"].astype(bool)
        # NaN, not 0, when there is nothing to measure: no flag raised, or nothing happened.
        facts.update(
            {
                f"{prefix}champion_precision_7d": (flagged & actual).sum() / flagged.sum()
                if flagged.sum()
                else float("nan"),
                f"{prefix}champion_recall_7d": (flagged & actual).sum() / actual.sum()
                if actual.sum()
                else float("nan"),
                f"{prefix}champion_pr_auc_7d": average_precision(actual.to_numpy(), evidence["score"].to_numpy())
                if actual.any()
                else float("nan"),
                f"{prefix}champion_rows_7d": len(evidence),
                f"{prefix}champion_live_rows_7d": int((champion["evidence"] == LIVE).sum()),
                f"{prefix}champion_out_of_time_rows_7d": int((champion["evidence"] == OUT_OF_TIME).sum()),
                f"{prefix}in_sample_rows_7d": int(
                    ((week["model_name"] == family.name) & (week["evidence"] == IN_SAMPLE)).sum()
                ),
            }
        )
    import pandas as pd

    if rows:
        facts["by_version_role_evidence"] = table(pd.DataFrame(rows).round(4))
    return {k: rounded(v) if not isinstance(v, dg.MetadataValue) else v for k, v in facts.items()}

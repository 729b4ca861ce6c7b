"""Daily candidates: each model family's recipe, evaluated walk-forward and refit on the latest history.

For split day D the candidate asset (1) fits the recipe once per day of the split's evaluation
window, on the ``train_days`` before that day minus the embargo, and scores the day, together with
the family's baselines, (2) refits the recipe on the ``train_days`` up to the end of D and registers
that model as a new version with its lineage, and (3) stores every out-of-time score in
``ml.walk_forward_scores``, the evidence its evaluation's gates decide on.
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from crypto_assets import registry
from crypto_assets.assets.ingestion import GROUND_TRUTH
from crypto_assets.assets.splits import SPLITS_KEY
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.metadata import table
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.walk_forward import CANDIDATE, REFIT, REGISTERED, frame_sha256, refit, rows_between, walk_forward
from crypto_assets.partitions import daily_partitions
from crypto_assets.training_data import load_split_frame
from crypto_assets.warehouse import Warehouse, insert_frame

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd


def candidate_key(family: ModelFamily) -> dg.AssetKey:
    return dg.AssetKey(family.candidate_asset)


def fold_table(family: ModelFamily, frame: "pd.DataFrame", folds, scores: "pd.DataFrame") -> "pd.DataFrame":
    """Per walk-forward fold: what it trained on and the day it predicted, with the candidate's PR-AUC on that day."""
    import pandas as pd

    from crypto_assets.ml.evidence import average_precision

    rows = []
    for fold in folds:
        if fold.name == REFIT:
            continue  # the refit predicts the future: it has no day to be scored on here
        train = family.usable_rows(rows_between(frame, fold.train_start, fold.train_end))
        predicted = scores[(scores["fold"] == fold.name) & (scores["role"] == CANDIDATE)]
        truth = predicted["truth"].to_numpy(dtype=bool)
        rows.append(
            {
                "predicted_day": fold.name,
                "trained_from": f"{fold.train_start:%Y-%m-%d %H:%M}",
                "trained_to": f"{fold.train_end:%Y-%m-%d %H:%M}",
                "train_rows": len(train),
                "predicted_rows": len(predicted),
                "positives": int(truth.sum()),
                "candidate_pr_auc": average_precision(truth, predicted["score"].to_numpy()) if truth.any() else None,
            }
        )
    return pd.DataFrame(rows)


def build_candidate_asset(family: ModelFamily) -> dg.AssetsDefinition:
    config_class = family.config_class

    @dg.asset(
        key=candidate_key(family),
        deps=[SPLITS_KEY] + ([GROUND_TRUTH] if family.needs_ground_truth else []),
        partitions_def=daily_partitions,
        pool="duckdb_writer",
        group_name="training",
        kinds=family.kinds | {"python"},
        owners=["team:ml-platform"],
        description=(
            f"Daily candidate {family.name}: {family.description} Evaluated walk-forward on the split's window "
            "beside its baselines, then refit on the latest history and registered with its lineage (the same "
            "inputs are the same version)."
        ),
    )
    def _candidate(
        context: dg.AssetExecutionContext, config: config_class, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        import pandas as pd

        split_id = context.partition_key
        params = config.model_dump()
        split, folds, frame = load_split_frame(warehouse, family, split_id, config.train_days)
        started = datetime.now(UTC)
        scores = walk_forward(family, frame, folds, params)
        if scores.empty:
            raise dg.Failure(
                description=f"split {split_id}: no fold of the evaluation window has both training and evaluation "
                f"rows for {family.name} (train_days={config.train_days}): materialize coin_features and coin_labels "
                "for the days before the window, or shorten train_days"
            )
        try:
            model, train = refit(family, frame, folds[-1], params)
        except ValueError as exc:
            raise dg.Failure(description=f"split {split_id}: cannot refit {family.name}: {exc}") from None
        seconds = (datetime.now(UTC) - started).total_seconds()
        evaluated = scores[scores["role"] == CANDIDATE]
        evaluation_rows = family.usable_rows(rows_between(frame, split.evaluation_start, split.evaluation_end))
        registered = evaluation_rows[["coin_id", "partition_hour"]].assign(
            fold=REFIT,
            truth=family.truth(evaluation_rows),
            role=REGISTERED,
            score=model.scores(evaluation_rows),
            flagged=model.flags(evaluation_rows),
        )

        def write_scores(version_id: str) -> None:
            """The version's out-of-time evidence, replacing what an earlier run of the same inputs wrote."""
            conn.execute(
                "DELETE FROM ml.walk_forward_scores WHERE model_name = ? AND split_id = ? AND version_id = ?",
                [family.name, split_id, version_id],
            )
            stored = pd.concat([scores, registered], ignore_index=True).assign(
                model_name=family.name, split_id=split_id, version_id=version_id
            )
            insert_frame(conn, "ml.walk_forward_scores", stored)

        with warehouse.connect() as conn:
            version, new = registry.register_version(
                conn,
                model_name=family.name,
                model=model,
                features=model.features,
                params=params,
                lineage=registry.Lineage(
                    split_id=split_id,
                    feature_spec_version=FEATURE_SPEC_VERSION,
                    train_start=folds[-1].train_start,
                    train_end=folds[-1].train_end,
                    train_rows=len(train),
                    train_positives=int(family.truth(train).sum()),
                    training_frame_sha256=frame_sha256(train, model.features),
                    evaluation_start=split.evaluation_start,
                    evaluation_end=split.evaluation_end,
                    evaluation_rows=len(evaluated),
                    evaluation_positives=int(evaluated["truth"].sum()),
                ),
                metrics={"walk_forward_and_refit_seconds": seconds, "threshold": model.threshold, **model.info},
                run_id=context.run.run_id,
                write_evidence=write_scores,
            )
        context.log.info(
            f"{'registered' if new else 'same inputs as'} {family.name} {version.version_id} "
            f"(sha256 {version.artifact_sha256[:12]}): walk-forward over {evaluated['fold'].nunique()} of "
            f"{len(folds) - 1} planned days, then refit, in {seconds:.1f}s"
        )
        explanations = {
            name: table(pd.DataFrame(sorted(values.items(), key=lambda kv: -kv[1])[:15], columns=["feature", name]))
            for name, values in family.explain(model, train).items()
        }
        refit_fold = folds[-1]
        return dg.MaterializeResult(
            metadata={
                "version_id": version.version_id,
                "new_version": new,
                "artifact_sha256": version.artifact_sha256,
                # The registered model is the recipe refit on the latest history, up to the split day's end;
                # its evaluation is walk-forward, each evaluated day predicted by a fit on the days before it.
                "registered_model_trained_on": (
                    f"{refit_fold.train_start:%Y-%m-%d %H:%M} .. {refit_fold.train_end:%Y-%m-%d %H:%M} UTC "
                    f"({len(train)} rows): the refit, for serving after the split day"
                ),
                "recipe_evaluated_on": (
                    f"{split.evaluation_start:%Y-%m-%d} .. {split.evaluation_end:%Y-%m-%d} UTC, out of time: each day "
                    "predicted by the recipe fitted on the days before it minus the embargo (see walk_forward)"
                ),
                "walk_forward": table(fold_table(family, frame, folds, scores)),
                "evaluation_positives": int(evaluated["truth"].sum()),
                "decision_threshold": float(model.threshold),
                "walk_forward_and_refit_seconds": round(seconds, 1),
                "lineage": dg.MetadataValue.json(version.lineage.as_metadata()),
                "params": dg.MetadataValue.json(params),
                **explanations,
            }
        )

    return _candidate


candidate_assets = [build_candidate_asset(f) for f in MODEL_FAMILIES]

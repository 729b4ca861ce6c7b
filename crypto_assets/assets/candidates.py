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
from crypto_assets.metadata import markdown_preview
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
    """Per fold: what it trained on and what it predicted, with the candidate's PR-AUC on that day."""
    import pandas as pd

    from crypto_assets.ml.evidence import average_precision

    rows = []
    for fold in folds:
        train = family.usable_rows(rows_between(frame, fold.train_start, fold.train_end))
        predicted = scores[(scores["fold"] == fold.name) & (scores["role"] == CANDIDATE)]
        rows.append(
            {
                "fold": fold.name,
                "train_from": f"{fold.train_start:%Y-%m-%d %H:%M}",
                "train_to": f"{fold.train_end:%Y-%m-%d %H:%M}",
                "train_rows": len(train),
                "predicted_rows": len(predicted),
                "positives": int(predicted["truth"].sum()),
                "pr_auc": average_precision(predicted["truth"].to_numpy(), predicted["score"].to_numpy())
                if len(predicted)
                else float("nan"),
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
            "beside its baselines, then refit on the latest history and registered as a new version with its lineage."
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
                description=f"split {split_id}: no fold of the evaluation window has both training and evaluation rows for "
                f"{family.name} (train_days={config.train_days}): materialize coin_features and coin_labels for the "
                "days before the window, or shorten train_days"
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
            stored = pd.concat([scores, registered], ignore_index=True).assign(
                model_name=family.name, split_id=split_id, version_id=version_id
            )
            insert_frame(conn, "ml.walk_forward_scores", stored)

        with warehouse.connect() as conn:
            version = registry.register_version(
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
            f"registered {family.name} {version.version_id} (sha256 {version.artifact_sha256[:12]}), "
            f"walk-forward over {evaluated['fold'].nunique()} of {len(folds) - 1} planned days, then refit, in {seconds:.1f}s"
        )
        explanations = {
            name: markdown_preview(
                pd.DataFrame(sorted(values.items(), key=lambda kv: -kv[1])[:15], columns=["feature", name]), limit=15
            )
            for name, values in family.explain(model, train).items()
        }
        return dg.MaterializeResult(
            metadata={
                **explanations,
                "version_id": version.version_id,
                "artifact_sha256": version.artifact_sha256,
                **{f"lineage/{k}": v for k, v in version.lineage.as_metadata().items()},
                "walk_forward": markdown_preview(fold_table(family, frame, folds, scores), limit=40),
                "walk_forward_and_refit_seconds": seconds,
                "decision_threshold": float(model.threshold),
                "params": dg.MetadataValue.json(params),
            }
        )

    return _candidate


candidate_assets = [build_candidate_asset(f) for f in MODEL_FAMILIES]

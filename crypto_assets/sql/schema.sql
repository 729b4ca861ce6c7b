-- Every table of the project, one schema per asset group. Idempotent: run on every new connection.

CREATE SCHEMA IF NOT EXISTS raw;

CREATE TABLE IF NOT EXISTS raw.market_snapshots (
    coin_id        VARCHAR   NOT NULL,
    symbol         VARCHAR   NOT NULL,
    observed_at    TIMESTAMP NOT NULL,
    partition_hour TIMESTAMP NOT NULL,
    price          DOUBLE,
    open           DOUBLE,
    high           DOUBLE,
    low            DOUBLE,
    volume_quote   DOUBLE,
    market_cap     DOUBLE,
    source         VARCHAR   NOT NULL,
    ingested_at    TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS raw.market_quarantine (
    source         VARCHAR   NOT NULL,
    source_ref     VARCHAR,
    partition_hour TIMESTAMP,
    coin_id        VARCHAR,
    observed_at    TIMESTAMP,
    reason         VARCHAR   NOT NULL,
    detail         VARCHAR,
    raw_record     VARCHAR,
    ingested_at    TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS raw.anomaly_ground_truth (
    coin_id        VARCHAR   NOT NULL,
    observed_at    TIMESTAMP NOT NULL,
    partition_hour TIMESTAMP NOT NULL,
    anomaly_id     VARCHAR   NOT NULL,
    anomaly_kind   VARCHAR   NOT NULL,
    source         VARCHAR   NOT NULL
);

CREATE SCHEMA IF NOT EXISTS features;

-- The feature columns follow crypto_assets/feature_spec.py: the warehouse adds and drops them to
-- match the spec whenever it opens the file (crypto_assets/warehouse.py, sync_feature_columns).
CREATE TABLE IF NOT EXISTS features.coin_features (
    coin_id VARCHAR NOT NULL, symbol VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL, feature_spec_version VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS features.coin_labels (
    coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    fwd_vol_6h DOUBLE, vol_threshold DOUBLE, volatility_spike BOOLEAN,
    fwd_return_6h DOUBLE, direction_up BOOLEAN
);

CREATE SCHEMA IF NOT EXISTS ml;

-- One row per daily split: the evaluation window that candidates, baselines and champion are all
-- scored on (walk-forward), and what it holds.
CREATE TABLE IF NOT EXISTS ml.split_summaries (
    split_id VARCHAR NOT NULL, split_day DATE NOT NULL,
    evaluation_start TIMESTAMP NOT NULL, evaluation_end TIMESTAMP NOT NULL, embargo_hours BIGINT NOT NULL,
    params VARCHAR, evaluation_rows BIGINT, labeled_rows BIGINT, spike_rate DOUBLE, anomaly_rows BIGINT,
    coins BIGINT, excluded_coins VARCHAR, created_at TIMESTAMP
);

-- Out-of-time scores of a candidate's walk-forward evaluation: every evaluated coin-hour, for the
-- candidate recipe, each baseline and the champion's recipe, with the truth.
CREATE TABLE IF NOT EXISTS ml.walk_forward_scores (
    model_name VARCHAR NOT NULL, split_id VARCHAR NOT NULL, version_id VARCHAR NOT NULL, role VARCHAR NOT NULL,
    fold VARCHAR NOT NULL, coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    score DOUBLE, flagged BOOLEAN, truth BOOLEAN NOT NULL
);

CREATE TABLE IF NOT EXISTS ml.feature_drift (
    split_id VARCHAR NOT NULL, comparison VARCHAR NOT NULL, feature VARCHAR NOT NULL,
    drift_score DOUBLE, stattest VARCHAR, threshold DOUBLE, drifted BOOLEAN
);

CREATE TABLE IF NOT EXISTS ml.drift_summaries (
    split_id VARCHAR NOT NULL, comparison VARCHAR NOT NULL, drift_share DOUBLE, drifted_features BIGINT,
    features BIGINT, reference_rows BIGINT, current_rows BIGINT, report_path VARCHAR, created_at TIMESTAMP,
    reference_start TIMESTAMP, reference_end TIMESTAMP, current_start TIMESTAMP, current_end TIMESTAMP,
    drift_detected BOOLEAN, rule VARCHAR
);

CREATE SCHEMA IF NOT EXISTS registry;

-- Append-only: a version is never updated or deleted. Its lineage: the split it belongs to, the
-- rows it was trained on (range, count, positives, sha256 of the training frame), the window its
-- recipe was evaluated on out of time, and the feature spec version.
CREATE TABLE IF NOT EXISTS registry.model_versions (
    model_name VARCHAR NOT NULL, version_id VARCHAR NOT NULL, version_number BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL, run_id VARCHAR, split_id VARCHAR NOT NULL,
    params VARCHAR, features VARCHAR, feature_spec_version VARCHAR NOT NULL,
    train_start TIMESTAMP, train_end TIMESTAMP, train_rows BIGINT, holdout_rows BIGINT,
    metrics VARCHAR, artifact BLOB NOT NULL, artifact_sha256 VARCHAR NOT NULL,
    train_positives BIGINT, training_frame_sha256 VARCHAR,
    evaluation_start TIMESTAMP, evaluation_end TIMESTAMP, evaluation_positives BIGINT,
    kind VARCHAR NOT NULL DEFAULT 'model',  -- 'model', or 'baseline' (a baseline serving as champion of last resort)
    PRIMARY KEY (model_name, version_id)
);

-- The one mutable table: which version each alias points to now.
CREATE TABLE IF NOT EXISTS registry.aliases (
    model_name VARCHAR NOT NULL, alias VARCHAR NOT NULL, version_id VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (model_name, alias)
);

-- One row that every registry write updates first, in its transaction: two registry writers that
-- overlap then change the same row, and on DuckLake (no primary keys) the second one to commit fails.
CREATE TABLE IF NOT EXISTS registry.write_guard (touched_at TIMESTAMP NOT NULL);

-- Append-only audit log of every champion decision: promotions, rollbacks, and refusals.
CREATE TABLE IF NOT EXISTS registry.promotion_events (
    event_id VARCHAR NOT NULL PRIMARY KEY, model_name VARCHAR NOT NULL,
    from_version VARCHAR, to_version VARCHAR, outcome VARCHAR NOT NULL, trigger VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, gate_results VARCHAR, run_id VARCHAR, created_at TIMESTAMP NOT NULL,
    candidate_version VARCHAR  -- the version decided about (for a refusal, the refused candidate)
);

-- Metrics of candidate, baselines and champion on one split's evaluation window.
CREATE TABLE IF NOT EXISTS ml.model_evaluations (
    model_name VARCHAR NOT NULL, split_id VARCHAR NOT NULL, role VARCHAR NOT NULL, version_id VARCHAR,
    metric VARCHAR NOT NULL, value DOUBLE, evaluated_at TIMESTAMP NOT NULL
);

-- The evidence each comparison gate decided on: the difference, its interval, the outcome.
CREATE TABLE IF NOT EXISTS ml.gate_evidence (
    model_name VARCHAR NOT NULL, split_id VARCHAR NOT NULL, version_id VARCHAR NOT NULL, gate VARCHAR NOT NULL,
    comparator VARCHAR NOT NULL, comparator_version VARCHAR, metric VARCHAR NOT NULL,
    candidate DOUBLE, other DOUBLE, difference DOUBLE, ci_low DOUBLE, ci_high DOUBLE, confidence DOUBLE, margin DOUBLE,
    positives BIGINT, rows BIGINT, outcome VARCHAR NOT NULL, why VARCHAR, evaluated_at TIMESTAMP NOT NULL
);

CREATE SCHEMA IF NOT EXISTS serving;

-- Scores of every coin-hour, each stamped with the version that produced it and its role then:
-- 'champion' (serving) or 'shadow' (the latest candidate, scored beside it, not serving).
-- scored_at is when the hour was first scored by that version: a forecast made in time is live.
CREATE TABLE IF NOT EXISTS serving.model_scores (
    model_name VARCHAR NOT NULL, coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    version_id VARCHAR NOT NULL, score DOUBLE NOT NULL, flagged BOOLEAN NOT NULL, scored_at TIMESTAMP NOT NULL,
    role VARCHAR NOT NULL DEFAULT 'champion'
);

-- Forecasts (champion and shadow) of every model judged against a label, joined with what happened
-- once the horizon passed: score and flag as served, actual from features.coin_labels.
CREATE TABLE IF NOT EXISTS serving.prediction_outcomes (
    model_name VARCHAR NOT NULL, coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    version_id VARCHAR NOT NULL, role VARCHAR NOT NULL, score DOUBLE NOT NULL, flagged BOOLEAN NOT NULL,
    actual BOOLEAN NOT NULL,
    evidence VARCHAR NOT NULL  -- live (made in time), out_of_time (by a version that never saw the hour), in_sample
);

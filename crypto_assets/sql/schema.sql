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

CREATE TABLE IF NOT EXISTS features.coin_features (
    coin_id VARCHAR NOT NULL, symbol VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    ret_1h DOUBLE, ret_4h DOUBLE, ret_24h DOUBLE,
    rv_6h DOUBLE, rv_24h DOUBLE, rv_72h DOUBLE, rv_ratio_6h_72h DOUBLE, rv_6h_vs_p90_168h DOUBLE, ret_zscore_24h DOUBLE,
    rsi_14 DOUBLE, macd_line DOUBLE, macd_signal DOUBLE, macd_hist DOUBLE,
    bb_pct_b DOUBLE, bb_bandwidth DOUBLE, price_sma_24_ratio DOUBLE, ema_12_26_ratio DOUBLE,
    momentum_12h DOUBLE, roc_12h DOUBLE, volume_zscore_24h DOUBLE, volume_zscore_168h DOUBLE,
    hl_range DOUBLE, ret_1h_vs_market DOUBLE, ret_1h_rank DOUBLE, volume_rank DOUBLE,
    hour_sin DOUBLE, hour_cos DOUBLE, dow_sin DOUBLE, dow_cos DOUBLE,
    missing_hours_24h BIGINT, in_warmup BOOLEAN, feature_spec_version VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS features.coin_labels (
    coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    fwd_vol_6h DOUBLE, vol_threshold DOUBLE, volatility_spike BOOLEAN,
    fwd_return_6h DOUBLE, direction_up BOOLEAN
);

CREATE SCHEMA IF NOT EXISTS ml;

-- Which coin-hours make up each daily split, and in which part.
CREATE TABLE IF NOT EXISTS ml.training_splits (
    split_id VARCHAR NOT NULL, part VARCHAR NOT NULL, coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS ml.split_summaries (
    split_id VARCHAR NOT NULL, split_day DATE NOT NULL,
    train_start TIMESTAMP, train_end TIMESTAMP, holdout_start TIMESTAMP, holdout_end TIMESTAMP,
    params VARCHAR, train_rows BIGINT, holdout_rows BIGINT, excluded_coins VARCHAR,
    train_spike_rate DOUBLE, holdout_spike_rate DOUBLE, created_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ml.feature_drift (
    split_id VARCHAR NOT NULL, comparison VARCHAR NOT NULL, feature VARCHAR NOT NULL,
    drift_score DOUBLE, stattest VARCHAR, threshold DOUBLE, drifted BOOLEAN
);

CREATE TABLE IF NOT EXISTS ml.drift_summaries (
    split_id VARCHAR NOT NULL, comparison VARCHAR NOT NULL, drift_share DOUBLE, drifted_features BIGINT,
    features BIGINT, reference_rows BIGINT, current_rows BIGINT, report_path VARCHAR, created_at TIMESTAMP
);

CREATE SCHEMA IF NOT EXISTS registry;

-- Append-only: a version is never updated or deleted.
CREATE TABLE IF NOT EXISTS registry.model_versions (
    model_name VARCHAR NOT NULL, version_id VARCHAR NOT NULL, version_number BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL, run_id VARCHAR, split_id VARCHAR NOT NULL,
    params VARCHAR, features VARCHAR, feature_spec_version VARCHAR NOT NULL,
    train_start TIMESTAMP, train_end TIMESTAMP, train_rows BIGINT, holdout_rows BIGINT,
    metrics VARCHAR, artifact BLOB NOT NULL, artifact_sha256 VARCHAR NOT NULL,
    PRIMARY KEY (model_name, version_id)
);

-- The one mutable table: which version each alias points to now.
CREATE TABLE IF NOT EXISTS registry.aliases (
    model_name VARCHAR NOT NULL, alias VARCHAR NOT NULL, version_id VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (model_name, alias)
);

-- Append-only audit log of every champion decision: promotions, rollbacks, and refusals.
CREATE TABLE IF NOT EXISTS registry.promotion_events (
    event_id VARCHAR NOT NULL PRIMARY KEY, model_name VARCHAR NOT NULL,
    from_version VARCHAR, to_version VARCHAR, outcome VARCHAR NOT NULL, trigger VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, gate_results VARCHAR, run_id VARCHAR, created_at TIMESTAMP NOT NULL
);

-- Evaluation of candidate, champion and baseline on one split's holdout.
CREATE TABLE IF NOT EXISTS ml.model_evaluations (
    model_name VARCHAR NOT NULL, split_id VARCHAR NOT NULL, role VARCHAR NOT NULL, version_id VARCHAR,
    metric VARCHAR NOT NULL, value DOUBLE, evaluated_at TIMESTAMP NOT NULL
);

CREATE SCHEMA IF NOT EXISTS serving;

-- Scores of every coin-hour, each with the champion version that produced it.
CREATE TABLE IF NOT EXISTS serving.model_scores (
    model_name VARCHAR NOT NULL, coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL,
    version_id VARCHAR NOT NULL, score DOUBLE NOT NULL, flagged BOOLEAN NOT NULL, scored_at TIMESTAMP NOT NULL
);

-- Volatility forecasts joined with what happened once the horizon passed.
CREATE TABLE IF NOT EXISTS serving.prediction_outcomes (
    coin_id VARCHAR NOT NULL, partition_hour TIMESTAMP NOT NULL, version_id VARCHAR NOT NULL,
    probability DOUBLE NOT NULL, predicted_spike BOOLEAN NOT NULL, actual_spike BOOLEAN NOT NULL
);

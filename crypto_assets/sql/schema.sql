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

-- Forward-looking labels for each coin and hour in [$start, $end), over a 6-hour horizon.
--
-- fwd_vol_6h is the realized volatility of the next 6 hourly returns; volatility_spike compares
-- it with the 90th percentile of the trailing 6h realized volatility over the past 168 hours,
-- a threshold built only from the past. A label whose horizon is not fully observed (the
-- future hours are not ingested yet, or missing) stays NULL.
WITH snap AS (
    SELECT coin_id, partition_hour AS ts, price
    FROM raw.market_snapshots
    WHERE partition_hour >= $read_start AND partition_hour < $read_end
),
r AS (
    SELECT *,
        ln(price / max(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING)) AS ret_1h
    FROM snap
),
v AS (
    SELECT *,
        sqrt(avg(ret_1h * ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 5 HOUR PRECEDING AND CURRENT ROW)) AS rv_6h,
        count(ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR FOLLOWING AND INTERVAL 6 HOUR FOLLOWING) AS fwd_returns,
        sqrt(avg(ret_1h * ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR FOLLOWING AND INTERVAL 6 HOUR FOLLOWING)) AS fwd_vol,
        max(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 6 HOUR FOLLOWING AND INTERVAL 6 HOUR FOLLOWING) AS price_6h_ahead
    FROM r
),
t AS (
    SELECT *,
        quantile_cont(rv_6h, 0.9) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 167 HOUR PRECEDING AND CURRENT ROW) AS threshold,
        count(rv_6h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 167 HOUR PRECEDING AND CURRENT ROW) AS threshold_support
    FROM v
)
SELECT
    coin_id,
    ts AS partition_hour,
    CASE WHEN fwd_returns = 6 THEN fwd_vol END AS fwd_vol_6h,
    CASE WHEN threshold_support >= 48 THEN threshold END AS vol_threshold,
    CASE WHEN fwd_returns = 6 AND threshold_support >= 48 THEN fwd_vol > threshold END AS volatility_spike,
    ln(price_6h_ahead / price) AS fwd_return_6h,
    price_6h_ahead > price AS direction_up
FROM t
WHERE ts >= $start AND ts < $end
ORDER BY ts, coin_id

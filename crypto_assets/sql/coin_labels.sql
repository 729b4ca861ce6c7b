-- Forward-looking labels for each coin and hour in [$start, $end), over a 6-hour horizon.
--
-- fwd_vol_6h is the realized volatility of the next 6 hourly returns; volatility_spike compares
-- it with the 90th percentile of the trailing 6h realized volatility over the past 168 hours,
-- a threshold built only from the past (the same as the feature rv_6h_vs_p90_168h divides by).
-- A label whose horizon is not fully observed (the future hours are not ingested yet, or missing)
-- stays NULL. As in coin_features.sql, each coin's hours are laid on a complete hourly grid so
-- that row windows are time windows, and a non-positive price counts as missing.
WITH snap AS (
    SELECT coin_id, epoch(partition_hour)::BIGINT // 3600 AS h, CASE WHEN price > 0 THEN price END AS price
    FROM raw.market_snapshots
    WHERE partition_hour >= $read_start AND partition_hour < $read_end
),
hours AS (
    SELECT coin_id, unnest(range(min(h), max(h) + 1)) AS h FROM snap GROUP BY coin_id
),
r AS (
    SELECT g.coin_id, g.h, s.h IS NOT NULL AS present, s.price,
           ln(s.price / lag(s.price, 1) OVER (PARTITION BY g.coin_id ORDER BY g.h)) AS ret_1h
    FROM hours g LEFT JOIN snap s USING (coin_id, h)
),
v AS (
    SELECT coin_id, h, present, price,
        CASE WHEN present THEN sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 5 PRECEDING AND CURRENT ROW)) END AS rv_6h,
        count(ret_1h) OVER (w ROWS BETWEEN 1 FOLLOWING AND 6 FOLLOWING) AS fwd_returns,
        sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 1 FOLLOWING AND 6 FOLLOWING)) AS fwd_vol,
        lead(price, 6) OVER w AS price_6h_ahead
    FROM r
    WINDOW w AS (PARTITION BY coin_id ORDER BY h)
),
t AS (
    SELECT *,
        quantile_cont(rv_6h, 0.9) OVER (w ROWS BETWEEN 167 PRECEDING AND CURRENT ROW) AS threshold,
        count(rv_6h) OVER (w ROWS BETWEEN 167 PRECEDING AND CURRENT ROW) AS threshold_support
    FROM v
    WINDOW w AS (PARTITION BY coin_id ORDER BY h)
)
SELECT
    coin_id,
    make_timestamp(h * 3600 * 1000000) AS partition_hour,
    CASE WHEN fwd_returns = 6 THEN fwd_vol END AS fwd_vol_6h,
    CASE WHEN threshold_support >= 48 THEN threshold END AS vol_threshold,
    CASE WHEN fwd_returns = 6 AND threshold_support >= 48 THEN fwd_vol > threshold END AS volatility_spike,
    ln(price_6h_ahead / price) AS fwd_return_6h,
    price_6h_ahead > price AS direction_up
FROM t
WHERE present AND h >= epoch($start::TIMESTAMP)::BIGINT // 3600 AND h < epoch($end::TIMESTAMP)::BIGINT // 3600
ORDER BY h, coin_id

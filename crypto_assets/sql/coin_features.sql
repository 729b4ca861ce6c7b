-- One feature row per coin and hour in [$start, $end).
--
-- Every window is bounded in time (RANGE over hours, never ROWS), and reads at most
-- LOOKBACK_HOURS (200) hours back, so the feature at hour t is the same whether it is computed in
-- t's own partition run or in a run over a year. EMAs are truncated at 4x their span (the weight
-- left out is below 0.04%) and normalised, for the same reason. Sums, means and deviations are
-- list_* over list(...) OVER the window, which adds the values in time order: DuckDB's windowed
-- sum/avg/stddev combine partial aggregates in an order that depends on where the run starts, so
-- their last bits would differ between runs. Gaps in the data simply leave fewer rows inside a
-- window; they are counted in missing_hours_24h.
WITH snap AS (
    SELECT coin_id, symbol, partition_hour AS ts, price, high, low, volume_quote,
           epoch(partition_hour) / 3600 AS h
    FROM raw.market_snapshots
    WHERE partition_hour >= $read_start AND partition_hour < $end
),
base AS (
    SELECT *,
        max(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING) AS price_1h_ago,
        max(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 4 HOUR PRECEDING AND INTERVAL 4 HOUR PRECEDING) AS price_4h_ago,
        max(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 12 HOUR PRECEDING AND INTERVAL 12 HOUR PRECEDING) AS price_12h_ago,
        max(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 24 HOUR PRECEDING) AS price_24h_ago,
        list_avg(list(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 19 HOUR PRECEDING AND CURRENT ROW)) AS sma_20,
        list_stddev_pop(list(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 19 HOUR PRECEDING AND CURRENT ROW)) AS sd_20,
        list_avg(list(price) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 23 HOUR PRECEDING AND CURRENT ROW)) AS sma_24,
        list(struct_pack(v := price, h := h)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 47 HOUR PRECEDING AND CURRENT ROW) AS prices_48h,
        list(struct_pack(v := price, h := h)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 103 HOUR PRECEDING AND CURRENT ROW) AS prices_104h,
        list_avg(list(ln(volume_quote)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING)) AS log_volume_mean_24h,
        list_stddev_samp(list(ln(volume_quote)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING)) AS log_volume_sd_24h,
        list_avg(list(ln(volume_quote)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 168 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING)) AS log_volume_mean_168h,
        list_stddev_samp(list(ln(volume_quote)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 168 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING)) AS log_volume_sd_168h,
        count(*) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING) AS rows_prior_24h,
        min(ts) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 200 HOUR PRECEDING AND CURRENT ROW) AS earliest_in_lookback
    FROM snap
),
returns AS (
    SELECT *,
        ln(price / price_1h_ago) AS ret_1h,
        greatest(price - price_1h_ago, 0) AS gain_1h,
        greatest(price_1h_ago - price, 0) AS loss_1h,
        list_sum(list_transform(prices_48h, lambda x: x.v * pow(11.0 / 13.0, h - x.h)))
            / list_sum(list_transform(prices_48h, lambda x: pow(11.0 / 13.0, h - x.h))) AS ema_12,
        list_sum(list_transform(prices_104h, lambda x: x.v * pow(25.0 / 27.0, h - x.h)))
            / list_sum(list_transform(prices_104h, lambda x: pow(25.0 / 27.0, h - x.h))) AS ema_26
    FROM base
),
vol AS (
    SELECT *,
        sqrt(list_avg(list(ret_1h * ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 5 HOUR PRECEDING AND CURRENT ROW))) AS rv_6h,
        sqrt(list_avg(list(ret_1h * ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 23 HOUR PRECEDING AND CURRENT ROW))) AS rv_24h,
        sqrt(list_avg(list(ret_1h * ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 71 HOUR PRECEDING AND CURRENT ROW))) AS rv_72h,
        sqrt(list_avg(list(ret_1h * ret_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND INTERVAL 1 HOUR PRECEDING))) AS rv_prior_24h,
        list_sum(list(gain_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 13 HOUR PRECEDING AND CURRENT ROW)) AS gains_14h,
        list_sum(list(loss_1h) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 13 HOUR PRECEDING AND CURRENT ROW)) AS losses_14h,
        (ema_12 - ema_26) / price AS macd_line
    FROM returns
),
signal AS (
    SELECT *,
        list(struct_pack(v := macd_line, h := h)) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 35 HOUR PRECEDING AND CURRENT ROW) AS macd_36h,
        quantile_cont(rv_6h, 0.9) OVER (PARTITION BY coin_id ORDER BY ts RANGE BETWEEN INTERVAL 167 HOUR PRECEDING AND CURRENT ROW) AS rv_6h_p90_168h
    FROM vol
)
SELECT
    coin_id,
    symbol,
    ts AS partition_hour,
    ret_1h,
    ln(price / price_4h_ago) AS ret_4h,
    ln(price / price_24h_ago) AS ret_24h,
    rv_6h,
    rv_24h,
    rv_72h,
    rv_6h / nullif(rv_72h, 0) AS rv_ratio_6h_72h,
    rv_6h / nullif(rv_6h_p90_168h, 0) AS rv_6h_vs_p90_168h,
    ret_1h / nullif(rv_prior_24h, 0) AS ret_zscore_24h,
    CASE WHEN gains_14h + losses_14h > 0 THEN 100 * gains_14h / (gains_14h + losses_14h) ELSE 50 END AS rsi_14,
    macd_line,
    list_sum(list_transform(macd_36h, lambda x: x.v * pow(0.8, h - x.h)))
        / list_sum(list_transform(macd_36h, lambda x: pow(0.8, h - x.h))) AS macd_signal,
    macd_line - list_sum(list_transform(macd_36h, lambda x: x.v * pow(0.8, h - x.h)))
        / list_sum(list_transform(macd_36h, lambda x: pow(0.8, h - x.h))) AS macd_hist,
    (price - (sma_20 - 2 * sd_20)) / nullif(4 * sd_20, 0) AS bb_pct_b,
    4 * sd_20 / sma_20 AS bb_bandwidth,
    price / sma_24 AS price_sma_24_ratio,
    ema_12 / ema_26 AS ema_12_26_ratio,
    (price - price_12h_ago) / sma_24 AS momentum_12h,
    100 * (price / price_12h_ago - 1) AS roc_12h,
    (ln(volume_quote) - log_volume_mean_24h) / nullif(log_volume_sd_24h, 0) AS volume_zscore_24h,
    (ln(volume_quote) - log_volume_mean_168h) / nullif(log_volume_sd_168h, 0) AS volume_zscore_168h,
    (high - low) / price AS hl_range,
    ret_1h - median(ret_1h) OVER (PARTITION BY ts) AS ret_1h_vs_market,
    CASE WHEN ret_1h IS NOT NULL
         THEN percent_rank() OVER (PARTITION BY ts, ret_1h IS NULL ORDER BY ret_1h) END AS ret_1h_rank,
    CASE WHEN volume_quote IS NOT NULL
         THEN percent_rank() OVER (PARTITION BY ts, volume_quote IS NULL ORDER BY volume_quote) END AS volume_rank,
    sin(2 * pi() * hour(ts) / 24) AS hour_sin,
    cos(2 * pi() * hour(ts) / 24) AS hour_cos,
    sin(2 * pi() * (isodow(ts) - 1) / 7) AS dow_sin,
    cos(2 * pi() * (isodow(ts) - 1) / 7) AS dow_cos,
    24 - rows_prior_24h AS missing_hours_24h,
    earliest_in_lookback > ts - INTERVAL 168 HOUR AS in_warmup
FROM signal
WHERE ts >= $start
ORDER BY ts, coin_id

-- One feature row per coin and hour in [$start, $end). Names and meanings: crypto_assets/feature_spec.py.
--
-- Every window is a native DuckDB aggregate reading at most LOOKBACK_HOURS (200) hours back, so
-- hour t gets the same features whether it is computed alone or in a year-long run (to rounding:
-- windowed sums may add in another order, ~1e-15 relative).
--
-- Time windows as row windows: each coin's rows are laid on a complete hourly grid from its first
-- to its last hour read (an hour with no snapshot is a row of NULLs, which aggregates skip), so
-- "ROWS BETWEEN 23 PRECEDING AND CURRENT ROW" is exactly the last 24 hours and lag(x, 4) is the
-- value 4 hours ago. Gaps are counted in missing_hours_24h. Each window stage carries only the
-- columns it needs (DuckDB's window operator sorts its whole input row), and the stages are
-- joined back at the end.
--
-- Values that would be infinite are NULL instead: a non-positive price, open, high or low is
-- treated as missing, volume enters as ln(1 + volume) (an hour that traded nothing is 0, not
-- -inf), and every ratio divides by nullif(denominator, 0). Models impute NULLs; nothing infinite
-- reaches them (the asset's no_infinite_features check holds that).
--
-- EMAs are truncated at 4x their span (the weight left out is below 0.04%) and normalised:
-- ema(t) = sum w^(t-j) x_j / sum w^(t-j) over the rows j of the last L = 4*span hours. The weight
-- depends on the current row, so it is not a plain windowed sum; but with anchors on a fixed grid
-- of L hours it factors: for row t in block k = t // L, anchor a = (k - 1) * L, and
-- w^(t-j) = w^(t-a) * w^-(j-a) with j - a in [1, 2L). The factor w^(t-a) cancels in the ratio,
-- and w^-(j-a) depends on j and on whether t is in j's block or the next, which the block parity
-- tells. So each EMA is two windowed sums per parity of terms below w^-2L (about e^16 for every
-- span): exact, bounded, and linear in the rows. ``_p0`` terms serve rows in even blocks.
WITH snap AS (
    SELECT coin_id, symbol, epoch(partition_hour)::BIGINT // 3600 AS h,
           CASE WHEN price > 0 THEN price END AS price,
           CASE WHEN high > 0 AND low > 0 THEN (high - low) / nullif(price, 0) END AS hl_range_raw,
           CASE WHEN high > 0 AND low > 0 THEN ln(high / low) END AS log_hl,
           CASE WHEN open > 0 AND price > 0 THEN ln(price / open) END AS log_co,
           volume_quote,
           CASE WHEN volume_quote >= 0 THEN ln(1 + volume_quote) END AS log_volume,
           coalesce(market_cap, volume_quote) AS size
    FROM raw.market_snapshots
    WHERE partition_hour >= $read_start AND partition_hour < $end
),
hours AS (
    SELECT coin_id, unnest(range(min(h), max(h) + 1)) AS h
    FROM snap GROUP BY coin_id
),
grid AS (
    SELECT g.coin_id, g.h, s.h IS NOT NULL AS present, s.price, s.log_volume,
        CASE WHEN s.price > 0 THEN s.hl_range_raw END AS hl_range,
        s.log_hl * s.log_hl / (4 * ln(2)) AS parkinson_term,
        0.5 * s.log_hl * s.log_hl - (2 * ln(2) - 1) * s.log_co * s.log_co AS garman_klass_term,
        CASE WHEN s.price IS NOT NULL THEN pow(11.0 / 13.0, -(g.h - (g.h // 48 - 1 + (g.h // 48) % 2) * 48)) END AS w12_p0,
        CASE WHEN s.price IS NOT NULL THEN pow(11.0 / 13.0, -(g.h - (g.h // 48 - (g.h // 48) % 2) * 48)) END AS w12_p1,
        CASE WHEN s.price IS NOT NULL THEN pow(25.0 / 27.0, -(g.h - (g.h // 104 - 1 + (g.h // 104) % 2) * 104)) END AS w26_p0,
        CASE WHEN s.price IS NOT NULL THEN pow(25.0 / 27.0, -(g.h - (g.h // 104 - (g.h // 104) % 2) * 104)) END AS w26_p1
    FROM hours g LEFT JOIN snap s USING (coin_id, h)
),
-- Stage 1: what needs only the snapshot values.
prices AS (
    SELECT coin_id, h, present, price, hl_range, log_volume,
        price / lag(price, 1) OVER w AS growth_1h,
        price - lag(price, 1) OVER w AS change_1h,
        price / lag(price, 4) OVER w AS growth_4h,
        price / lag(price, 12) OVER w AS growth_12h,
        price - lag(price, 12) OVER w AS change_12h,
        price / lag(price, 24) OVER w AS growth_24h,
        log_volume = lag(log_volume, 1) OVER w AS volume_repeated,
        log_volume - lag(log_volume, 24) OVER w AS volume_vs_24h_ago,
        avg(price) OVER (w ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS sma_20,
        stddev_pop(price) OVER (w ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS sd_20,
        avg(price) OVER (w ROWS BETWEEN 23 PRECEDING AND CURRENT ROW) AS sma_24,
        log_volume - avg(log_volume) OVER (w ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING) AS log_volume_dev_24h,
        stddev_samp(log_volume) OVER (w ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING) AS log_volume_sd_24h,
        log_volume - avg(log_volume) OVER (w ROWS BETWEEN 168 PRECEDING AND 1 PRECEDING) AS log_volume_dev_168h,
        stddev_samp(log_volume) OVER (w ROWS BETWEEN 168 PRECEDING AND 1 PRECEDING) AS log_volume_sd_168h,
        log_volume - median(log_volume) OVER (w ROWS BETWEEN 168 PRECEDING AND 1 PRECEDING) AS volume_vs_median_168h,
        hl_range / nullif(median(hl_range) OVER (w ROWS BETWEEN 168 PRECEDING AND 1 PRECEDING), 0) AS hl_range_vs_median_168h,
        sqrt(avg(parkinson_term) OVER (w ROWS BETWEEN 5 PRECEDING AND CURRENT ROW)) AS parkinson_vol_6h,
        avg(garman_klass_term) OVER (w ROWS BETWEEN 23 PRECEDING AND CURRENT ROW) AS garman_klass_var_24h,
        coalesce(count_if(present) OVER (w ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING), 0) AS rows_prior_24h,
        coalesce(count_if(present) OVER (w ROWS BETWEEN 200 PRECEDING AND 168 PRECEDING), 0) AS rows_168_to_200h_ago,
        CASE WHEN (h // 48) % 2 = 0
             THEN sum(price * w12_p0) OVER (w ROWS BETWEEN 47 PRECEDING AND CURRENT ROW) / sum(w12_p0) OVER (w ROWS BETWEEN 47 PRECEDING AND CURRENT ROW)
             ELSE sum(price * w12_p1) OVER (w ROWS BETWEEN 47 PRECEDING AND CURRENT ROW) / sum(w12_p1) OVER (w ROWS BETWEEN 47 PRECEDING AND CURRENT ROW)
        END AS ema_12,
        CASE WHEN (h // 104) % 2 = 0
             THEN sum(price * w26_p0) OVER (w ROWS BETWEEN 103 PRECEDING AND CURRENT ROW) / sum(w26_p0) OVER (w ROWS BETWEEN 103 PRECEDING AND CURRENT ROW)
             ELSE sum(price * w26_p1) OVER (w ROWS BETWEEN 103 PRECEDING AND CURRENT ROW) / sum(w26_p1) OVER (w ROWS BETWEEN 103 PRECEDING AND CURRENT ROW)
        END AS ema_26
    FROM grid
    WINDOW w AS (PARTITION BY coin_id ORDER BY h)
),
moves AS (
    SELECT *,
        ln(growth_1h) AS ret_1h,
        (ema_12 - ema_26) / price AS macd_line,
        CASE WHEN (ema_12 - ema_26) / price IS NOT NULL
             THEN pow(0.8, -(h - (h // 36 - 1 + (h // 36) % 2) * 36)) END AS w9_p0,
        CASE WHEN (ema_12 - ema_26) / price IS NOT NULL
             THEN pow(0.8, -(h - (h // 36 - (h // 36) % 2) * 36)) END AS w9_p1
    FROM prices
),
-- Stage 2: what needs the hourly return or the EMAs.
vol AS (
    SELECT coin_id, h, present, ret_1h,
        -- Only hours with a snapshot have an rv_6h: the weekly percentile below is over those.
        CASE WHEN present THEN sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 5 PRECEDING AND CURRENT ROW)) END AS rv_6h,
        sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 23 PRECEDING AND CURRENT ROW)) AS rv_24h,
        sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 71 PRECEDING AND CURRENT ROW)) AS rv_72h,
        sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 167 PRECEDING AND CURRENT ROW)) AS rv_168h,
        sqrt(avg(ret_1h * ret_1h) OVER (w ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING)) AS rv_prior_24h,
        median(abs(ret_1h)) OVER (w ROWS BETWEEN 168 PRECEDING AND 1 PRECEDING) AS median_abs_ret_prior_168h,
        lag(ret_1h, 1) OVER w AS ret_1h_before,
        coalesce(count_if(ret_1h = 0) OVER (w ROWS BETWEEN 5 PRECEDING AND CURRENT ROW), 0) AS unchanged_price_6h,
        coalesce(count_if(volume_repeated) OVER (w ROWS BETWEEN 5 PRECEDING AND CURRENT ROW), 0) AS unchanged_volume_6h,
        sum(greatest(change_1h, 0)) OVER (w ROWS BETWEEN 13 PRECEDING AND CURRENT ROW) AS gains_14h,
        sum(greatest(-change_1h, 0)) OVER (w ROWS BETWEEN 13 PRECEDING AND CURRENT ROW) AS losses_14h,
        CASE WHEN (h // 36) % 2 = 0
             THEN sum(macd_line * w9_p0) OVER (w ROWS BETWEEN 35 PRECEDING AND CURRENT ROW) / sum(w9_p0) OVER (w ROWS BETWEEN 35 PRECEDING AND CURRENT ROW)
             ELSE sum(macd_line * w9_p1) OVER (w ROWS BETWEEN 35 PRECEDING AND CURRENT ROW) / sum(w9_p1) OVER (w ROWS BETWEEN 35 PRECEDING AND CURRENT ROW)
        END AS macd_signal
    FROM moves
    WINDOW w AS (PARTITION BY coin_id ORDER BY h)
),
-- Stage 3: the spike threshold (90th percentile of rv_6h over the last week), volatility of
-- volatility, and the recent largest return z-score.
regime AS (
    SELECT coin_id, h, rv_6h,
        ret_1h / nullif(rv_prior_24h, 0) AS ret_zscore_24h,
        quantile_cont(rv_6h, 0.9) OVER (w ROWS BETWEEN 167 PRECEDING AND CURRENT ROW) AS p90,
        stddev_samp(rv_6h) OVER (w ROWS BETWEEN 71 PRECEDING AND CURRENT ROW)
            / nullif(avg(rv_6h) OVER (w ROWS BETWEEN 71 PRECEDING AND CURRENT ROW), 0) AS vol_of_vol_72h,
        max(abs(ret_1h / nullif(rv_prior_24h, 0))) OVER (w ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) AS max_abs_ret_zscore_6h
    FROM vol
    WINDOW w AS (PARTITION BY coin_id ORDER BY h)
),
-- Stage 4: hours since rv_6h last crossed its threshold, looking back a day (the threshold of
-- an hour 24 hours ago reads 173 hours before it, which fills the 200-hour lookback).
spikes AS (
    SELECT coin_id, h,
        coalesce(h - max(CASE WHEN rv_6h > p90 THEN h END) OVER (PARTITION BY coin_id ORDER BY h ROWS BETWEEN 24 PRECEDING AND CURRENT ROW), 25)
            AS hours_since_spike
    FROM regime
),
per_coin AS (
    SELECT m.coin_id, m.h, s.symbol, s.size, s.volume_quote, m.price, m.ret_1h, m.growth_4h, m.growth_12h, m.change_12h, m.growth_24h,
           m.sma_20, m.sd_20, m.sma_24, m.ema_12, m.ema_26, m.macd_line, m.hl_range, m.log_volume_dev_24h, m.log_volume_sd_24h,
           m.log_volume_dev_168h, m.log_volume_sd_168h, m.volume_vs_median_168h, m.hl_range_vs_median_168h, m.volume_vs_24h_ago,
           m.parkinson_vol_6h, m.garman_klass_var_24h, m.rows_prior_24h, m.rows_168_to_200h_ago,
           v.rv_6h, v.rv_24h, v.rv_72h, v.rv_168h, v.rv_prior_24h, v.median_abs_ret_prior_168h, v.ret_1h_before,
           v.unchanged_price_6h, v.unchanged_volume_6h, v.gains_14h, v.losses_14h, v.macd_signal,
           r.ret_zscore_24h, r.p90, r.vol_of_vol_72h, r.max_abs_ret_zscore_6h, k.hours_since_spike,
           v.rv_6h / nullif(r.p90, 0) AS rv_6h_vs_p90_168h,
           m.log_volume_dev_24h / nullif(m.log_volume_sd_24h, 0) AS volume_zscore_24h
    FROM moves m
    JOIN snap s USING (coin_id, h)
    JOIN vol v USING (coin_id, h)
    JOIN regime r USING (coin_id, h)
    JOIN spikes k USING (coin_id, h)
    WHERE m.h >= epoch($start::TIMESTAMP)::BIGINT // 3600
),
-- Cross-sectional statistics per hour, as aggregates joined back. Means are taken over each hour's
-- values in coin order: a parallel avg() adds them in whatever order its threads finish, and the last
-- bit would differ from run to run (so would every model trained on them).
market AS (
    SELECT h,
        median(ret_1h) AS median_ret_1h,
        list_avg(list(rv_6h_vs_p90_168h ORDER BY coin_id)) AS market_rv_6h_vs_p90_168h,
        list_avg(list(volume_zscore_24h ORDER BY coin_id)) AS market_volume_zscore_24h,
        list_avg(list(volume_vs_24h_ago ORDER BY coin_id)) AS market_volume_vs_24h_ago,
        arg_max(rv_6h_vs_p90_168h, size) AS leader_rv_6h_vs_p90_168h,
        median(rv_24h) AS median_rv_24h
    FROM per_coin GROUP BY h
),
ranks AS (
    SELECT coin_id, h,
        CASE WHEN ret_1h IS NOT NULL THEN percent_rank() OVER (PARTITION BY h, ret_1h IS NULL ORDER BY ret_1h) END AS ret_1h_rank,
        CASE WHEN volume_quote IS NOT NULL THEN percent_rank() OVER (PARTITION BY h, volume_quote IS NULL ORDER BY volume_quote) END AS volume_rank
    FROM per_coin
)
SELECT
    coin_id,
    symbol,
    make_timestamp(h * 3600 * 1000000) AS partition_hour,
    ret_1h,
    ln(growth_4h) AS ret_4h,
    ln(growth_24h) AS ret_24h,
    rv_6h,
    rv_24h,
    rv_72h,
    rv_168h,
    rv_6h / nullif(rv_72h, 0) AS rv_ratio_6h_72h,
    rv_6h_vs_p90_168h,
    abs(ret_1h) / nullif(p90, 0) AS rv_1h_vs_p90_168h,
    rv_24h / nullif(p90, 0) AS rv_24h_vs_p90_168h,
    rv_168h / nullif(p90, 0) AS rv_168h_vs_p90_168h,
    parkinson_vol_6h / nullif(p90, 0) AS parkinson_6h_vs_p90_168h,
    -- Garman-Klass hours can be negative; their mean, rarely: 0 then, not NaN.
    sqrt(CASE WHEN garman_klass_var_24h < 0 THEN 0 ELSE garman_klass_var_24h END) / nullif(p90, 0) AS garman_klass_24h_vs_p90_168h,
    vol_of_vol_72h,
    hours_since_spike,
    market_rv_6h_vs_p90_168h,
    rv_24h / nullif(median_rv_24h, 0) AS rv_24h_vs_market,
    leader_rv_6h_vs_p90_168h,
    ret_zscore_24h,
    ret_1h / nullif(1.4826 * median_abs_ret_prior_168h, 0) AS ret_robust_z_168h,
    max_abs_ret_zscore_6h,
    -(ret_1h * ret_1h_before) / nullif(rv_prior_24h * rv_prior_24h, 0) AS reversal_1h,
    unchanged_price_6h,
    CASE WHEN gains_14h + losses_14h > 0 THEN 100 * gains_14h / (gains_14h + losses_14h) ELSE 50 END AS rsi_14,
    macd_line,
    macd_signal,
    macd_line - macd_signal AS macd_hist,
    (price - (sma_20 - 2 * sd_20)) / nullif(4 * sd_20, 0) AS bb_pct_b,
    4 * sd_20 / sma_20 AS bb_bandwidth,
    price / sma_24 AS price_sma_24_ratio,
    ema_12 / ema_26 AS ema_12_26_ratio,
    change_12h / sma_24 AS momentum_12h,
    100 * (growth_12h - 1) AS roc_12h,
    volume_zscore_24h,
    log_volume_dev_168h / nullif(log_volume_sd_168h, 0) AS volume_zscore_168h,
    volume_vs_median_168h,
    volume_zscore_24h - abs(ret_zscore_24h) AS volume_without_move,
    unchanged_volume_6h,
    market_volume_zscore_24h,
    volume_zscore_24h - market_volume_zscore_24h AS volume_zscore_vs_market,
    volume_vs_24h_ago,
    market_volume_vs_24h_ago,
    hl_range,
    hl_range_vs_median_168h,
    ret_1h - median_ret_1h AS ret_1h_vs_market,
    (ret_1h - median_ret_1h) / nullif(rv_24h, 0) AS ret_1h_vs_market_zscore,
    ret_1h_rank,
    volume_rank,
    sin(2 * pi() * (h % 24) / 24) AS hour_sin,
    cos(2 * pi() * (h % 24) / 24) AS hour_cos,
    sin(2 * pi() * ((h // 24 + 3) % 7) / 7) AS dow_sin,
    cos(2 * pi() * ((h // 24 + 3) % 7) / 7) AS dow_cos,
    24 - rows_prior_24h AS missing_hours_24h,
    rows_168_to_200h_ago = 0 AS in_warmup
FROM per_coin
JOIN market USING (h)
JOIN ranks USING (coin_id, h)
ORDER BY h, coin_id

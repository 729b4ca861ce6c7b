"""The second (holdout) anomaly generator, the generator plug-in, and recall per kind."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from crypto_assets.market.anomalies import resolve_generator, run_generator
from crypto_assets.market.holdout_anomalies import HOLDOUT_KINDS
from crypto_assets.market.sources import SyntheticMarket
from crypto_assets.market.synthetic import synthetic_window
from crypto_assets.market.universe import default_universe
from crypto_assets.ml.anomaly_detector import AnomalyDetector
from crypto_assets.ml.evaluation import kind_recall
from crypto_assets.ml.metrics import recall_by_kind, top_share_flags

HOLDOUT = "crypto_assets.market.holdout_anomalies:inject_holdout_anomalies"
START, END = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)
VALUES = ["price", "open", "high", "low", "volume_quote"]


@pytest.fixture(scope="module")
def clean_and_altered():
    coins = default_universe(20)
    clean = synthetic_window(coins, 7, START, END, 0.0, None, HOLDOUT)
    altered = synthetic_window(coins, 7, START, END, 0.05, None, HOLDOUT)
    return clean, altered


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index(["coin_id", "observed_at"]).sort_index()


def test_every_holdout_kind_appears_with_its_labels_on_exactly_the_rows_it_altered(clean_and_altered):
    clean, altered = clean_and_altered
    truth = altered.ground_truth
    assert set(truth["anomaly_kind"]) == set(HOLDOUT_KINDS)
    before, after = _keyed(clean.snapshots)[VALUES], _keyed(altered.snapshots)[VALUES]
    changed = ~np.isclose(before.to_numpy(), after.to_numpy(), rtol=1e-12, equal_nan=True)
    changed_rows = pd.Series(changed.any(axis=1), index=before.index)
    labeled = truth.set_index(["coin_id", "observed_at"]).index
    assert not changed_rows[~changed_rows.index.isin(labeled)].any(), "a row was altered without a label"
    by_kind = truth.assign(changed=changed_rows.reindex(labeled).to_numpy())
    # every kind alters what it says it alters (a freeze may repeat a price that was already equal: nearly all)
    assert by_kind.groupby("anomaly_kind")["changed"].mean().min() > 0.9
    lengths = truth.groupby(["anomaly_kind", "anomaly_id", "coin_id"]).size()
    for kind, (_, hi) in HOLDOUT_KINDS.items():
        assert lengths[kind].max() <= hi
    # contagion hits several coins in one event; the others stay on one coin
    coins_per_event = truth.groupby("anomaly_id")["coin_id"].nunique()
    contagion = truth.loc[truth["anomaly_kind"] == "contagion", "anomaly_id"].unique()
    assert coins_per_event[contagion].max() >= 3
    assert (coins_per_event.drop(contagion) == 1).all()


def test_kinds_alter_what_their_docstrings_say(clean_and_altered):
    clean, altered = clean_and_altered
    before, after = _keyed(clean.snapshots), _keyed(altered.snapshots)
    truth = altered.ground_truth.set_index(["coin_id", "observed_at"])

    def rows(kind):
        return truth.index[truth["anomaly_kind"] == kind]

    ratio = (after["price"] / before["price"]).reindex(rows("decimal_shift"))
    assert set(np.round(ratio, 6)) <= {100.0, 0.01}
    units = (after["volume_quote"] / before["volume_quote"]).reindex(rows("volume_units"))
    assert set(np.round(units, 6)) <= {1000.0, 0.001}
    swapped = after.reindex(rows("swapped_columns"))
    assert (swapped["high"] <= swapped["low"]).all()
    wash = rows("wash_trading")
    assert ((after["volume_quote"] / before["volume_quote"]).reindex(wash) >= 2.5).all()
    assert np.allclose(after["price"].reindex(wash), before["price"].reindex(wash))
    frozen = rows("frozen_price_live_volume")
    assert np.allclose(after["volume_quote"].reindex(frozen), before["volume_quote"].reindex(frozen))
    events = truth.loc[frozen, "anomaly_id"].to_numpy()
    assert after["price"].reindex(frozen).groupby(events).nunique().max() == 1  # one price per event


def test_the_holdout_generator_is_deterministic_and_needs_its_lead():
    coins = default_universe(5)
    one = synthetic_window(coins, 3, START, END, 0.05, None, HOLDOUT)
    two = synthetic_window(coins, 3, START, END, 0.05, None, HOLDOUT)
    pd.testing.assert_frame_equal(one.ground_truth, two.ground_truth)
    pd.testing.assert_frame_equal(one.snapshots.drop(columns="ingested_at"), two.snapshots.drop(columns="ingested_at"))
    _, lead = resolve_generator(HOLDOUT)
    assert lead >= max(hi for _, hi in HOLDOUT_KINDS.values())


def test_sources_plug_in_any_generator():
    market = SyntheticMarket(universe_size=5, anomaly_rate=0.05, anomaly_generator=HOLDOUT)
    batch = market.fetch(START, datetime(2026, 6, 15, tzinfo=UTC))
    assert set(batch.ground_truth["anomaly_kind"]) <= set(HOLDOUT_KINDS)
    assert len(batch.ground_truth) > 0
    with pytest.raises(ValueError, match="module:function"):
        resolve_generator("crypto_assets.market.holdout_anomalies")
    with pytest.raises(ValueError, match="no function"):
        resolve_generator("crypto_assets.market.holdout_anomalies:nothing_here")


def test_a_generator_returning_unknown_kinds_and_odd_rows_is_made_safe():
    frame = synthetic_window(default_universe(2), 1, START, datetime(2026, 6, 2, tzinfo=UTC), 0.0).snapshots
    coin = frame["coin_id"].iloc[0]
    hours = frame.loc[frame["coin_id"] == coin, "observed_at"].iloc[:3].tolist()

    def odd(frame, *, seed, rate, source):
        truth = pd.DataFrame(
            {
                "coin_id": [coin, coin, coin, coin, "not-a-coin"],
                "observed_at": [hours[0], hours[0], hours[1], hours[2], hours[0]],
                "anomaly_kind": ["martian_print", "martian_print", None, "martian_print", "x"],
            }
        )  # no anomaly_id, a duplicate, a kind missing, a coin that is not in the frame
        return frame, truth

    _, truth = run_generator(odd, frame, seed=0, rate=0.1, source="synthetic")
    assert len(truth) == 3
    assert sorted(truth["anomaly_kind"]) == ["martian_print", "martian_print", "unnamed"]
    assert truth["anomaly_id"].notna().all() and (truth["source"] == "synthetic").all()
    assert (truth["partition_hour"] == truth["observed_at"]).all()


def test_recall_by_kind_on_a_known_case():
    kinds = pd.Series(["a", "a", "a", "a", None, "b", "b", None])
    events = pd.Series(["a1", "a1", "a2", "a2", None, "b1", "b1", None])
    flags = {
        "candidate": np.array([True, False, False, False, True, True, True, False]),
        "other": np.array([False, False, True, True, False, False, False, True]),
    }
    out = recall_by_kind(kinds, events, flags).set_index("kind")
    assert out.loc["a", "rows"] == 4 and out.loc["a", "events"] == 2
    assert out.loc["a", "candidate_recall"] == 0.25 and out.loc["a", "candidate_event_recall"] == 0.5
    assert out.loc["a", "other_recall"] == 0.5 and out.loc["a", "other_event_recall"] == 0.5
    assert out.loc["b", "candidate_recall"] == 1.0 and out.loc["b", "other_recall"] == 0.0


def test_top_share_flags_and_kind_recall_compare_baselines_at_the_candidates_flag_rate():
    assert top_share_flags(np.array([0.1, 0.9, np.nan, 0.5]), 2).tolist() == [False, True, False, True]
    hours = pd.to_datetime(["2026-06-01 00:00", "2026-06-01 01:00", "2026-06-01 02:00", "2026-06-01 03:00"])
    keys = pd.DataFrame({"coin_id": "c", "partition_hour": hours, "fold": "2026-06-01", "truth": [1, 1, 0, 0]})
    scores = pd.concat(
        [
            keys.assign(role="candidate", score=[0.9, 0.1, 0.2, 0.3], flagged=[True, False, False, False]),
            keys.assign(role="zscore", score=[0.1, 0.9, 0.2, 0.3], flagged=None),
        ]
    )
    kinds = pd.DataFrame(
        {"coin_id": "c", "partition_hour": hours[:2], "anomaly_kind": ["spike", "drift"], "anomaly_id": ["e1", "e2"]}
    )
    out = kind_recall(AnomalyDetector(), scores, kinds).set_index("kind")
    assert out.loc["spike", "candidate_recall"] == 1.0 and out.loc["spike", "zscore_recall"] == 0.0
    assert out.loc["drift", "candidate_recall"] == 0.0 and out.loc["drift", "zscore_recall"] == 1.0


def test_the_default_generator_is_unchanged_by_the_plug_in():
    from crypto_assets.market.anomalies import inject_anomalies

    frame = synthetic_window(default_universe(3), 5, START, datetime(2026, 6, 20, tzinfo=UTC), 0.0).snapshots
    direct_frame, direct = inject_anomalies(frame, seed=5, rate=0.05, source="synthetic")
    generator, _ = resolve_generator("crypto_assets.market.anomalies:inject_anomalies")
    via_frame, via = run_generator(generator, frame, seed=5, rate=0.05, source="synthetic")
    pd.testing.assert_frame_equal(direct_frame, via_frame)
    pd.testing.assert_frame_equal(direct.reset_index(drop=True), via.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize(
    "generator",
    ["crypto_assets.market.anomalies:inject_anomalies", HOLDOUT],
)
def test_a_window_that_ends_inside_an_event_writes_the_hours_a_longer_window_does(generator):
    # An hourly run ends its window inside events a backfill holds whole: the hours both hold must agree.
    coins, start = default_universe(20), datetime(2026, 10, 1, tzinfo=UTC)
    long = synthetic_window(coins, 7, start, start + pd.Timedelta(days=3), 0.1, anomaly_generator=generator)
    keys = ["coin_id", "partition_hour"]
    whole, whole_truth = long.snapshots.set_index(keys).sort_index(), long.ground_truth
    cut_inside = 0
    for hours in range(1, 72, 5):
        short = synthetic_window(coins, 7, start, start + pd.Timedelta(hours=hours), 0.1, anomaly_generator=generator)
        mine = short.snapshots.set_index(keys).sort_index()
        same_hours = whole.loc[mine.index]
        pd.testing.assert_frame_equal(mine.drop(columns="ingested_at"), same_hours.drop(columns="ingested_at"))
        last = short.snapshots["partition_hour"].max()
        ids = set(short.ground_truth.loc[short.ground_truth["partition_hour"] == last, "anomaly_id"])
        cut_inside += int(whole_truth["anomaly_id"].isin(ids).sum() > short.ground_truth["anomaly_id"].isin(ids).sum())
    assert cut_inside > 0  # some windows did end inside an event

"""End to end through the Dagster UI, in headless Chromium, against a real ``dagster dev`` (see ``e2e.py``).

Needs Chromium at ``/usr/bin/chromium`` (``bash scripts/install_browser.sh``; override the path
with ``CRYPTO_ASSETS_CHROMIUM``) and the Python ``playwright`` package (the driver only:
Playwright's own browser download is not used). Skips with the reason when either is missing.

What the test clicks and checks, one screenshot per step (in ``.local/screenshots/`` or
``CRYPTO_ASSETS_SCREENSHOTS_DIR``; the folder is printed):

1. Lineage (``/asset-groups``), then ⌥E ("Expand all groups"): every asset of the five groups is
   drawn, and the graph has the edges market_snapshots → coin_features → training_splits and
   anomaly_detector_evaluation → model_champions (edge paths that leave one node and enter the
   other). ``01_global_lineage.png``
2. Asset ``coin_features`` → tab Lineage: market_snapshots upstream, training_splits,
   anomaly_scores and volatility_forecasts downstream, with their edges. ``02_coin_features_lineage.png``
3. Asset ``market_snapshots`` → Materialize… → Confirm (the multi-asset also writes
   market_quarantine and anomaly_ground_truth) → type one daily partition (the first one, never
   materialized) → "1 partition" → ``03_materialize_dialog.png`` → Launch 1 run → toast → View:
   the run page shows the partition and reaches Success (and the API agrees). ``04_run_succeeded.png``
4. Back on ``market_snapshots`` → tab Partitions → filter by the partition key → click it: its
   latest materialization is from that run, with dagster/row_count 480 (what DuckDB holds for the
   day), coins 20, hours 24 and source synthetic. The same for a day of the quickstart's single-run
   backfill: its own 480 rows, the run's total under ``run/rows``. ``05``/``06``
5. Asset ``anomaly_detector_evaluation`` → tab Checks: the six gates (meets_metric_floor,
   beats_baseline, beats_champion, sane_flag_rate, no_nan_scores, artifact_verified) are listed,
   each with a status; click meets_metric_floor: its evaluation result, its candidate_pr_auc and
   the rule it decides by are shown. ``07_evaluation_checks.png``
6. Asset ``model_champions`` → Overview: the champion of each model (``champion/<model>``: a model
   or a baseline of last resort, marked as such) ``08_model_champions.png``; scrolled down, the
   timeline of decisions. ``09_model_champions_decisions.png``
7. ``daily_training_job``'s Runs page lists the quickstart's training run, succeeded.
   ``10_daily_training_job_runs.png``
8. The Overview's activity timeline shows the quickstart's runs by job. ``11_overview_timeline.png``

On a failure the page at that moment is saved as ``99_failure.png`` and the tail of the
``dagster dev`` log is added to the report. The browser may only reach 127.0.0.1: every other
request is aborted.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("crypto_assets_tests.e2e")  # it is also loaded as a plugin, below
from crypto_assets_tests.e2e import REPO_ROOT, DagsterServer  # noqa: E402

pytest_plugins = ["crypto_assets_tests.e2e"]

CHROMIUM = os.environ.get("CRYPTO_ASSETS_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM}: run `bash scripts/install_browser.sh`", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.venv/bin/pip install playwright)"
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
]
VIEWPORT = {"width": 1600, "height": 1000}
STEP_TIMEOUT_MS = 30_000
RUN_TIMEOUT_S = 240.0
ASSETS = [
    "market_snapshots",
    "market_quarantine",
    "anomaly_ground_truth",
    "coin_features",
    "coin_labels",
    "training_splits",
    "feature_drift",
    "anomaly_detector_candidate",
    "volatility_model_candidate",
    "anomaly_detector_evaluation",
    "volatility_model_evaluation",
    "model_champions",
    "anomaly_scores",
    "volatility_forecasts",
    "prediction_outcomes",
]
GATES = [
    "meets_metric_floor",
    "beats_baseline",
    "beats_champion",
    "sane_flag_rate",
    "no_nan_scores",
    "artifact_verified",
]
CHECK_STATUSES = {"Succeeded", "Failed", "Execution failed", "Skipped", "In progress", "Not evaluated"}
MODELS = ["anomaly_detector", "volatility_model"]

# Every asset node (an innermost <foreignObject>) and every edge (a <path> with an arrow) of the
# asset graph, in the graph's own coordinates.
GRAPH_JS = """
() => {
  const nodes = [];
  for (const fo of document.querySelectorAll('svg foreignObject')) {
    if (fo.querySelector('foreignObject')) continue;
    const html = fo.firstElementChild;  // innerText is defined on HTML elements, not on SVG ones
    const text = ((html && html.innerText) || '').trim();
    if (!text) continue;
    nodes.push({name: text.split('\\n')[0].trim(), x: +fo.getAttribute('x'), y: +fo.getAttribute('y'),
                w: +fo.getAttribute('width'), h: +fo.getAttribute('height')});
  }
  const edges = [];
  for (const path of document.querySelectorAll('svg path[marker-end]')) {
    const nums = (path.getAttribute('d') || '').match(/-?[0-9.]+/g);
    if (!nums || nums.length < 4) continue;
    const n = nums.map(Number);
    edges.push({x1: n[0], y1: n[1], x2: n[n.length - 2], y2: n[n.length - 1]});
  }
  return {nodes, edges};
}
"""


def shows(display: str, name: str) -> bool:
    """Whether a node label shows ``name``; zoomed-out graphs middle-truncate long names (``anomal…_evaluation``)."""
    if display == name:
        return True
    if "…" in display:
        head, _, rest = display.partition("…")
        return len(display) > 4 and name.startswith(head) and name.endswith(rest)
    return False


class Graph:
    def __init__(self, page):
        data = page.evaluate(GRAPH_JS)
        self.nodes, self.edges = data["nodes"], data["edges"]

    def node(self, name: str) -> dict | None:
        return next((n for n in self.nodes if shows(n["name"], name)), None)

    def has_edge(self, upstream: str, downstream: str, tolerance: float = 30.0) -> bool:
        """An arrow that leaves ``upstream``'s right side and enters ``downstream``'s left side."""
        a, b = self.node(upstream), self.node(downstream)
        if a is None or b is None:
            return False
        return any(
            abs(e["x1"] - (a["x"] + a["w"])) <= tolerance
            and a["y"] <= e["y1"] <= a["y"] + a["h"]
            and abs(e["x2"] - b["x"]) <= tolerance
            and b["y"] <= e["y2"] <= b["y"] + b["h"]
            for e in self.edges
        )

    def describe(self) -> str:
        return f"nodes {[n['name'] for n in self.nodes]}, {len(self.edges)} edges"


def wait_for_graph(page, names: list[str], timeout_s: float = 30.0) -> Graph:
    """Wait until the asset graph draws every one of ``names`` (layout is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    graph = Graph(page)
    while time.monotonic() < deadline:
        graph = Graph(page)
        if all(graph.node(n) for n in names) and graph.edges:
            page.wait_for_timeout(500)  # let the viewport settle before a screenshot
            return Graph(page)
        page.wait_for_timeout(250)
    missing = [n for n in names if not graph.node(n)]
    raise AssertionError(f"the asset graph never showed {missing}: {graph.describe()}")


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("CRYPTO_ASSETS_SCREENSHOTS_DIR", REPO_ROOT / ".local" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("[0-9][0-9]_*.png"):
        old.unlink()
    return folder


def open_browser(playwright, server: DagsterServer, user_data_dir: str):
    context = playwright.chromium.launch_persistent_context(
        user_data_dir,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
    )

    # Never leave 127.0.0.1: anything else the page asks for is refused.
    def only_local(route):
        if route.request.url.startswith(server.url + "/") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_local)
    # The UI's "Join the Dagster community" dialog is dismissed for good in this browser profile.
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context


def metadata_value(page, key: str) -> str:
    """The value cell of ``key`` in an asset's metadata table."""
    row = page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first
    sync_api.expect(row).to_be_visible()
    cells = [c.strip() for c in row.locator(":scope > td").all_inner_texts()]
    values = [c for c in cells[1:] if c]
    assert values, f"metadata row {key!r} has no value: {cells}"
    return values[-1]


def test_browse_materialize_and_inspect_in_the_ui(dagster_server: DagsterServer):
    expect = sync_api.expect
    base = dagster_server.url
    folder = screenshots_dir()
    shots: list[str] = []
    print(f"\n[ui] screenshots go to {folder}")

    def shot(page, name: str) -> None:
        path = folder / f"{len(shots) + 1:02d}_{name}.png"
        page.screenshot(path=str(path))
        shots.append(path.name)
        print(f"[ui] {path}")

    partition = dagster_server.partitions_start  # the first daily partition: never materialized
    user_data_dir = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_api.sync_playwright() as playwright:
            context = open_browser(playwright, dagster_server, user_data_dir)
            try:
                page = context.new_page()

                try:
                    # 1. The global asset lineage, every group expanded.
                    page.goto(f"{base}/asset-groups")
                    expect(page.get_by_text("Global asset lineage")).to_be_visible()
                    wait_for_graph(page, ["ingestion", "features", "training", "evaluation", "serving"])
                    page.keyboard.press("Alt+e")  # "Expand all groups" (⌥E)
                    try:
                        graph = wait_for_graph(page, ASSETS, timeout_s=10)
                    except AssertionError:  # the shortcut did not reach the graph: open the same view by its URL
                        groups = ",".join(
                            f"global@global:{g}" for g in ["ingestion", "features", "training", "evaluation", "serving"]
                        )
                        page.goto(f"{base}/asset-groups/?expanded={groups}")
                        graph = wait_for_graph(page, ASSETS)
                    for upstream, downstream in [
                        ("market_snapshots", "coin_features"),
                        ("coin_features", "training_splits"),
                        ("anomaly_detector_evaluation", "model_champions"),
                    ]:
                        assert graph.has_edge(upstream, downstream), (
                            f"no edge {upstream} -> {downstream}: {graph.describe()}"
                        )
                    assert not graph.has_edge("coin_features", "market_snapshots")
                    shot(page, "global_lineage")

                    # 2. coin_features -> Lineage: its nearest neighbours, with full asset cards.
                    page.goto(f"{base}/assets/coin_features")
                    page.get_by_role("tab", name="Lineage", exact=True).click()
                    graph = wait_for_graph(
                        page,
                        [
                            "market_snapshots",
                            "coin_features",
                            "training_splits",
                            "anomaly_scores",
                            "volatility_forecasts",
                        ],
                    )
                    for downstream in ["training_splits", "anomaly_scores", "volatility_forecasts"]:
                        assert graph.has_edge("coin_features", downstream), (
                            f"no edge coin_features -> {downstream}: {graph.describe()}"
                        )
                    assert graph.has_edge("market_snapshots", "coin_features"), graph.describe()
                    expect(page.get_by_text("coin_features", exact=True).first).to_be_visible()
                    shot(page, "coin_features_lineage")

                    # 3. Materialize one daily partition of market_snapshots from its page.
                    page.goto(f"{base}/assets/market_snapshots")
                    page.locator("button", has_text="Materialize…").first.click()
                    confirm = page.get_by_role("button", name="Confirm")
                    # market_snapshots is a multi-asset: the UI asks to confirm its two sibling assets.
                    confirm.or_(page.get_by_placeholder("No matching partitions")).first.wait_for()
                    if confirm.is_visible():
                        expect(page.get_by_text("market_quarantine").filter(visible=True).first).to_be_visible()
                        confirm.click()
                    dialog = page.get_by_role("dialog")
                    expect(dialog.get_by_text("Launch runs to materialize")).to_be_visible()
                    partitions = dialog.get_by_placeholder("No matching partitions")
                    partitions.fill(partition)
                    partitions.press("Enter")
                    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
                    launch = dialog.locator("button", has_text="Launch 1 run")
                    expect(launch).to_be_enabled()
                    shot(page, "materialize_dialog")
                    launch.click()
                    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}"))
                    expect(toast).to_be_visible()
                    page.get_by_role("link", name="View", exact=True).or_(
                        page.get_by_role("button", name="View", exact=True)
                    ).first.click()
                    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
                    run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)
                    expect(page.get_by_text(f"partition: {partition}").first).to_be_visible()
                    status = wait_for_run_page(page, dagster_server, run_id)
                    assert status == "Success", f"run {run_id} ended {status}\n{dagster_server.logs()}"
                    assert dagster_server.run_status(run_id) == "SUCCESS"
                    expect(page.get_by_text("market_snapshots").first).to_be_visible()
                    shot(page, "run_succeeded")

                    # 4. The new partition on the asset's Partitions tab, then a day of the quickstart's ranged run:
                    #    each partition shows its own facts, not the run's totals.
                    for key, by_run in ((partition, run_id), (dagster_server.backfilled_day(), None)):
                        page.goto(f"{base}/assets/market_snapshots")
                        page.get_by_role("tab", name="Partitions", exact=True).click()
                        page.get_by_placeholder("Filter by name…").fill(key)
                        # The key shows under the health bar and in the filtered list; the list entry is the last.
                        page.get_by_text(key, exact=True).filter(visible=True).last.click()
                        page.wait_for_url(re.compile(r"partition="))
                        if by_run:
                            expect(page.get_by_text(by_run[:8], exact=True).first).to_be_visible()
                        partition_metadata = {
                            k: metadata_value(page, k) for k in ("dagster/row_count", "coins", "hours", "source")
                        }
                        stored = dagster_server.warehouse_rows(key)
                        assert stored == 480 and partition_metadata == {
                            "dagster/row_count": str(stored),
                            "coins": "20",
                            "hours": "24",
                            "source": "synthetic",
                        }, (key, partition_metadata, stored)
                        if by_run is None:  # the ranged run's total says it is one
                            assert int(metadata_value(page, "run/rows").replace(",", "")) > stored
                        shot(page, "market_snapshots_partition" if by_run else "market_snapshots_backfilled_partition")

                    # 5. The evaluation's quality gates on its Checks tab.
                    page.goto(f"{base}/assets/anomaly_detector_evaluation")
                    page.get_by_role("tab", name="Checks", exact=True).click()
                    statuses = {}
                    for gate in GATES:
                        label = page.locator(f'[title="{gate}"]').first
                        expect(label).to_be_visible()
                        statuses[gate] = label.locator("xpath=following-sibling::span[1]").inner_text().strip()
                    print(f"[ui] anomaly_detector_evaluation gates: {statuses}")
                    assert set(statuses.values()) <= CHECK_STATUSES, statuses
                    assert all(s in ("Succeeded", "Failed") for s in statuses.values()), statuses
                    page.locator('[title="meets_metric_floor"]').first.click()
                    expect(page.get_by_text("Evaluation result").filter(visible=True).first).to_be_visible()
                    expected_result = "Passed" if statuses["meets_metric_floor"] == "Succeeded" else "Failed"
                    expect(page.get_by_text(expected_result, exact=True).first).to_be_visible()
                    expect(page.get_by_text("candidate_pr_auc", exact=True).filter(visible=True).first).to_be_visible()
                    expect(page.get_by_text("rule", exact=True).filter(visible=True).first).to_be_visible()
                    shot(page, "evaluation_checks")

                    # 6. model_champions: every model's champion (a model, or a baseline of last resort, marked
                    #    as such) and the timeline of decisions.
                    page.goto(f"{base}/assets/model_champions")
                    expect(page.get_by_text("Latest materialization").filter(visible=True).first).to_be_visible()
                    champions = {m: metadata_value(page, f"champion/{m}") for m in MODELS}
                    print(f"[ui] model_champions: {champions}")
                    for model, champion in champions.items():
                        assert re.match(r"v\d+ \((model|baseline \(\w+\))\) since ", champion), (model, champion)
                    shot(page, "model_champions")
                    page.get_by_text("decisions", exact=True).first.scroll_into_view_if_needed()
                    decisions = (
                        page.locator("tr").filter(has=page.get_by_text("decisions", exact=True)).first.inner_text()
                    )
                    assert "promoted" in decisions, decisions
                    shot(page, "model_champions_decisions")

                    # 7. The training run on its job's page, where users look for it.
                    page.goto(f"{base}/locations/crypto_assets.definitions/jobs/daily_training_job/runs")
                    expect(page.get_by_text("No runs found")).to_have_count(0)
                    expect(page.get_by_text("Success").filter(visible=True).first).to_be_visible()
                    shot(page, "daily_training_job_runs")

                    # 8. The Overview's timeline shows the quickstart's runs by job.
                    page.goto(f"{base}/overview/activity/timeline")
                    expect(page.get_by_text("hourly_ingest_and_score_job").filter(visible=True).first).to_be_visible()
                    expect(page.get_by_text("No runs or scheduled ticks")).to_have_count(0)
                    shot(page, "overview_timeline")
                except BaseException:
                    failure = folder / "99_failure.png"
                    page.screenshot(path=str(failure))
                    print(f"[ui] failed at {page.url}; screenshot {failure}")
                    raise
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data_dir, ignore_errors=True)
    print(f"[ui] {len(shots)} screenshots in {folder}: {', '.join(shots)}")


def wait_for_run_page(page, server: DagsterServer, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> str:
    """Watch the run page until its status tag reads Success, Failure or Canceled; return it."""
    finished = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if finished.count():
            return finished.first.inner_text().strip()
        if not server.alive():
            raise AssertionError(f"dagster dev exited while run {run_id} was running\n{server.logs()}")
        page.wait_for_timeout(1000)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s:.0f}s (API says {server.run_status(run_id)})")

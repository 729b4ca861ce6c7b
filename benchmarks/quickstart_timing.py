"""How long the quickstart's materializations take, run by run, on a fresh instance each time.

    python -m benchmarks.quickstart_timing [--repeat 3] [--days 70] [--json]

Each repeat prepares a new DAGSTER_HOME and DuckDB file in a temporary folder and runs
``python -m crypto_assets.quickstart`` exactly as ``scripts/quickstart.sh`` does (without the UI).
Prints the seconds of every run (median, min, max over the repeats) and the total the quickstart
reports; with ``--json``, one final JSON line. Figures depend on the machine's load: run it on an
idle machine, and read the load average it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_LINE = re.compile(r"^(\S+ \S+): succeeded in ([0-9.]+)s", re.M)
TOTAL_LINE = re.compile(r"quickstart materializations done in ([0-9.]+)s")


def one_quickstart(days: int) -> tuple[dict[str, float], float]:
    from crypto_assets.instance import DAGSTER_ENV_DEFAULTS, prepare_home

    folder = Path(tempfile.mkdtemp(prefix="quickstart-timing-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COINGECKO_", "CRYPTO_ASSETS_", "DAGSTER_"))}
    env.update(
        **DAGSTER_ENV_DEFAULTS,
        DAGSTER_HOME=str(prepare_home(folder / "dagster_home", "local")),
        CRYPTO_ASSETS_DUCKDB_PATH=str(folder / "warehouse.duckdb"),
        CRYPTO_ASSETS_REPORTS_DIR=str(folder / "reports"),
        CRYPTO_ASSETS_PARTITIONS_START=subprocess.check_output(
            ["date", "-u", "-d", f"{days} days ago", "+%F"], text=True
        ).strip(),
    )
    run = subprocess.run(
        [sys.executable, "-m", "crypto_assets.quickstart", "--days", str(days)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"the quickstart failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    steps = {}
    for label, seconds in RUN_LINE.findall(run.stdout):
        name = label.split(" ")[0]
        steps[f"{len(steps) + 1}. {name}"] = float(seconds)
    return steps, float(TOTAL_LINE.search(run.stdout).group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=int, default=70)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    results = [one_quickstart(args.days) for _ in range(args.repeat)]
    totals = [total for _, total in results]
    print(f"\nquickstart --days {args.days}, {args.repeat} fresh instance(s); load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f} (2 cores)")  # fmt: skip
    print(f"{'run':<40}{'median s':>10}{'min':>8}{'max':>8}")
    for step in results[0][0]:
        values = [steps.get(step, float("nan")) for steps, _ in results]
        print(f"{step:<40}{statistics.median(values):>10.1f}{min(values):>8.1f}{max(values):>8.1f}")
    print(f"{'materializations (total)':<40}{statistics.median(totals):>10.1f}{min(totals):>8.1f}{max(totals):>8.1f}")
    if args.json:
        print(json.dumps({
            "days": args.days, "repeat": args.repeat, "total_s_median": statistics.median(totals),
            "total_s_min": min(totals), "total_s_max": max(totals), "load_average_before": round(load_before, 2),
            "runs": {s: statistics.median(r[0][s] for r in results) for s in results[0][0]},
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the quickstart end with both champions promoted by their gates, whatever the day it runs?

    python -m benchmarks.quickstart_dates --dates 20 --json

Replays ``python -m crypto_assets.quickstart`` as of ``--dates`` different days (``--every`` days
apart, ending ``--last``), each in its own process with a fresh DAGSTER_HOME prepared from the
repo's dagster.yaml and a fresh DuckDB file, as the quickstart script does; then reads each
model's last champion decision. Prints per date whether each model ended with a champion promoted
by the promotion sensor (every gate passed) or why not, and the quickstart's own materialization
time; with ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dates", type=int, default=20)
    parser.add_argument("--every", type=int, default=3, help="days between replayed dates")
    parser.add_argument("--last", default="2026-11-20", help="the last replayed date (YYYY-MM-DD)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from crypto_assets import registry
    from crypto_assets.instance import prepare_home
    from crypto_assets.ml.families import MODEL_FAMILIES
    from crypto_assets.warehouse import Warehouse

    MODEL_NAMES = [f.name for f in MODEL_FAMILIES]

    last = date.fromisoformat(args.last)
    dates = [last - timedelta(days=args.every * i) for i in range(args.dates - 1, -1, -1)]
    rows = []
    for day in dates:
        folder = Path(tempfile.mkdtemp(prefix=f"quickstart-{day}-"))
        home = prepare_home(folder / "dagster_home", "local")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CRYPTO_ASSETS_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
            "CRYPTO_ASSETS_REPORTS_DIR": str(folder / "reports"),
            "DAGSTER_DEPLOYMENT": "local",
            "CRYPTO_ASSETS_SOURCE": "synthetic",
            "CRYPTO_ASSETS_PARTITIONS_START": (day - timedelta(days=120)).isoformat(),
        }
        run = subprocess.run(
            [sys.executable, "-m", "crypto_assets.quickstart", "--as-of", f"{day.isoformat()}T10:05:00"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        (folder / "quickstart.log").write_text(run.stdout + run.stderr)
        timing = re.search(r"quickstart materializations done in ([0-9.]+)s", run.stdout)
        seconds = float(timing.group(1)) if timing else float("nan")
        with Warehouse(database=str(folder / "warehouse.duckdb")).connect() as conn:
            for name in MODEL_NAMES:
                decisions = registry.promotion_events(conn, name)
                last_decision = decisions[-1] if decisions else None
                rows.append(
                    {
                        "date": day.isoformat(),
                        "model": name,
                        "seconds": seconds,
                        "exit": run.returncode,
                        "promoted": bool(
                            last_decision
                            and last_decision["outcome"] == "promoted"
                            and last_decision["trigger"] == "sensor"
                        ),
                        "reason": last_decision["reason"]
                        if last_decision
                        else f"no decision (exit {run.returncode}, log {folder / 'quickstart.log'})",
                    }
                )
    print(
        f"\nquickstart replayed as of {len(dates)} dates, {dates[0]} .. {dates[-1]} every {args.every} days (10:05 UTC)"
    )
    print(f"{'date':<12}{'model':<18}{'promoted':>9}{'quickstart s':>13}  reason")
    for r in rows:
        print(
            f"{r['date']:<12}{r['model']:<18}{'yes' if r['promoted'] else 'NO':>9}"
            f"{r['seconds']:>13.1f}  {r['reason'][:150]}"
        )
    both = [d.isoformat() for d in dates if all(r["promoted"] for r in rows if r["date"] == d.isoformat())]
    seconds = sorted(r["seconds"] for r in rows[::2])
    print(
        f"both champions promoted by their gates on {len(both)} of {len(dates)} dates; quickstart materializations "
        f"median {seconds[len(seconds) // 2]:.1f}s (min {seconds[0]:.1f}, max {seconds[-1]:.1f})"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "dates": len(dates),
                    "both_promoted": len(both),
                    "promoted": {m: sum(r["promoted"] for r in rows if r["model"] == m) for m in MODEL_NAMES},
                    "quickstart_seconds_median": seconds[len(seconds) // 2],
                    "quickstart_seconds_max": seconds[-1],
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long the code location takes to load, against a bare ``import dagster``, in the same run.

    python -m benchmarks.load_time [--repeat 7] [--json]

Each repeat starts a fresh interpreter for each of the two imports, alternating, so both see the
same machine load; the ratio of the medians is the figure (the webserver and daemon load the
definitions on every reload, and each run's process loads them once). Nothing is asserted: the
test ``test_definitions_validate_and_load_without_heavy_ml_imports`` checks that no heavy library
is imported with the definitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {"dagster": "import dagster", "definitions": "import crypto_assets.definitions"}


def seconds(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)

    for statement in COMMANDS.values():  # warm the file cache and the bytecode once, untimed
        seconds(statement)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, statement in COMMANDS.items():
            times[name].append(seconds(statement))

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'command':<36} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in times.items():
        print(f"{COMMANDS[name]:<36} {medians[name]:>9.3f} {min(values):>7.3f} {max(values):>7.3f}")
    ratio = medians["definitions"] / medians["dagster"]
    load = os.getloadavg()[0]
    print(f"definitions / bare dagster: {ratio:.2f}x (median of {args.repeat}; load average {load:.1f})")
    if args.json:
        print(json.dumps({"repeat": args.repeat, "ratio": round(ratio, 3), "load_average": round(load, 2),
                          **{f"{k}_median_s": round(v, 3) for k, v in medians.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()

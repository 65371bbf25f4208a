"""`cupola --help` wall time (median of runs) against a bare interpreter that imports only the CLI framework.

Goal: the median under 1 s. Each command module imports its heavy dependencies (Ray, the
stores, the trainer) inside the command, so listing commands loads none of them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 1.0


def wall(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cupola = shutil.which("cupola", path=str(Path(sys.executable).parent)) or "cupola"
    baseline = [sys.executable, "-c", "import typer, rich.table"]
    wall([cupola, "--help"])  # warm the file cache once
    cupola_s = statistics.median(wall([cupola, "--help"]) for _ in range(args.runs))
    baseline_s = statistics.median(wall(baseline) for _ in range(args.runs))
    print(f"cupola --help {cupola_s:.2f}s, python + typer + rich {baseline_s:.2f}s, ratio {cupola_s / baseline_s:.2f}")
    print(
        json.dumps(
            {
                "cupola_help_s": round(cupola_s, 3),
                "baseline_s": round(baseline_s, 3),
                "ratio": round(cupola_s / baseline_s, 2),
                "goal_s": GOAL_S,
                "met": cupola_s < GOAL_S,
            }
        )
    )


if __name__ == "__main__":
    main()

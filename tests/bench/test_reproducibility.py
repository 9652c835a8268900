"""Do the numbers reproduce? The same grid run k times independently (pytest -m bench -s
tests/bench/test_reproducibility.py [--runs 5]; about 5 x 1 minute on a 2-core CPU).

For every case and implementation it prints the k speedup estimates, their spread (max/min), and
whether each run's 95 % interval covers the speedup pooled from the other k - 1 runs (their samples
together). It asserts what the README states: for cases not flagged noisy or unstable in any run,
spread <= 1.3x, and each run's interval covers the others' pooled speedup in >= 90 % of (case, run)
pairs. Set HEBBBENCH_REPRO_OUT to a folder to keep the runs (they go to a temporary folder otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hebbbench
from hebbbench.measure.timing import Timing
from hebbbench.store import ResultSet

pytestmark = pytest.mark.bench
MAX_SPREAD, MIN_COVERAGE = 1.3, 0.90


def pooled_speedup(paths: list[Path], case_id: str, label: str, baseline: str) -> float:
    """median of the baseline's samples over median of the label's, all runs in ``paths`` together."""
    base, mine = [], []
    for path in paths:
        records = ResultSet(path).sample_records()
        base += Timing.from_record(records[(case_id, baseline)]).samples
        mine += Timing.from_record(records[(case_id, label)]).samples
    return float(np.median(base) / np.median(mine))


def agreement(paths: list[Path]) -> pd.DataFrame:
    """Per (case, label) other than the baseline: the runs' speedups, spread, flags and coverage."""
    frames = [ResultSet(p).frame().assign(run=i) for i, p in enumerate(paths)]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[(rows["status"] == "ok") & (rows["label"] != rows["baseline"])]
    lines = []
    for (case_id, label), group in rows.groupby(["case_id", "label"], sort=True):
        if len(group) != len(paths):
            continue
        group = group.sort_values("run")
        covered = []
        for _, row in group.iterrows():
            others = [p for i, p in enumerate(paths) if i != row["run"]]
            target = pooled_speedup(others, case_id, label, row["baseline"])
            covered.append(bool(row["speedup_lo"] <= target <= row["speedup_hi"]))
        flagged = bool(group["noisy"].astype(str).str.lower().eq("true").any()
                       or group["unstable"].astype(str).str.lower().eq("true").any())
        lines.append({"case_id": case_id, "label": label,
                      "speedups": " ".join(f"{v:.2f}" for v in group["speedup"]),
                      "spread": group["speedup"].max() / group["speedup"].min(),
                      "covered": sum(covered), "runs": len(covered), "flagged": flagged})
    return pd.DataFrame(lines)


@pytest.fixture
def runs(request) -> int:
    return int(request.config.getoption("--runs"))


def test_quick_speedups_reproduce_between_runs(runs, tmp_path):
    root = Path(os.environ.get("HEBBBENCH_REPRO_OUT") or tmp_path)
    paths = []
    for i in range(runs):
        frame = hebbbench.run(preset="quick", rules=["swta", "hpca"], impls=["fh", "naive:group_size=8"],
                              out=root / f"run{i + 1}")
        paths.append(Path(frame.attrs["path"]))
    table = agreement(paths)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    steady = table[~table["flagged"]]
    coverage = steady["covered"].sum() / steady["runs"].sum()
    print(f"{len(steady)} of {len(table)} (case, impl) not flagged: spread max {steady['spread'].max():.2f}x, "
          f"interval covers the others' pooled speedup in {steady['covered'].sum()}/{steady['runs'].sum()} "
          f"= {100 * coverage:.0f} %")
    assert steady["spread"].max() <= MAX_SPREAD
    assert coverage >= MIN_COVERAGE

"""Do the numbers reproduce? The same grid run k times independently (pytest -m bench -s
tests/bench/test_reproducibility.py [--runs 5]; about 5 x 1 minute on a 2-core CPU).

For every case and implementation it prints the k speedup estimates, their spread (max/min), and
whether each run's 95 % interval covers the speedup pooled from the other k - 1 runs (their samples
together). It asserts what the README states: for cases not flagged noisy or unstable in any run
(neither the implementation's row nor the baseline's), spread <= 1.3x; over all cases, each run's
interval covers the others' pooled speedup in >= 90 % of (case, run) pairs. Set HEBBBENCH_REPRO_OUT to a folder to keep the runs (they go to a temporary folder otherwise),
HEBBBENCH_REPRO_ALLOCATOR=system to measure with the allocator as found (the default is pinned), and
HEBBBENCH_REPRO_PROCESSES to another number of worker processes.
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
    for flag in ("noisy", "unstable"):
        rows[flag] = rows[flag].astype(str).str.lower().eq("true")
    # a speedup is as steady as its two rows: the baseline's flags count too
    base_flags = rows[rows["label"] == rows["baseline"]].groupby("case_id")[["noisy", "unstable"]].any()
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
        flags = [f for f in ("noisy", "unstable")
                 if group[f].any() or (case_id in base_flags.index and base_flags.loc[case_id, f])]
        lines.append({"case_id": case_id, "label": label,
                      "speedups": " ".join(f"{v:.2f}" for v in group["speedup"]),
                      "spread": group["speedup"].max() / group["speedup"].min(),
                      "covered": sum(covered), "runs": len(covered), "flagged": bool(flags),
                      "flags": ",".join(flags)})
    return pd.DataFrame(lines)


@pytest.fixture
def runs(request) -> int:
    return int(request.config.getoption("--runs"))


def test_quick_speedups_reproduce_between_runs(runs, tmp_path):
    root = Path(os.environ.get("HEBBBENCH_REPRO_OUT") or tmp_path)
    paths = []
    for i in range(runs):
        options = {"allocator": os.environ.get("HEBBBENCH_REPRO_ALLOCATOR", "pinned")}
        if os.environ.get("HEBBBENCH_REPRO_PROCESSES"):
            options["processes"] = int(os.environ["HEBBBENCH_REPRO_PROCESSES"])
        frame = hebbbench.run(preset="quick", rules=["swta", "hpca"], impls=["fh", "naive:group_size=8"],
                              out=root / f"run{i + 1}", **options)
        paths.append(Path(frame.attrs["path"]))
    table = agreement(paths)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    steady = table[~table["flagged"]]
    for name, part in (("all", table), ("not flagged", steady)):
        print(f"{name}: {len(part)} (case, impl); spread of the {runs} speedups {part['spread'].min():.2f}-"
              f"{part['spread'].max():.2f}x ({(part['spread'] <= MAX_SPREAD).sum()} within {MAX_SPREAD}x); each "
              f"run's interval covers the others' pooled speedup in {part['covered'].sum()}/{part['runs'].sum()} "
              f"= {100 * part['covered'].sum() / max(1, part['runs'].sum()):.0f} %")
    assert (steady["spread"] <= MAX_SPREAD).all()
    assert table["covered"].sum() >= MIN_COVERAGE * table["runs"].sum()

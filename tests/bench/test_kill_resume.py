"""Kill -9 at a random moment, then --resume: exact every time (pytest -m bench -s
tests/bench/test_kill_resume.py [--repeats 20]; about 15 s per trial on a 2-core CPU).

A run of the tiny grid in two worker processes is killed with SIGKILL at a moment drawn uniformly
over its duration (before its first case, between processes, while a case's rows are written ...),
a line cut short is appended to one of its files at random, and the run is resumed. Exact means:
every case × variant once, each measured in both processes, no sample record twice, the cases
finished before the kill not measured again, env.json complete, no staging file left.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hebbbench.measure.timing import Timing
from hebbbench.store import MEASURED, ResultSet

pytestmark = pytest.mark.bench
TINY = Path(__file__).resolve().parent.parent / "data" / "tiny.toml"
CLI = [sys.executable, "-m", "hebbbench.cli"]
ARGS = ["--rules", "hpca", "--impls", "fh,naive:group_size=3", "--no-progress", "--no-report"]


def test_kill_at_a_random_moment_then_resume_is_exact(repeat, tmp_path):
    rng = random.Random(repeat)
    config = tmp_path / "slow.toml"
    config.write_text(TINY.read_text().replace("processes = 1", "processes = 2").replace(
        "case_seconds = 0.05", "case_seconds = 0.15").replace("max_rounds = 5", "max_rounds = 1000").replace(
        "min_rounds = 3", "min_rounds = 1000"))
    out = tmp_path / "run"
    moment = rng.uniform(0.5, 22.0)  # the whole run: both processes, and the rows written at the end
    proc = subprocess.Popen([*CLI, "run", "--config", str(config), "--out", str(out), *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = ResultSet(out).frame() if (out / "results.csv").exists() else None
    target = out / rng.choice(["results.csv", "samples.jsonl", MEASURED])
    if target.exists():
        with open(target, "a") as f:
            f.write('1,cut-short,"x')  # a line a kill cut short
    time.sleep(1.0)  # the killed run's workers follow it
    result = subprocess.run([*CLI, "run", "--resume", str(out), *ARGS[-2:]], capture_output=True, text=True)
    print(f"trial {repeat}: killed after {moment:.1f} s with "
          f"{0 if before is None else before['case_id'].nunique()} cases written; resume exit {result.returncode}")
    if not out.exists():  # killed before the set's folder was made: nothing to resume, said in one line
        assert result.returncode == 2 and "no such folder" in result.stderr, result.stderr
        result = subprocess.run([*CLI, "run", "--config", str(config), "--out", str(out), *ARGS],
                                capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rs = ResultSet(out)
    final = rs.frame()
    assert len(final) == 8 * 2 and not final.duplicated(["case_id", "label"]).any()  # 8 HPCA cases, 2 variants
    assert set(final["processes"]) == {2}
    records = rs.sample_records(calibration=True)
    assert len(records) == 8 * 3  # fh, naive and the calibration of every case, once each
    assert all(sorted(set(Timing.from_record(r).process)) == [0, 1] for r in records.values())
    if before is not None and len(before):
        kept = final.set_index(["case_id", "label"]).loc[list(zip(before["case_id"], before["label"]))]
        assert list(kept["median_s"]) == list(before["median_s"])  # not measured again
    assert json.loads((out / "env.json").read_text())["status"] == "complete"
    assert not (out / MEASURED).exists()

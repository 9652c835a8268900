"""hebbbench selfcheck: its steps' verdicts on real runs and on planted faults, its refusals, its
budget. (The whole CPU form runs in CI after the tests: .ci/run.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from hebbbench import rules, selfcheck
from hebbbench.rules.hpca import HPCAFastHebb

DATA = Path(__file__).parent / "data"


class HPCAOff(HPCAFastHebb):
    """HPCA-fh off by 1 % in every entry: a wrong implementation the equivalence step must catch."""

    def delta(self, x, y, w):
        return super().delta(x, y, w) * 1.01


def test_equivalence_checks_every_implementation_against_the_float64_reference(tmp_path):
    with rules.registered("hpca", "test-off", HPCAOff):
        step = selfcheck.equivalence("cpu", tmp_path / "eq")
    frame = pd.read_csv(tmp_path / "eq" / "equivalence.csv")
    assert set(map(tuple, frame[["rule", "impl"]].drop_duplicates().values)) == {*rules.available(),
                                                                                   ("hpca", "test-off")}
    assert set(frame["layer"]) == {"fc", "conv"}
    off = frame[frame["impl"] == "test-off"]
    assert set(off["status"]) == {"wrong"} and (off["error"] > 5e-3).all()
    fine = frame[(frame["status"] == "ok")]
    assert (fine["error"] <= fine["tolerance"]).all() and len(fine) > 50
    skipped = frame[frame["status"] == "skipped"]
    assert set(skipped["impl"]) <= {"fh-graph", "fh-triton"}  # GPU-only forms, said so
    assert not step.passed and "hpca/test-off fc: wrong" in step.detail


def test_a_step_over_the_budget_is_not_run_and_fails_the_check(tmp_path):
    """A budget that only the first step fits: the others are listed as not run, the verdict fails."""
    check = selfcheck.run("cpu", out=tmp_path / "check", budget_s=1.0, reports=False)
    assert [s.name for s in check.steps] == list(selfcheck.STEPS)
    assert check.steps[0].passed and all(s.passed is None for s in check.steps[1:])
    assert check.exit_code == 1
    written = json.loads((tmp_path / "check" / "selfcheck.json").read_text())
    assert written["passed"] is False and written["steps"][1]["detail"].startswith("not run")
    assert "FAILED" in (tmp_path / "check" / "verdict.md").read_text()


def test_the_gate_step_records_a_missing_baseline_and_judges_an_existing_one(tmp_path, gate_runs):
    """No baseline for the device: the run becomes it (and the step says so); with one, compare judges."""
    first, second = gate_runs
    frame = pd.read_csv(first / "results.csv")
    frame.attrs["path"] = str(first)
    step = selfcheck.gate("cpu", frame, tmp_path / "baselines")
    assert step.passed and "recorded as" in step.detail and (tmp_path / "baselines" / "ci-cpu" / "env.json").exists()
    again = pd.read_csv(second / "results.csv")
    again.attrs["path"] = str(second)
    step = selfcheck.gate("cpu", again, tmp_path / "baselines")
    assert "against" in step.detail and ("no regression" in step.detail) == step.passed
    assert (second / "compare.md").exists()


@pytest.fixture(scope="module")
def gate_runs(tmp_path_factory):
    """Two runs of a small gate grid (one process each)."""
    import hebbbench

    base = tmp_path_factory.mktemp("selfcheck")
    out = []
    for name in ("first", "second"):
        hebbbench.run(config=DATA / "gate.toml", out=base / name, processes=1, case_seconds=0.2)
        out.append(base / name)
    return out


def test_selfcheck_of_a_gpu_that_is_not_there_is_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "selfcheck", "--devices", "cuda:7", "--out", tmp_path / "x")
    assert code == 2 and err.strip().count("\n") == 0
    assert "device 'cuda:7' is not available" in err
    assert not (tmp_path / "x").exists()


def test_selfcheck_refuses_a_folder_that_holds_something(tmp_path, monkeypatch, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    code, out, err = run_cli(monkeypatch, capsys, "selfcheck", "--devices", "cpu", "--out", tmp_path / "full")
    assert code == 2 and "is not empty" in err
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"

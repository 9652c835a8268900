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


def test_the_equivalence_check_catches_a_wrong_implementation():
    inputs = selfcheck.equivalence_inputs("cpu")
    with rules.registered("hpca", "test-off", HPCAOff):
        off = selfcheck.check_pair("hpca", "test-off", inputs)
    assert [r["status"] for r in off] == ["wrong", "wrong"] and all(r["error"] > 5e-3 for r in off)
    assert "exceeds" in off[0]["reason"]
    fine = selfcheck.check_pair("hpca", "fh", inputs)
    assert [r["status"] for r in fine] == ["ok", "ok"] and all(r["error"] < 1e-5 for r in fine)


def test_a_check_within_a_budget_only_the_first_step_fits(tmp_path):
    """The equivalence step covers every registered implementation on both layers; a budget that only
    it fits leaves the other steps listed as not run, and the verdict fails."""
    check = selfcheck.run("cpu", out=tmp_path / "check", budget_s=1.0, reports=False)
    frame = pd.read_csv(tmp_path / "check" / "equivalence" / "equivalence.csv")
    assert set(map(tuple, frame[["rule", "impl"]].drop_duplicates().values)) == set(rules.available())
    assert set(frame["layer"]) == {"fc", "conv"}
    fine = frame[frame["status"] == "ok"]
    assert (fine["error"] <= fine["tolerance"]).all() and len(fine) > 50
    assert set(frame[frame["status"] == "skipped"]["impl"]) <= {"fh-graph", "fh-triton"}  # GPU-only forms
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

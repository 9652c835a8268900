"""Numeric options: NaN and infinity are refused in one line (they used to pass every `<= 0` check
and disable the budgets), and env.json is strict JSON whatever the numbers in it."""

from __future__ import annotations

import json
import math

import pytest

from conftest import run_cli
from hebbbench import store

TINY = ["--config", "tests/data/tiny.toml", "--devices", "cpu", "--no-progress", "--no-report"]


@pytest.mark.parametrize("args, message", [
    (["run", *TINY, "--memory-budget", "nan"], "memory budget must be a finite size > 0, got 'nan'"),
    (["run", *TINY, "--memory-budget", "inf"], "memory budget must be a finite size > 0, got 'inf'"),
    (["run", *TINY, "--max-case-seconds", "nan"], "max-case-seconds must be a finite number > 0, got nan"),
    (["run", *TINY, "--case-seconds", "nan"], "timing: warmup_s >= 0, case_seconds > 0"),
    (["run", *TINY, "--case-seconds", "inf"], "timing: warmup_s >= 0, case_seconds > 0"),
    (["reproduce", "--devices", "cpu", "--max-naive-seconds", "nan"], "--max-naive-seconds must be a finite number"),
    (["reproduce", "--devices", "cpu", "--time-budget", "nan"], "--time-budget must be a finite number"),
    (["scale", "--warmup", "nan", "--world-sizes", "1"], "--warmup a finite number >= 0"),
    (["scale", "--timeout", "inf", "--world-sizes", "1"], "--timeout a finite number > 0"),
    (["scale", "--width", "nan", "--world-sizes", "1"], "width must be a finite number > 0, got nan"),
    (["scale", "--width", "inf", "--world-sizes", "1"], "width must be a finite number > 0, got inf"),
    (["compare", "results/baselines/ci-cpu", "results/baselines/ci-cpu", "--factor", "inf"],
     "--factor must be a finite number > 1"),
    (["compare", "results/baselines/ci-cpu", "results/baselines/ci-cpu", "--floor", "nan"],
     "--floor must be a finite number of seconds >= 0"),
    (["profile", "--rule", "hpca", "--layer", "linear:8,4", "--tool", "py-spy", "--seconds", "nan"],
     "--seconds a finite number > 0"),
])
def test_a_number_that_is_not_finite_is_refused_in_one_line(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parent.parent)
    code, _, err = run_cli(monkeypatch, capsys, *args, *(["--out", str(tmp_path / "set")]
                                                         if args[0] in ("run", "reproduce", "scale") else []))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "set").exists()  # refused before anything was written


def test_env_json_is_strict_json_whatever_numbers_it_holds(tmp_path):
    store.write_env(tmp_path, {"kind": "grid", "wall": math.nan, "nested": [{"peak": math.inf}, -math.inf, 1.5]})

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    env = json.loads((tmp_path / "env.json").read_text(), parse_constant=refuse)
    assert env == {"kind": "grid", "wall": None, "nested": [{"peak": None}, None, 1.5]}

"""hebbbench compare: the decision on seeded samples, errors (exit 2), and real timings:
a planted 2x slowdown of HPCA-fh is reported slower, identical code never is."""

from __future__ import annotations

import io
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from conftest import planted_slowdown, run_cli
import hebbbench
from hebbbench.gate.compare import Comparison, Verdict, compare, floor_for, judge, short_case_ids, table
from hebbbench.suites.workload import calibration_repeats
from hebbbench.errors import UserError
from hebbbench.measure.timing import Timing
from hebbbench.store import ResultSet

DATA = Path(__file__).parent / "data"
GATE, TINY = DATA / "gate.toml", DATA / "tiny.toml"


# -- the decision, on seeded samples ---------------------------------------------------------
def timed(rng, median, rounds=60, spread=0.05, levels=(1.0,)):
    """Samples of len(levels) processes, ``rounds`` each, process p's times scaled by levels[p]."""
    values = [median * level * rng.lognormal(0.0, spread, rounds) for level in levels]
    return Timing([float(v) for part in values for v in part],
                  [p for p in range(len(levels)) for _ in range(rounds)] if len(levels) > 1 else [])


@pytest.mark.parametrize("slowdown, spread, rounds, expected", [
    (2.0, 0.05, 60, "slower"),
    (0.5, 0.05, 60, "faster"),
    (1.0, 0.05, 60, "same"),
    (1.15, 0.05, 60, "same"),  # significant, but smaller than the factor
    (1.4, 1.0, 12, "inconclusive"),  # beyond the factor, but a dozen wild samples prove nothing
    (3.0, 0.05, 9, "inconclusive"),  # too few samples to judge
])
def test_judge_needs_the_factor_and_the_test(slowdown, spread, rounds, expected):
    rng = np.random.default_rng(0)
    cal_b, cal_n = timed(rng, 1e-3, rounds), timed(rng, 1e-3, rounds)
    verdict = judge(timed(rng, 2e-3, rounds, spread), cal_b, timed(rng, 2e-3 * slowdown, rounds, spread), cal_n)
    assert verdict["status"] == expected, verdict
    if spread < 0.5:
        assert verdict["ratio"] == pytest.approx(slowdown, rel=0.1)
    else:
        assert verdict["ratio"] > 1.25 and verdict["p_value"] > 0.01  # far off, and rightly not believed


def test_a_gpu_sized_slowdown_is_judged():
    """On a GPU a small case's call takes microseconds: with the CPU's 50 µs floor, and a calibration
    of 1e8 FLOP (2–15 µs on an H200), every such case was inconclusive and the gate could not fail.
    The floor is by device and the GPU calibration does 1e10 FLOP (or 64 products)."""
    rng = np.random.default_rng(4)
    cal_b, cal_n = timed(rng, 250e-6), timed(rng, 250e-6)  # the GPU calibration: about 0.2 ms
    base, slow = timed(rng, 12e-6), timed(rng, 24e-6)  # fh on a small layer, then 2x slower
    assert judge(base, cal_b, slow, cal_n, floor_s=floor_for("cuda:0", None))["status"] == "slower"
    assert judge(base, cal_b, slow, cal_n, floor_s=floor_for("cpu", None))["status"] == "inconclusive"
    assert floor_for("cuda:0", 1e-3) == 1e-3  # --floor wins
    # the calibration of the gate's smallest case (N = 8, M = 64, D = 75) on each device type
    assert calibration_repeats(8, 64, 75, "cpu") == 64 and calibration_repeats(8, 64, 75, "cuda") == 64
    assert 2.0 * 512 * 4096 * 576 * calibration_repeats(4096, 512, 576, "cuda") >= 1e10
    assert calibration_repeats(4096, 512, 576, "cpu") == 1


def test_judge_cancels_a_slower_machine_round_by_round():
    """Everything 3x slower, and a load burst over a third of the rounds: the same code is 'same'."""
    rng = np.random.default_rng(1)
    load = np.where(np.arange(60) % 3 == 0, 2.0, 1.0)
    cal_b, base = timed(rng, 1e-3), timed(rng, 2e-3)
    cal_n = Timing(list(3 * load * np.array(timed(rng, 1e-3).samples)))
    new = Timing(list(3 * load * np.array(timed(rng, 2e-3).samples)))
    assert judge(base, cal_b, new, cal_n)["status"] == "same"


def test_judge_counts_the_variation_between_processes():
    """Identical code whose processes land 1.6x apart (the allocator's luck): the runs' medians differ by
    ~1.3x and each run's rounds are tight, so a bootstrap over rounds alone calls it slower; over
    processes then rounds it is not believed. With processes that agree (as the pinned allocator makes
    them), a real 2x slowdown is slower."""
    rng = np.random.default_rng(3)
    cal = lambda levels: timed(rng, 1e-3, 30, levels=(1.0,) * len(levels))  # noqa: E731
    base_levels, new_levels = (1.0, 1.0, 1.6), (1.0, 1.6, 1.6)
    base, new = timed(rng, 2e-3, 30, 0.02, base_levels), timed(rng, 2e-3, 30, 0.02, new_levels)
    verdict = judge(base, cal(base_levels), new, cal(new_levels))
    assert verdict["ratio"] > 1.25 and verdict["status"] == "inconclusive", verdict
    flat = judge(Timing(base.samples), Timing(cal(base_levels).samples), Timing(new.samples),
                 Timing(cal(new_levels).samples))
    assert flat["status"] == "slower"  # what one process's worth of statistics concluded
    agree = (1.0, 1.03, 1.06)
    base, doubled = timed(rng, 2e-3, 30, 0.02, agree), timed(rng, 4e-3, 30, 0.02, agree[::-1])
    assert judge(base, cal(agree), doubled, cal(agree))["status"] == "slower"


def test_judge_does_not_judge_below_the_floor():
    rng = np.random.default_rng(2)
    verdict = judge(timed(rng, 2e-5), timed(rng, 1e-3), timed(rng, 8e-5), timed(rng, 1e-3))
    assert verdict["status"] == "inconclusive" and "below the floor" in verdict["note"]
    verdict = judge(timed(rng, 2e-5), timed(rng, 1e-3), timed(rng, 8e-5), timed(rng, 1e-3), floor_s=1e-5)
    assert verdict["status"] == "slower"


# -- errors are exit status 2, never a verdict ---------------------------------------------
@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory, flaky):
    """Real runs of the tiny grid: ok, another ok, one with a failed case, one of another grid."""
    root = tmp_path_factory.mktemp("tiny")
    kwargs = dict(config=TINY, rules=["hpca"], impls=["fh", "test-flaky"])
    hebbbench.run(out=root / "ok", **kwargs)
    hebbbench.run(out=root / "ok2", **kwargs)
    flaky.failing = True
    try:
        hebbbench.run(out=root / "failed", **kwargs)
    finally:
        flaky.failing = False
    hebbbench.run(out=root / "other", batch_sizes=[3, 4], **kwargs)
    return root


def run_compare(monkeypatch, capsys, *args):
    return run_cli(monkeypatch, capsys, "compare", *args)


def test_tiny_runs_are_not_judged(tiny_sets, monkeypatch, capsys):
    """Microseconds (below the floor) and one cycle of 6 rounds in one process (tiny.toml): every case inconclusive."""
    code, out, err = run_compare(monkeypatch, capsys, tiny_sets / "ok", tiny_sets / "ok2", "--markdown", "-")
    assert code == 0, err
    result = compare(tiny_sets / "ok", tiny_sets / "ok2")
    assert len(result.verdicts) == 4 * 2 * 2  # 4 layer × batch × 2 what, fh and test-flaky
    assert {v.status for v in result.verdicts} == {"inconclusive"}
    assert all("below the floor" in v.note or "fewer than 10" in v.note for v in result.verdicts)
    assert "### hebbbench compare: no regression (0 slower, 0 faster, 0 same, 16 inconclusive)" in out
    assert out.count("| inconclusive |") == 16
    assert "### hebbbench compare: no regression" in out and "| inconclusive |" in out


@pytest.mark.parametrize("baseline, new, message", [
    ("missing", "ok", "baseline {root}/missing does not exist"),
    ("ok", "missing", "new run {root}/missing does not exist"),
    ("ok", "other", "the runs have different grids (only in the baseline: t/hpca/conv/b2/float32/cpu/update [fh], "),
    ("ok", "other", "; only in the new run: t/hpca/conv/b4/float32/cpu/update [fh], "),
    ("ok", "failed", "8 case(s) did not run (status other than ok), so nothing is judged: new run: t/hpca/"),
    ("failed", "ok", "did not run (status other than ok), so nothing is judged: baseline: t/hpca/"),
])
def test_errors_exit_2_with_one_line(tiny_sets, monkeypatch, capsys, baseline, new, message):
    code, out, err = run_compare(monkeypatch, capsys, tiny_sets / baseline, tiny_sets / new)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(root=tiny_sets) in lines[0]
    if "did not run" in message:
        assert "[test-flaky] error (RuntimeError: injected failure)" in lines[0]
    assert out == ""  # no table, no verdict


def test_unfinished_uncalibrated_or_unwritable_are_errors(tiny_sets, flaky, tmp_path, monkeypatch, capsys):
    hebbbench.run(out=tmp_path / "cut", config=TINY, rules=["hpca"], impls=["fh", "test-flaky"])
    ResultSet(tmp_path / "cut").update_env(status="interrupted")  # what a Ctrl-C leaves
    code, _, err = run_compare(monkeypatch, capsys, tiny_sets / "ok", tmp_path / "cut")
    assert code == 2 and "is not a finished run (status 'interrupted')" in err
    ResultSet(tmp_path / "cut").update_env(status="complete", calibration=None)
    code, _, err = run_compare(monkeypatch, capsys, tmp_path / "cut", tiny_sets / "ok")
    assert code == 2 and "has no calibration samples" in err
    code, _, err = run_compare(monkeypatch, capsys, tiny_sets / "ok", tiny_sets / "ok2", "--factor", "1")
    assert code == 2 and "--factor must be a finite number > 1" in err
    code, out, err = run_compare(monkeypatch, capsys, tiny_sets / "ok", tiny_sets / "ok2",
                                 "--markdown", tmp_path / "nowhere" / "compare.md")
    assert code == 2 and "cannot write --markdown" in err and out == ""  # checked before comparing


# -- real timings ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gate_runs(tmp_path_factory):
    """Runs of tests/data/gate.toml, made on first use: ("baseline" | "again" | "planted", repeat) -> folder."""
    made = {}

    def get(kind: str, repeat: int) -> Path:
        if (kind, repeat) not in made:
            out = tmp_path_factory.mktemp(f"{kind}-{repeat}") / "run"
            with planted_slowdown() if kind == "planted" else nullcontext():
                hebbbench.run(config=GATE, out=out)
            made[(kind, repeat)] = out
        return made[(kind, repeat)]
    return get


def test_one_thread_while_timing_then_the_thread_count_is_restored(gate_runs):
    before = torch.get_num_threads()
    frame = ResultSet(gate_runs("baseline", 0)).frame()
    assert set(frame["threads"]) == {1}  # [timing] threads = 1
    assert torch.get_num_threads() == before


def test_planted_regression_is_reported_slower(gate_runs, repeat):
    result = compare(gate_runs("baseline", repeat), gate_runs("planted", repeat))
    statuses = {v.case_id: v.status for v in result.verdicts}
    assert len(statuses) == 4
    planted = {case_id: status for case_id, status in statuses.items() if case_id.startswith("hpca/")}
    assert set(planted.values()) == {"slower"} and len(planted) == 2, result.frame().to_string()
    assert "slower" not in {s for case_id, s in statuses.items() if case_id.startswith("swta/")}
    assert result.exit_code == 1


def test_identical_code_is_never_reported_slower(gate_runs, repeat):
    result = compare(gate_runs("baseline", repeat), gate_runs("again", repeat))
    assert not result.regressions, result.frame().to_string()
    assert result.exit_code == 0


def test_cli_exit_1_on_a_regression_and_markdown_for_the_pull_request(gate_runs, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "compare.md"
    code, out, err = run_compare(monkeypatch, capsys, gate_runs("baseline", 0), gate_runs("planted", 0),
                                 "--markdown", summary)
    assert code == 1, err
    assert "REGRESSION: 2 slower" in out
    text = summary.read_text()
    assert text.startswith("### hebbbench compare: REGRESSION: 2 slower")
    assert text.count("| **slower** | `hpca/hpca/") == 2
    code, _, err = run_compare(monkeypatch, capsys, gate_runs("baseline", 0), gate_runs("again", 0))
    assert code == 0, err


def test_terminal_table_fits_80_columns_with_shortened_case_ids(tmp_path):

    ids = ["hpca/hpca/fc/b8/float32/cpu/update", "swta/swta/fc/b8/float32/cpu/step"]
    assert short_case_ids(ids) == (["hpca/hpca/update", "swta/swta/step"], ["fc", "b8", "float32", "cpu"])
    assert short_case_ids(ids[:1]) == (ids[:1], [])  # one case: nothing to drop
    baseline = Path(__file__).resolve().parent.parent / "results" / "baselines" / "ci-cpu"
    console = Console(width=80, record=True, file=io.StringIO())
    copy = shutil.copytree(baseline, tmp_path / "copy")  # a folder compared with itself is refused
    console.print(table(compare(baseline, copy)))
    text = console.export_text()
    assert "hpca/hpca/conv/update" in text and "…" not in text
    assert "every case: b8 · float32 · cpu · fh" in " ".join(text.split())


def test_terminal_table_keeps_every_cell_whole_at_80_columns_in_the_widest_case():
    """Every status, p-values, µs and ms times, notes: nothing cropped, the notes under the table."""
    def verdict(case, status, p, note=""):
        return Verdict(f"{case}/b8/float32/cpu/update", "fh", status, 1.83, 1.71, 1.96, p, 1.96e-3, 675e-6,
                       20, 20, note)
    notes = ["not significantly beyond 1.25x", "below the floor: 41.2 µs < 50 µs"]
    c = Comparison(Path("a"), Path("b"), 1.25, 0.01, 50e-6, [
        verdict("hpca/hpca/conv", "slower", 0.0009), verdict("swta/swta/conv", "faster", 8e-5),
        verdict("hpca/hpca/fc", "inconclusive", 0.0312, notes[0]),
        verdict("swta/swta/fc", "inconclusive", float("nan"), notes[1]), verdict("krotov/krotov/fc", "same", 0.5)])
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(table(c))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if "hpca/hpca/conv" in line).split()
    assert row == ["slower", "hpca/hpca/conv", "1.83x", "1.71–1.96", "0.0009", "1.96", "ms", "675", "µs"]
    assert next(line for line in lines if line.startswith("inconclusive")).split()[1] == "hpca/hpca/fc"
    text = " ".join(" ".join(lines).split())
    assert all(f": {note}" in text for note in notes) and "every case: b8 · float32 · cpu · update · fh" in text
    assert "hebbbench compare: REGRESSION: 1 slower" in lines[0]  # the title on one line

"""The harness end to end: a real run of a tiny grid, statuses, resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import hebbbench
from conftest import run_cli as in_process
from hebbbench import cli, rules
from hebbbench.api import RunConfig
from hebbbench.store import CALIBRATION, CALIBRATION_KIND, COLUMNS, ResultSet

TINY = Path(__file__).parent / "data" / "tiny.toml"
CLI = [sys.executable, "-m", "hebbbench.cli"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    frame = hebbbench.run(config=TINY, out=out)
    return out, frame


def test_tiny_run_writes_every_case(tiny_run):
    out, frame = tiny_run
    assert list(pd.read_csv(out / "results.csv").columns) == COLUMNS
    assert len(frame) == 16 * 3  # 16 cases × (fh, loop, naive)
    assert set(frame["status"]) == {"ok"}
    assert not frame.duplicated(["case_id", "label"]).any()
    assert (frame["n_samples"] >= 3).all() and (frame["median_s"] > 0).all()
    assert (frame["error"] < 1e-5).all() and (frame["flops"] > 0).all()
    assert (frame["pct_of_attainable"] > 0).all()
    base = frame[frame["label"] == "naive(G=3)"]
    assert len(base) == 16 and (base["speedup"] == 1.0).all()
    fh = frame[frame["label"] == "fh"]
    assert len(fh) == 16
    assert ((fh["speedup_lo"] <= fh["speedup"]) & (fh["speedup"] <= fh["speedup_hi"])).all()
    assert set(frame["what"]) == {"update", "step"}


def test_tiny_run_samples_and_env(tiny_run):
    out, frame = tiny_run
    samples = ResultSet(out).samples()
    assert len(samples) == len(frame)
    row = frame.iloc[0]
    assert len(samples[(row["case_id"], row["label"])]) == row["n_samples"]
    env = json.loads((out / "env.json").read_text())
    assert env["schema_version"] == 1 and env["status"] == "complete"
    assert env["env"]["torch"] == torch.__version__ and env["env"]["seed"] == 0
    assert env["grid"]["sweep"][0]["layers"][0]["name"] == "conv"
    assert "cpu/float32" in env["ceilings"] and env["ceilings"]["cpu/float32"]["matmul_flop_per_s"] > 0
    assert env["finished_at"] and env["env"]["hebbbench_version"] == hebbbench.__version__


def test_every_case_has_calibration_samples_from_the_same_rounds(tiny_run):
    out, frame = tiny_run
    samples = ResultSet(out).samples(calibration=True)
    assert len(samples) == len(frame) + frame["case_id"].nunique()
    for case_id, part in frame.groupby("case_id"):
        calibration = samples[(case_id, CALIBRATION)]
        assert len(calibration) == part["n_samples"].iloc[0] and min(calibration) > 0
    assert json.loads((out / "env.json").read_text())["calibration"] == CALIBRATION_KIND


def test_existing_result_set_is_never_overwritten(tiny_run):
    out, _ = tiny_run
    before = (out / "results.csv").read_bytes()
    with pytest.raises(hebbbench.errors.UserError, match="already holds a result set"):
        hebbbench.run(config=TINY, out=out)
    assert (out / "results.csv").read_bytes() == before


class WrongHPCA(rules.HPCA):
    """Drops the tril(YᵀY)W term: fast and wrong."""

    def delta(self, x, y, w):
        return y.T @ x / x.shape[0]


class OutOfMemoryHPCA(rules.HPCA):
    def delta(self, x, y, w):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 PiB (injected)")


class GpuOnlyHPCA(rules.HPCA):
    device_types = ("cuda",)

    def delta(self, x, y, w):
        return rules.get("hpca").delta(x, y, w)


def test_wrong_oom_and_unsupported_are_rows_not_crashes(tmp_path, register):
    register("hpca", "test-wrong")(WrongHPCA)
    register("hpca", "test-oom")(OutOfMemoryHPCA)
    register("hpca", "test-gpu-only")(GpuOnlyHPCA)
    frame = hebbbench.run(config=TINY, out=tmp_path / "r", rules=["hpca"],
                          impls=["fh", "naive:group_size=3", "test-wrong", "test-oom", "test-gpu-only"])
    by = {label: part for label, part in frame.groupby("label")}
    assert set(by["test-wrong"]["status"]) == {"wrong"}
    assert by["test-wrong"]["median_s"].isna().all()
    assert by["test-wrong"]["reason"].str.contains("relative error").all()
    assert set(by["test-oom"]["status"]) == {"oom"}
    assert by["test-oom"]["reason"].str.contains("injected").all()
    assert set(by["test-gpu-only"]["status"]) == {"skipped"}
    assert by["test-gpu-only"]["reason"].str.contains("runs on cuda only").all()
    assert set(by["fh"]["status"]) == {"ok"} and set(by["naive(G=3)"]["status"]) == {"ok"}


def test_budgets_skip_with_reason(tmp_path):
    frame = hebbbench.run(config=TINY, out=tmp_path / "r", rules=["hpca"], impls=["fh"], memory_budget="1KiB")
    assert set(frame["status"]) == {"skipped"} and frame["reason"].str.contains("--memory-budget").all()
    frame = hebbbench.run(config=TINY, out=tmp_path / "s", rules=["hpca"], impls=["loop", "fh"],
                          max_case_seconds=1e-9)
    assert set(frame["status"]) == {"skipped"} and frame["reason"].str.contains("--max-case-seconds").all()


def run_cli(*args, cwd=None, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, **kwargs)


def test_resume_after_kill_neither_repeats_nor_misses(tmp_path):
    out = tmp_path / "killed"
    slow = TINY.read_text().replace("case_seconds = 0.05", "case_seconds = 0.25").replace(
        "max_rounds = 5", "max_rounds = 1000").replace("min_rounds = 3", "min_rounds = 1000")
    config = tmp_path / "slow.toml"
    config.write_text(slow)
    proc = subprocess.Popen([*CLI, "run", "--config", str(config), "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        lines = (out / "results.csv").read_text().count("\n") if (out / "results.csv").exists() else 0
        if lines >= 1 + 3 * 2:  # header and two finished cases
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = ResultSet(out).frame()
    assert 0 < len(partial) < 48 and len(partial) % 3 == 0
    with open(out / "results.csv", "a") as f:  # a row cut short by the kill
        f.write("1,run,t/hpca/cut")
    result = run_cli("run", "--resume", str(out), "--no-progress", cwd=tmp_path)  # its report goes to ./reports
    assert result.returncode == 0, result.stderr
    final = ResultSet(out).frame()
    assert len(final) == 48 and not final.duplicated(["case_id", "label"]).any()
    kept = final.set_index(["case_id", "label"]).loc[list(zip(partial["case_id"], partial["label"]))]
    assert list(kept["median_s"]) == list(partial["median_s"])  # finished cases were not re-timed
    assert len(ResultSet(out).samples()) == 48
    env = json.loads((out / "env.json").read_text())
    assert env["status"] == "complete"
    assert (tmp_path / "reports" / env["run_id"] / "report.md").is_file()


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'; allowed: beyond, ci, paper, quick, scaling"),
    (["--rules", "nope"], "unknown rule 'nope'"),
    (["--impls", "nope"], "unknown impl 'nope'"),
    (["--dtypes", "float8"], "unknown dtype 'float8'"),
    (["--batch-sizes", "0"], "batch sizes must be positive integers"),
    (["--impls", "naive:nosuch=1,fh"], "command line: naive:nosuch=1: unknown option 'nosuch' for naive; "
                                        "allowed: group_size"),
    (["--impls", "naive:group_size=x"], "command line: naive:group_size=x: group_size must be an integer, got 'x'"),
    (["--impls", "fh:group_size=8"], "command line: fh:group_size=8: unknown option 'group_size' for fh; "
                                     "allowed: none"),
    (["--rules", "swta:temperature=hot"], "swta:temperature=hot: temperature must be a number, got 'hot'"),
    (["--devices", "cuda:7"], "device 'cuda:7' is not available"),
    (["--devices", "tpu"], "unknown device 'tpu'"),
    (["--config", "missing.toml"], "config file missing.toml not found"),
    (["--config", "bad.toml"], "malformed TOML"),
    (["--memory-budget", "lots"], "memory budget 'lots' is not a size"),
    (["--resume", "nowhere"], "nowhere is not a result set"),
])
def test_bad_input_one_line_exit_2_results_untouched(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "bad.toml").write_text("rules = [")
    existing = tmp_path / "results" / "earlier"
    existing.mkdir(parents=True)
    (existing / "results.csv").write_text("precious\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["hebbbench", "run", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["earlier"]
    assert (existing / "results.csv").read_text() == "precious\n"


def test_removed_group_size_option_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = in_process(monkeypatch, capsys, "run", "--group-size", "8", "--no-report")
    assert code == 2 and "No such option: --group-size" in err, err
    assert not (tmp_path / "results").exists()


def test_options_on_the_command_line_and_resume_through_the_saved_settings(tmp_path, monkeypatch, capsys):
    """run --impls naive:group_size=2,fh end to end; --resume runs by the settings env.json holds."""
    out = tmp_path / "r"
    args = ["--config", TINY, "--rules", "hpca", "--impls", "naive:group_size=2,fh", "--what", "update",
            "--batch-sizes", "2", "--seed", "5", "--no-progress", "--no-report"]
    code, _, err = in_process(monkeypatch, capsys, "run", *args, "--out", out)
    assert code == 0, err
    frame = ResultSet(out).frame()
    assert sorted(set(frame["label"])) == ["fh", "naive(G=2)"] and set(frame["status"]) == {"ok"}
    assert set(frame["baseline"]) == {"naive(G=2)"}
    assert set(frame.loc[frame["impl"] == "naive", "impl_options"]) == {'{"group_size": 2}'}
    env = json.loads((out / "env.json").read_text())
    expected = RunConfig(config=str(TINY), rules=["hpca"], impls=["naive:group_size=2", "fh"], what=["update"],
                         batch_sizes=[2], seed=5)
    assert RunConfig.from_dict(env["settings"], "env.json") == expected and env["env"]["seed"] == 5
    # an interrupted run: only its first case written, and a setting changed in env.json, which --resume obeys
    first = frame["case_id"].iloc[0]
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join([lines[0], *(line for line in lines[1:] if f",{first}," in line)]))
    env["settings"]["max_case_seconds"] = 1e-9
    (out / "env.json").write_text(json.dumps(env))
    code, _, err = in_process(monkeypatch, capsys, "run", "--resume", out, "--seed", "5", "--no-report")
    assert code == 2 and "--resume continues a run with its own grid and settings" in err, err
    code, _, err = in_process(monkeypatch, capsys, "run", "--resume", out, "--no-progress", "--no-report")
    assert code == 0, err
    final = ResultSet(out).frame()
    assert len(final) == len(frame) and set(final.loc[final["case_id"] == first, "status"]) == {"ok"}
    rest = final[final["case_id"] != first]
    assert set(rest["status"]) == {"skipped"} and rest["reason"].str.contains("--max-case-seconds").all()
    # settings of another version are refused in one line, not guessed
    del env["settings"]["shard"]
    (out / "env.json").write_text(json.dumps(env))
    code, _, err = in_process(monkeypatch, capsys, "run", "--resume", out, "--no-progress", "--no-report")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "are not those this hebbbench records" in lines[0], err


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    result = run_cli("run", "--rules", "nope", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: command line: unknown rule 'nope'; allowed: ")
    assert "hpca" in lines[0] and "swta" in lines[0]
    assert not (tmp_path / "results").exists()


def test_worker_process_path_writes_the_same_rows(tmp_path):
    """The path each GPU takes when several run at once (a spawned worker per device), run on the CPU."""
    frame = hebbbench.run(config=TINY, out=tmp_path / "w", rules=["hpca"], impls=["fh", "naive"])
    assert len(frame) == 8 * 2 and set(frame["status"]) == {"ok"}
    env = json.loads((tmp_path / "w" / "env.json").read_text())
    assert "cpu/float32" in env["ceilings"] and not env.get("failures")


@pytest.mark.slow
def test_compile_time_is_reported_apart_from_timing(tmp_path):
    frame = hebbbench.run(config=TINY, out=tmp_path / "c", rules=["hpca"], impls=["fh", "fh-compiled"],
                          batch_sizes=[2])
    compiled = frame[frame["label"] == "fh-compiled"]
    assert set(compiled["status"]) == {"ok"} and (compiled["compile_s"] > 0).all()
    fh = frame[frame["label"] == "fh"]
    assert len(fh) == len(compiled) > 0 and fh["compile_s"].isna().all()


def test_gpu_only_implementations_are_skipped_with_a_reason_on_the_cpu(tmp_path):
    frame = hebbbench.run(config=TINY, out=tmp_path / "g", rules=["swta"], impls=["fh", "fh-graph", "fh-triton"],
                          batch_sizes=[2])
    gpu_only = frame[frame["impl"].isin(["fh-graph", "fh-triton"])]
    assert len(gpu_only) == 8 and set(gpu_only["status"]) == {"skipped"}
    assert gpu_only["reason"].str.contains("runs on cuda only").all()


def test_end_of_run_summary_shows_baseline_fh_and_best_within_80_columns():
    import io

    import pandas as pd
    from rich.console import Console

    from hebbbench.reports.summary import summary_frame, summary_tables

    rows = []
    for layer, fh_conv_s, compiled_s in [("conv2", 5e-4, 7e-4),  # clearly faster than fh
                                         ("conv3", 0.97e-3, 0.99e-3)]:  # within fh's noise
        for label, median in [("naive(G=8)", 8e-3), ("fh", 1e-3), ("fh-conv", fh_conv_s), ("fh-compiled", compiled_s),
                              ("autograd", 2e-3)]:
            rows.append(dict(device="cpu", dtype="float32", rule="hpca", layer=layer, batch=64, what="update",
                             label=label, baseline="naive(G=8)", status="ok", median_s=median, q1_s=0.95 * median,
                             q3_s=1.05 * median, noisy=label == "fh", speedup=8e-3 / median))
    frame = summary_frame(pd.DataFrame(rows))
    assert list(frame.columns) == ["device", "dtype", "rule", "layer", "batch", "what", "naive(G=8)", "fh", "fh x",
                                   "best", "best x"]
    clear, noise = frame.iloc[0], frame.iloc[1]
    assert (clear["naive(G=8)"], clear["fh"], clear["fh x"], clear["best"], clear["best x"]) == \
        ("8 ms", "1 ms~", "8.0x", "fh-conv", "16.0x")
    assert (noise["best"], noise["best x"]) == ("fh", "8.0x")  # 3 % faster, inside fh's IQR: not a pick
    console = Console(width=80, record=True, file=io.StringIO())
    for table in summary_tables(pd.DataFrame(rows)):
        console.print(table)
    text = console.export_text()
    assert "…" not in text and "16.0x" in text and "fh-conv" in text


def test_an_implementation_running_fh_code_is_not_timed_next_to_fh(tmp_path):
    """fh-conv on a linear layer is fh's code: skipped, saying so, where fh is timed; timed where fh is not."""
    frame = hebbbench.run(config=TINY, out=tmp_path / "a", rules=["hpca"], impls=["fh", "fh-conv"], batch_sizes=[2])
    fh_conv = frame[frame["impl"] == "fh-conv"].set_index(["layer", "what"])
    assert set(fh_conv.loc["conv", "status"]) == {"ok"}
    assert set(fh_conv.loc["fc", "status"]) == {"skipped"}
    assert fh_conv.loc["fc", "reason"].str.fullmatch("on a linear layer fh-conv runs fh's code, timed in this "
                                                     "case already").all()
    alone = hebbbench.run(config=TINY, out=tmp_path / "b", rules=["hpca"], impls=["fh-conv"], batch_sizes=[2])
    assert set(alone["status"]) == {"ok"} and len(alone) == 4

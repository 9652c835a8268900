"""hebbbench scale end to end: real gloo processes on the CPU, its result set and report, its refusals,
and the torchrun entry point on one node and on two (simulated on this machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, spy_step_forms
from hebbbench import cli
from hebbbench.measure.devices import cuda_count
from hebbbench.nn.networks import layer_shapes, scale_spec
from hebbbench.nn.parallel import Comm
from hebbbench.reports import scale as scale_report
from hebbbench.suites.scale import COLUMNS, ScaleConfig, available_cores, measure

#: a very small 6-layer net: conv 3→6 k5, 6→8, 8→12, 12→16, fc 144→256.
SMALL = ["--width", "0.0625", "--batch", "4", "--steps", "2", "--warmup", "0"]
SHAPES = layer_shapes(scale_spec("6layer", width=0.0625, batch_size=4))
TIMEOUT = 240


def read(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "results.csv")


def report_of(folder: Path) -> Path:
    """Where the command wrote the set's report: ./reports/<run-id>/ of the folder it ran in (the set's parent)."""
    return folder.parent / "reports" / folder.name


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """A real ``hebbbench scale`` run: world sizes 1 and 2, both paper rules, fh and naive with G = 4."""
    out = tmp_path_factory.mktemp("scale") / "set"
    proc = subprocess.run([sys.executable, "-m", "hebbbench.cli", "scale", *SMALL, "--rules", "swta,hpca",
                           "--impls", "fh,naive:group_size=4", "--world-sizes", "1,2", "--out", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.parametrize("impl", ["fh-compiled", "fh-graph"])
def test_scale_times_the_whole_step_forms(monkeypatch, impl):
    """Every warm-up and timed step runs each layer's step in the implementation's own form (wrap_step)."""
    forms = spy_step_forms(monkeypatch, impl)
    config = ScaleConfig(width=0.0625, batch=4, steps=2, warmup_s=0, rules=("swta",), impls=(impl,),
                         world_sizes=(1,))
    [result] = measure(Comm(), config, "cpu")
    assert result["status"] == "ok", result["reason"]
    steps = result["warmup_steps"] + config.steps
    assert len({id(layer) for layer in forms}) == len(SHAPES)
    assert forms == forms[:len(SHAPES)] * steps  # every step: each layer's form once, bottom to top


def test_scale_writes_one_row_per_world_size_rule_and_impl(scaled):
    out, _ = scaled
    frame = read(out)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 8 and set(frame["status"]) == {"ok"}, frame[["status", "reason"]]
    assert sorted(zip(frame["world_size"], frame["rule"], frame["label"])) == sorted(
        (w, r, i) for w in (1, 2) for r in ("swta", "hpca") for i in ("fh", "naive(G=4)"))
    assert set(zip(frame["impl"], frame["impl_options"])) == {("fh", "{}"), ("naive", '{"group_size": 4}')}
    assert set(frame["case_id"]) == {f"6layer/{r}/strong/w{w}/b4/float32/cpu/step" for w in (1, 2)
                                     for r in ("swta", "hpca")}
    assert set(frame["baseline"]) == {"naive(G=4)"} and set(frame["what"]) == {"step"}
    assert set(frame["n_samples"]) == {2} and not frame.duplicated(["case_id", "label"]).any()
    assert set(frame["global_batch"]) == {4}  # strong scaling: the global batch is fixed
    assert dict(zip(frame["world_size"], frame["rank_batch"])) == {1: 4, 2: 2}
    cores = available_cores()
    assert dict(zip(frame["world_size"], frame["threads_per_rank"])) == {1: cores, 2: max(1, cores // 2)}
    assert set(frame["backend"]) == {"gloo"} and set(frame["launcher"]) == {"local"}


def test_scale_derives_throughput_and_efficiency_from_the_step_times(scaled):
    frame = read(scaled[0])
    assert (frame["throughput_img_s"] - frame["global_batch"] / frame["median_s"]).abs().max() < 1e-6
    for (rule, impl), part in frame.groupby(["rule", "label"]):
        one = part[part["world_size"] == 1].iloc[0]
        two = part[part["world_size"] == 2].iloc[0]
        assert one["efficiency"] == 1.0
        assert two["efficiency"] == pytest.approx(two["throughput_img_s"] / (2 * one["throughput_img_s"]))
        assert 0 <= two["comm_share"] <= 1 and two["median_comm_s"] > 0
        assert one["comm_share"] == 0 and one["comm_calls_per_step"] == 0


def test_scale_speedup_is_the_baselines_median_step_over_this_rows(scaled):
    """As in a grid set: median(baseline)/median(row) at the same case (device, world size, rule),
    from the step times in samples.jsonl (a step's time: the slowest rank's)."""
    out, _ = scaled
    frame = read(out)
    records = {(r["case_id"], r["label"]): np.max(r["step_s"], axis=0)
               for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    for _, row in frame.iterrows():
        mine, base = records[(row["case_id"], row["label"])], records[(row["case_id"], row["baseline"])]
        assert row["median_s"] == pytest.approx(np.median(mine), rel=1e-12)
        assert row["speedup"] == pytest.approx(np.median(base) / np.median(mine), rel=1e-12)
        assert row["speedup_lo"] <= row["speedup"] <= row["speedup_hi"]


def test_a_scale_set_with_the_older_columns_reads_as_its_migrated_copy(tmp_path):
    """tests/data/scale-set-v1 is the committed scale set as written before the key columns; results/
    holds it migrated: both read to the same rows, and their reports say the same."""
    older = Path(__file__).parent / "data" / "scale-set-v1"
    migrated = Path(__file__).parents[1] / "results" / "scale-6layer-cpu-20261130-040833"
    assert "median_step_s" in pd.read_csv(older / "results.csv").columns
    _, old_rows = scale_report.read(older)
    _, new_rows = scale_report.read(migrated)
    pd.testing.assert_frame_equal(old_rows, new_rows, check_dtype=False)
    assert list(new_rows.columns) == COLUMNS
    texts = [scale_report.write_report(source, tmp_path / name).markdown.read_text()
             for source, name in ((older, "a"), (migrated, "b"))]
    assert texts[0] == texts[1] and "| cpu | 1 | swta | fh | 64 | 64 | 2 | 347 ms" in texts[0]


def test_scale_counts_the_traffic_and_checks_the_weights(scaled):
    frame = read(scaled[0])
    two = frame[frame["world_size"] == 2]
    update = 4 * sum(s.m * s.d + 1 for s in SHAPES)
    batchnorm = 8 * sum(2 * s.m + 1 for s in SHAPES)
    assert set(two["comm_calls_per_step"]) == {1 + len(SHAPES)}  # one bucket, one per batch norm
    assert set(two["update_bytes_per_step"]) == {update}
    assert set(two["comm_bytes_per_step"]) == {update + batchnorm}
    assert frame["in_sync"].all()
    assert (two["rel_diff_vs_w1"] < 1e-4).all(), two[["rule", "impl", "rel_diff_vs_w1"]]
    assert frame.loc[frame["world_size"] == 1, "rel_diff_vs_w1"].isna().all()


def test_scale_keeps_every_ranks_samples_and_its_environment(scaled):
    out, _ = scaled
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for r in records:
        assert len(r["step_s"]) == r["world_size"] and all(len(steps) == 2 for steps in r["step_s"])
    env = json.loads((out / "env.json").read_text())
    assert env["kind"] == "scale" and env["status"] == "complete" and env["config"]["scaling"] == "strong"
    assert env["env"]["torch"] and env["threads_per_rank"] == {"cpu/w1": available_cores(),
                                                               "cpu/w2": max(1, available_cores() // 2)}


def test_scale_report_has_figure_table_and_communication_per_layer(scaled, tmp_path, monkeypatch, capsys):
    out, proc = scaled
    report = report_of(out)
    for name in ("scale.png", "scale.svg", "report.md"):
        assert (report / name).is_file(), name
        assert not (out / name).exists(), f"{name} written into the result set too"
    image = matplotlib.image.imread(report / "scale.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 900
    svg = (report / "scale.svg").read_text()
    assert "throughput (images/s" in svg and "world size w (processes)" in svg
    text = (report / "report.md").read_text()
    assert "**Strong scaling**" in text and "![throughput" in text
    assert text.count("| cpu | 2 |") == 4 and "fc5" in text and "M·D + 1" in text
    assert "hpca/naive(G=4) GFLOP per rank" in text and "speedup over naive(G=4)" in text
    assert f"results in {out}" in proc.stdout and "report in reports/set" in proc.stdout
    # hebbbench report rewrites a scale set's report, elsewhere when asked
    code, stdout, err = run_cli(monkeypatch, capsys, "report", str(out), "--out", str(tmp_path / "again"))
    assert code == 0, err
    assert (tmp_path / "again" / "report.md").read_text().count("| cpu | 2 |") == 4


def test_a_scale_set_is_not_merged_with_others(scaled, tmp_path, monkeypatch, capsys):
    from hebbbench.errors import UserError
    from hebbbench.reports import load

    out, _ = scaled
    with pytest.raises(UserError, match=r"is a scale result set \(hebbbench scale\); a report of several sets takes"):
        load.load([out])
    code, _, err = run_cli(monkeypatch, capsys, "report", str(out), str(out), "--out", str(tmp_path / "r"))
    one_line_error(code, err, "is a scale result set: its report is built from it alone")


def test_a_world_size_that_fails_leaves_error_rows_and_a_report(tmp_path):
    """Ranks past --timeout are ended; their cases become rows with the reason, the run goes on."""
    out = tmp_path / "failed"
    proc = subprocess.run([sys.executable, "-m", "hebbbench.cli", "scale", *SMALL, "--rules", "hpca", "--impls",
                           "fh,naive", "--world-sizes", "1", "--timeout", "0.5", "--out", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frame = read(out)
    assert list(frame["status"]) == ["error", "error"]
    assert frame["reason"].str.contains("still running after 0.5 s; ended").all()
    env = json.loads((out / "env.json").read_text())
    assert env["status"] == "complete" and len(env["failures"]) == 1
    text = (report_of(out) / "report.md").read_text()
    assert "| **error**: rank" in text and "*Not drawn:* no case was timed." in text


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


def test_scale_refuses_more_ranks_than_gpus(tmp_path, monkeypatch, capsys):
    too_many = cuda_count() + 1
    code, _, err = run_cli(monkeypatch, capsys, "scale", "--devices", "cuda", "--world-sizes", f"1,{too_many}",
                           "--out", str(tmp_path / "x"))
    one_line_error(code, err, f"world size {too_many} needs {too_many} GPUs", f"torch sees {cuda_count()}")
    assert not (tmp_path / "x").exists()


def test_scale_refuses_a_world_size_far_beyond_the_cores(tmp_path, monkeypatch, capsys):
    """--world-sizes 64 on 2 cores showed no progress for minutes: it is refused before any process starts."""
    too_many = 4 * available_cores() + 1
    code, _, err = run_cli(monkeypatch, capsys, "scale", "--devices", "cpu", "--world-sizes", f"1,{too_many}",
                           "--batch", str(too_many), "--out", str(tmp_path / "x"))
    one_line_error(code, err, f"world size {too_many} would run {too_many} processes on {available_cores()} cores")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, needle", [
    (["--scaling", "sideways"], "unknown scaling 'sideways'"),
    (["--batch", "1", "--world-sizes", "1,2"], "cannot be split over 2 ranks"),
    (["--impls", "nope"], "unknown impl 'nope'"),
    (["--impls", "fh,naive:group_size=x"], "--impls: naive:group_size=x: group_size must be an integer, got 'x'"),
    (["--impls", "fh:group_size=8"], "--impls: fh:group_size=8: unknown option 'group_size' for fh; allowed: none"),
    (["--devices", "tpu"], "unknown device 'tpu'"),
    (["--world-sizes", "0"], "world sizes must be positive"),
])
def test_scale_refuses_bad_options_in_one_line(tmp_path, monkeypatch, capsys, args, needle):
    code, _, err = run_cli(monkeypatch, capsys, "scale", *args, "--out", str(tmp_path / "x"))
    one_line_error(code, err, needle)


def test_rank_entry_point_outside_torchrun_is_one_line_exit_2():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "hebbbench.distributed", "scale"], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    one_line_error(proc.returncode, proc.stderr, "runs one rank under torchrun")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
RANK_ARGS = ["-m", "hebbbench.distributed", "scale", *SMALL]


@pytest.mark.slow
def test_torchrun_on_one_node_runs_every_world_size_as_a_subgroup(tmp_path):
    out = tmp_path / "one-node"
    proc = subprocess.run([*TORCHRUN, "--standalone", "--nproc-per-node", "2", *RANK_ARGS, "--rules", "swta,hpca",
                           "--impls", "fh-auto", "--out", str(out)], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = read(out)
    assert list(frame["world_size"]) == [1, 2] and set(frame["status"]) == {"ok"}  # default: up to torchrun's 2
    assert set(zip(frame["rule"], frame["label"])) == {("hpca", "fh-auto")}  # swta has no fh-auto
    assert set(frame["launcher"]) == {"torchrun"} and frame["in_sync"].all()
    assert frame.loc[frame["world_size"] == 2, "rel_diff_vs_w1"].iloc[0] < 1e-4
    assert (report_of(out) / "report.md").is_file() and (report_of(out) / "scale.png").is_file()


@pytest.mark.slow
def test_torchrun_across_two_nodes_with_weak_scaling(tmp_path):
    """Two torchrun launches, --nnodes 2 and --node-rank 0/1, meeting at one address: the multi-node path."""
    out, port = tmp_path / "two-nodes", free_port()
    procs = [subprocess.Popen([*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                               "--master-addr", "127.0.0.1", "--master-port", str(port), *RANK_ARGS,
                               "--rules", "swta", "--impls", "fh", "--scaling", "weak", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for rank in (0, 1)]
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for _, e in outputs]
    frame = read(out)
    assert list(frame["world_size"]) == [1, 2] and set(frame["status"]) == {"ok"}
    assert dict(zip(frame["world_size"], frame["global_batch"])) == {1: 4, 2: 8}  # weak: 4 images per rank
    assert set(frame["rank_batch"]) == {4} and frame["rel_diff_vs_w1"].isna().all()


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
DOC = README[README.index("## Scaling out"):README.index("## Layout")]


def test_documented_scale_and_shard_commands_use_existing_options():
    """Every option after `hebbbench scale`, `-m hebbbench.distributed scale`, `run` or `report` in the README's "Scaling out" exists."""
    import typer.main

    commands = {c.name: c for c in typer.main.get_command(cli.app).commands.values()}
    text = DOC.replace("\\\n", " ")
    checked = 0
    for line in text.splitlines():
        for name in ("scale", "run", "report"):
            for prefix in (f"hebbbench {name} ", f"-m hebbbench.distributed {name} "):
                if prefix not in line:
                    continue
                known = {opt for p in commands[name].params for opt in getattr(p, "opts", ()) if opt.startswith("--")}
                for option in (w for w in line.split(prefix, 1)[1].split() if w.startswith("--")):
                    assert option in known, f"{line.strip()}: {option} is not an option of hebbbench {name}"
                    checked += 1
    assert checked >= 20


def test_documented_communication_table_matches_the_cost_model():
    from hebbbench.nn.networks import get_spec
    from hebbbench.suites.scale import communication_table

    table = communication_table(get_spec("6layer"), 64, [("swta", "fh"), ("hpca", "fh")])
    assert f"| step | | | | {table['update_bytes'].sum() / 1e6:.1f} MB" in DOC
    fc5 = table[table["layer"] == "fc5"].iloc[0]
    assert f"| fc5 | 64 | 4,096 | 2,304 | {fc5['update_bytes'] / 1e6:.1f} MB | {fc5['swta/fh w=1 gflop']:.2f} | " \
           f"{fc5['hpca/fh w=1 gflop']:.1f} |" in DOC

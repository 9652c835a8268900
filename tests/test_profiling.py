"""hebbbench profile: layer specs, the torch profiler's trace of the timed call, py-spy, bad input."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli
from hebbbench import profiling
from hebbbench.errors import UserError


@pytest.mark.parametrize("text, expected", [
    ("conv:96,128,3,14", dict(kind="conv", in_channels=96, out_channels=128, kernel_size=3, input_size=(14, 14))),
    ("conv:3,64,3,224,1,1", dict(kind="conv", in_channels=3, kernel_size=3, stride=1, padding=1)),
    ("conv:3,8,3,12x10,2", dict(kind="conv", input_size=(12, 10), stride=2)),
    ("linear:2304,4096", dict(kind="linear", in_features=2304, out_features=4096)),
    ("paper:6layer/conv2", dict(kind="conv", in_channels=96, out_channels=128, kernel_size=3, input_size=(14, 14))),
])
def test_layer_specs(text, expected):
    spec, batch = profiling.parse_layer(text)
    assert {k: getattr(spec, k) for k in expected} == expected
    assert batch == (64 if text.startswith("paper:") else None)


@pytest.mark.parametrize("text, message", [
    ("conv:96,128,3", "conv takes C_in,C_out,kernel,input"),
    ("linear:10,x", "'x' is not an integer"),
    ("mlp:10,10", "unknown kind 'mlp'"),
    ("paper:6layer/conv9", "no layer 'conv9' in sweep '6layer'; allowed: conv1"),
    ("paper:imagenet/conv1", "sweeps of paper: 6layer, 10layer, vgg11"),
    ("conv:3,8,5,3", "smaller than the kernel"),
])
def test_bad_layer_specs(text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        profiling.parse_layer(text)


def test_profile_torch_writes_a_chrome_trace_of_the_timed_call(tmp_path, monkeypatch, capsys):
    out = tmp_path / "prof"
    code, stdout, err = run_cli(monkeypatch, capsys, "profile", "--rule", "hpca", "--impl", "naive:group_size=2",
                                "--layer", "linear:12,5", "--batch", "3",
                                "--device", "cpu", "--tool", "torch", "--repeat", "2", "--out", str(out))
    assert code == 0, err
    trace = json.loads((out / "trace.json").read_text())
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert "hebbbench.call hpca/naive(G=2)" in names
    table = (out / "key_averages.txt").read_text()
    assert table.startswith("profile/hpca/fc 12->5/b3/float32/cpu/update naive(G=2): 2 calls profiled")
    assert "Self CPU" in stdout
    assert json.loads((out / "case.json").read_text())["options"] == {"group_size": 2}


def test_profile_step_and_a_conv_layer_with_a_rule_option(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "profile", "--rule", "swta:temperature=0.05", "--layer",
                           "conv:2,4,3,5,1,1", "--batch", "2", "--what", "step", "--device", "cpu", "--repeat", "1",
                           "--out", str(tmp_path / "p"))
    assert code == 0, err
    names = {event.get("name", "") for event in json.loads((tmp_path / "p" / "trace.json").read_text())["traceEvents"]}
    assert "hebbbench.call swta(T=0.05)/fh" in names
    case = json.loads((tmp_path / "p" / "case.json").read_text())
    assert (case["rule"], case["impl"], case["options"]) == ("swta", "fh", {"temperature": 0.05})


def test_profile_without_py_spy_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(profiling, "find_py_spy", lambda: None)
    code, _, err = run_cli(monkeypatch, capsys, "profile", "--rule", "hpca", "--layer", "linear:8,4", "--batch", "2",
                           "--tool", "py-spy", "--out", str(tmp_path / "p"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "pip install 'hebbbench[profile]'" in lines[0]
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args, message", [
    (["--tool", "perf"], "unknown tool 'perf'; allowed: torch, py-spy"),
    (["--impl", "fast"], "unknown impl 'fast' for rule 'hpca'"),
    (["--impl", "naive:group_size=0"], "--impl: naive:group_size=0: group_size must be an integer >= 1"),
    (["--impl", "naive:group_size=x"], "--impl: naive:group_size=x: group_size must be an integer, got 'x'"),
    (["--impl", "naive:nosuch=1"], "--impl: naive:nosuch=1: unknown option 'nosuch' for naive; allowed: group_size"),
    (["--impl", "fh:group_size=8"], "--impl: fh:group_size=8: unknown option 'group_size' for fh; allowed: none"),
    (["--impl", "naive:nope"], "--impl: naive:nope: expected impl:key=value[;key=value]"),
    (["--rule", "hpca:temperature=0.1"], "--rule: hpca:temperature=0.1: unknown option 'temperature' for hpca; "
                                         "allowed: none"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--batch", "0"], "batch size must be a positive integer, got 0"),
])
def test_profile_bad_input_is_one_line_exit_2(monkeypatch, capsys, args, message):
    code, _, err = run_cli(monkeypatch, capsys, "profile", "--rule", "hpca", "--layer", "linear:8,4", "--batch", "2",
                           *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err


@pytest.mark.parametrize("removed", [["--option", "group_size=8"], ["-o", "group_size=8"]])
def test_removed_option_flags_are_usage_errors(tmp_path, monkeypatch, capsys, removed):
    code, _, err = run_cli(monkeypatch, capsys, "profile", "--rule", "hpca", "--impl", "naive", "--layer",
                           "linear:8,4", "--batch", "2", *removed, "--out", str(tmp_path / "p"))
    assert code == 2 and "No such option" in err and removed[0] in err, err
    assert not (tmp_path / "p").exists()


@pytest.mark.skipif(profiling.find_py_spy() is None, reason="py-spy is not installed (the profile extra)")
def test_profile_py_spy_records_speedscope_and_flame_graph(tmp_path):
    target = profiling.Target("hpca", "fh", profiling.parse_layer("linear:16,8")[0], batch=4)
    try:
        files = profiling.profile_py_spy(target, tmp_path, seconds=0.3)
    except UserError as exc:
        if "ptrace" not in str(exc):
            raise
        pytest.skip(f"no permission to trace processes here: {exc}")
    speedscope, svg = files
    frames = {f["name"] for f in json.loads(speedscope.read_text())["shared"]["frames"]}
    assert "call_once" in frames
    assert svg.read_text().lstrip().startswith("<?xml")

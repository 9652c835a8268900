"""Every case measured in several fresh worker processes (hebbbench/runner.py): samples keep their
process, each process has its own order, the allocator policy and subnormal flushing reach the
workers and are recorded, a killed run resumes from the processes already measured, a worker that
dies is a recorded failure, and implementations registered at run time travel to the workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hebbbench
from conftest import CRASH, POISON, Crash, Poison, run_cli
from hebbbench import rules
from hebbbench.errors import UserError
from hebbbench.measure import conditions
from hebbbench.measure.timing import Timing
from hebbbench.runner import process_order
from hebbbench.store import CALIBRATION, MEASURED, ResultSet
from hebbbench.suites.grid import load_grid

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.toml"
CLI = [sys.executable, "-m", "hebbbench.cli"]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("processes") / "two"
    hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "naive:group_size=3"], what=["update"],
                  processes=2)
    return out


def test_samples_keep_their_process_and_rows_pool_them(two_processes):
    rs = ResultSet(two_processes)
    frame = rs.frame()
    assert len(frame) == 4 * 2 and set(frame["processes"]) == {2} and (frame["status"] == "ok").all()
    records = rs.sample_records(calibration=True)
    for (case_id, label), record in records.items():
        timing = Timing.from_record(record)
        assert sorted(set(timing.process)) == [0, 1] and len(timing.faults) == len(timing.samples)
        # the calibration and every implementation of a case come from the same rounds of each process
        calibration = Timing.from_record(records[(case_id, CALIBRATION)])
        assert timing.process == calibration.process
    row = frame.iloc[0]
    timing = Timing.from_record(records[(row["case_id"], row["label"])])
    assert row["median_s"] == pytest.approx(timing.median) and row["n_samples"] == len(timing.samples)
    assert row["process_spread"] == pytest.approx(timing.columns()["process_spread"])
    assert not (two_processes / MEASURED).exists()  # a complete set keeps only its final files


def test_the_workers_run_with_the_allocator_policy_and_record_it(two_processes, tmp_path):
    env = json.loads((two_processes / "env.json").read_text())
    workers = env["conditions"]["processes"]
    assert env["conditions"]["allocator"] == "pinned" and [w["process"] for w in workers] == [0, 1]
    for worker in workers:
        assert worker["allocator_info"]["settings"]["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
        assert worker["allocator"] == "pinned" and worker["page_fault_s"] > 0
    assert env["conditions"]["subnormals"] == conditions.SUBNORMALS
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ  # set only while the workers start
    out = tmp_path / "system"
    hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh"], what=["update"], batch_sizes=[2],
                  allocator="system")
    env = json.loads((out / "env.json").read_text())
    assert env["conditions"]["allocator"] == "system"
    assert "MALLOC_MMAP_THRESHOLD_" not in env["conditions"]["processes"][0]["allocator_info"]["settings"]


def test_an_unknown_allocator_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "run", "--config", TINY, "--allocator", "jemalloc", "--out",
                             tmp_path / "x")
    assert code == 2 and "allocator must be one of pinned, system" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    for bad in ("0", "-1", "101"):
        code, out, err = run_cli(monkeypatch, capsys, "run", "--config", TINY, "--processes", bad, "--out",
                                 tmp_path / "y")
        assert code == 2 and "processes must be an integer from 1 to 100" in err


def test_each_process_measures_the_cases_in_its_own_order():
    cases = load_grid(None, TINY).expand()
    orders = [[c.case_id for c in process_order(cases, seed=0, process=p)] for p in range(3)]
    assert all(sorted(order) == sorted(c.case_id for c in cases) for order in orders)
    assert len({tuple(order) for order in orders}) == 3
    assert orders[1] == [c.case_id for c in process_order(cases, seed=0, process=1)]  # from the seed
    assert orders[1] != [c.case_id for c in process_order(cases, seed=1, process=1)]


def test_subnormals_are_flushed_while_measuring_and_restored_after():
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # subnormal in float32
    with conditions.flushed_subnormals() as supported:
        if not supported:
            pytest.skip("this CPU cannot flush subnormals (torch.set_flush_denormal returned False)")
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0


def test_a_run_killed_between_processes_resumes_from_what_each_measured(tmp_path):
    """Killed after the first process measured some cases: the resumed run measures the rest of the
    first process and all of the second, and no (case, process) twice."""
    out = tmp_path / "killed"
    config = tmp_path / "slow.toml"
    config.write_text(TINY.read_text().replace("processes = 1", "processes = 2").replace(
        "case_seconds = 0.05", "case_seconds = 0.3").replace("max_rounds = 5", "max_rounds = 1000").replace(
        "min_rounds = 3", "min_rounds = 1000"))
    proc = subprocess.Popen([*CLI, "run", "--config", str(config), "--out", str(out), "--no-progress",
                             "--no-report", "--rules", "hpca", "--impls", "fh,naive:group_size=3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / MEASURED).exists() and (out / MEASURED).read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    measured = ResultSet(out).measured()
    assert 3 <= sum(len(p) for p in measured.values()) < 8 and ResultSet(out).frame().empty
    with open(out / MEASURED, "a") as f:  # a line cut short by the kill
        f.write('{"case_id": "t/hpca/cut", "process": 0, "ro')
    time.sleep(1.0)  # the killed run's worker follows its parent
    result = subprocess.run([*CLI, "run", "--resume", str(out), "--no-progress", "--no-report"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rs = ResultSet(out)
    final = rs.frame()
    assert len(final) == 8 * 2 and not final.duplicated(["case_id", "label"]).any()
    assert set(final["processes"]) == {2}
    for (case_id, label), record in rs.sample_records().items():
        timing = Timing.from_record(record)
        kept = measured.get(case_id, {}).get(0)
        if kept is not None:  # the first process's samples of a case measured before the kill are kept
            assert timing.groups()[0].tolist() == kept["timings"][label]["samples"]


def test_a_worker_that_dies_is_a_failure_and_the_run_goes_on(tmp_path, monkeypatch):
    """A worker process that exits mid-case (segfault, OOM killer): the run records the failure, the
    case it was measuring gets error rows, and a fresh worker measures the cases after it."""
    monkeypatch.setenv(CRASH, "2")  # dies on the fully connected layer at batch 2 (N = 2) only
    out = tmp_path / "crash"
    with rules.registered("hpca", "test-crash", Crash):
        frame = hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "test-crash"], what=["update"],
                              batch_sizes=[2, 3])
    env = json.loads((out / "env.json").read_text())
    assert env["status"] == "complete"
    assert [f for f in env["failures"] if "its worker process died (exit code 3)" in f] != []
    assert len(frame) == 4 * 2
    lost = frame[(frame["layer"] == "fc") & (frame["batch"] == 2)]
    assert set(lost["status"]) == {"error"}
    assert lost["reason"].str.contains("its worker process died while measuring it").all()
    assert set(frame.drop(lost.index)["status"]) == {"ok"}  # the run went on after the death


def test_a_device_that_fails_outside_a_variant_costs_its_case_and_a_fresh_worker_goes_on(tmp_path, monkeypatch):
    """A sticky device error met by the release after a case (a synchronisation outside any variant's
    try) once ended the worker and lost its remaining cases: now that case is an error in that process
    and a fresh worker (a fresh device context) measures the rest."""
    monkeypatch.setenv(POISON, "2")  # the fully connected layer at batch 2
    out = tmp_path / "poison"
    with rules.registered("hpca", "test-poison", Poison):
        frame = hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "test-poison"], what=["update"],
                              batch_sizes=[2, 3])
    env = json.loads((out / "env.json").read_text())
    assert [f for f in env["failures"] if "the device failed" in f and "illegal memory access" in f] != []
    lost = frame[(frame["layer"] == "fc") & (frame["batch"] == 2)]
    assert set(lost["status"]) == {"error"} and lost["reason"].str.contains("the device failed").all()
    assert len(frame) == 8 and set(frame.drop(lost.index)["status"]) == {"ok"}


def test_workers_that_die_on_every_case_end_the_run_with_every_case_an_error(tmp_path, monkeypatch):
    """No hang and no endless restarts: each fresh worker is charged with the case it died on."""
    monkeypatch.setenv(CRASH, "any")
    out = tmp_path / "crash"
    with rules.registered("hpca", "test-crash", Crash):
        frame = hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "test-crash"], what=["update"],
                              batch_sizes=[2])
    assert len(frame) == 2 * 2 and set(frame["status"]) == {"error"}
    assert frame["reason"].str.contains("died while measuring it").all()


def test_an_implementation_the_workers_cannot_import_is_refused_in_one_line(tmp_path):
    class Local(rules.HPCA):  # defined in a function: cannot travel by reference
        def delta(self, x, y, w):
            return rules.get("hpca").delta(x, y, w)

    with rules.registered("hpca", "test-local", Local):
        with pytest.raises(UserError, match=r"hpca/test-local .*cannot be sent to the worker processes"):
            hebbbench.run(config=TINY, out=tmp_path / "local", rules=["hpca"], impls=["fh", "test-local"])
    assert not (tmp_path / "local").exists()  # refused before the set's folder was made


def test_a_case_cut_between_its_rows_is_measured_again_on_resume(tmp_path):
    """A kill between two rows of one case (a line boundary: nothing looks cut) must not leave the
    case counted as done with a row lost for good."""
    out = tmp_path / "cut"
    hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "naive:group_size=3"], what=["update"],
                  batch_sizes=[2])
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 2 * 2
    (out / "results.csv").write_text("".join(lines[:-1]))  # the last case lost its second row
    env = json.loads((out / "env.json").read_text())
    (out / "env.json").write_text(json.dumps({**env, "status": "interrupted"}))
    cut_case = lines[-1].split(",")[2]
    result = subprocess.run([*CLI, "run", "--resume", str(out), "--no-progress", "--no-report"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    frame = ResultSet(out).frame()
    assert len(frame) == 2 * 2 and not frame.duplicated(["case_id", "label"]).any()
    assert set(frame.loc[frame["case_id"] == cut_case, "label"]) == {"fh", "naive(G=3)"}
    assert len(ResultSet(out).sample_records()) == 2 * 2

"""The GPU paths' logic, exercised on the CPU: explicit float32 precision per implementation (set,
restored, recorded), the CUDA clock's order of operations (device time without the host's dispatch,
latency apart), ceilings per precision, and a GPU worker's CPU threads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hebbbench
from hebbbench import rules
from hebbbench.rules import fp32_precision
from hebbbench.measure.ceilings import Ceilings
from hebbbench.measure.timing import MIN_AHEAD_S, Clock, Timing, TimingPolicy, ahead_seconds, time_interleaved
from hebbbench.measure.variants import Prepared, run_variants
from hebbbench.reports.render import fp32_row
from hebbbench.runner import Settings, worker_threads

TINY = Path(__file__).parent / "data" / "tiny.toml"
POLICY = TimingPolicy(warmup_s=0.0, min_rounds=2, max_rounds=2, min_rounds_capped=2, flush_cache=False, processes=1)


@pytest.fixture
def torch_defaults():
    """torch's own defaults (cuDNN convolutions TF32), put back after the test."""
    with fp32_precision.restored():
        fp32_precision.apply({"cublas_matmul": "none", "cudnn_conv": "tf32", "onednn_matmul": "none",
                              "onednn_conv": "none"})
        yield


def test_torch_would_run_float32_convolutions_in_tf32(torch_defaults):
    """The defect: left alone, cuDNN convolutions use TF32 while cuBLAS products are IEEE."""
    assert fp32_precision.current()["cudnn_conv"] == "tf32"
    with fp32_precision.fp32("ieee"):
        assert set(fp32_precision.current().values()) == {"ieee"}
    assert fp32_precision.current()["cudnn_conv"] == "tf32"  # restored


def flags_seen(log: list, label: str):
    def call():
        log.append((label, fp32_precision.current()["cudnn_conv"], fp32_precision.current()["cublas_matmul"]))
        return torch.zeros(1)
    return call


def test_every_call_runs_in_its_implementations_precision_and_the_flags_are_restored(torch_defaults):
    """Interleaved implementations asking for different precisions each run in their own, in the
    check and in every sample (set outside the timing); the calibration runs in IEEE; after the
    case the flags are as found."""
    log: list = []
    prepare = {"fh": lambda: Prepared(flags_seen(log, "fh"), None, None),
               "fh-tf32": lambda: Prepared(flags_seen(log, "fh-tf32"), None, None, fp32="tf32")}
    outcomes, extra = run_variants(prepare, "cpu", POLICY, extra={"calibration": flags_seen(log, "calibration")})
    assert all(o.status == "ok" for o in outcomes.values())
    seen = {label: {(conv, mm) for lab, conv, mm in log if lab == label} for label in ("fh", "fh-tf32", "calibration")}
    assert seen == {"fh": {("ieee", "ieee")}, "fh-tf32": {("tf32", "tf32")}, "calibration": {("ieee", "ieee")}}
    assert len(log) > 6  # checks, warm-up and samples
    assert fp32_precision.current()["cudnn_conv"] == "tf32" and fp32_precision.current()["cublas_matmul"] == "none"


def test_implementations_declare_their_precision():
    assert fp32_precision.mode_of(rules.lookup("hpca", "fh")) == "ieee"
    assert fp32_precision.mode_of(rules.lookup("swta", "fh-conv")) == "ieee"
    assert fp32_precision.mode_of(rules.lookup("hpca", "fh-tf32")) == "tf32"
    assert fp32_precision.product_precision(rules.lookup("hpca", "fh-tf32"), torch.float32) == "tf32"
    assert fp32_precision.product_precision(rules.lookup("hpca", "fh-tf32"), torch.float64) == "ieee"
    assert fp32_precision.product_precision(rules.lookup("swta", "fh-bf16"), torch.float32) == "bf16"


def test_a_run_records_the_precision_of_every_row_and_the_flags_it_found(tmp_path):
    out = tmp_path / "run"
    frame = hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "fh-tf32", "fh-bf16"],
                          what=["update"], batch_sizes=[2])
    assert set(zip(frame["label"], frame["precision"])) == {("fh", "ieee"), ("fh-tf32", "tf32"), ("fh-bf16", "bf16")}
    env = json.loads((out / "env.json").read_text())
    assert set(env["env"]["fp32_precision_found"]) == set(fp32_precision.LIBRARIES)
    ceilings = env["ceilings"]["cpu/float32"]
    assert set(ceilings["matmul_flop_per_s_by_precision"]) == {"ieee", "tf32", "bf16"}
    assert fp32_row(env["env"])[1].startswith("set per implementation")
    assert fp32_row({"float32_matmul_precision": "highest"}) == ["float32 matmul precision", "highest"]  # from before


def test_a_row_is_held_to_the_ceiling_of_its_own_precision():
    c = Ceilings("cuda:0", "float32", 50e12, 8192, 4e12, 2**30, {"ieee": 50e12, "tf32": 400e12, "bf16": 800e12})
    heavy = (1e12, 1e9)  # compute bound
    assert c.attainable(*heavy, "tf32") == 400e12 and c.attainable(*heavy) == 50e12
    assert c.attainable(*heavy, "bf16") == 800e12
    old = Ceilings("cpu", "float32", 2e10, 1024, 5e9, 2**27)  # a set from before: one rate
    assert old.attainable(*heavy, "tf32") == 2e10


# -- the CUDA clock, on a recording stand-in for the device's queue --------------------------------
class RecordingQueue:
    """Stands in for a CUDA device: records the order of what the clock does."""

    def __init__(self):
        self.log: list[str] = []

    def synchronize(self):
        self.log.append("sync")

    def event(self):
        queue = self

        class Event:
            def record(self):
                queue.log.append("record")

            def synchronize(self):
                queue.log.append("event-sync")

            def elapsed_time(self, other):
                return 1.0  # ms
        return Event()

    def sleep(self, cycles):
        self.log.append(f"sleep {int(cycles)}")

    def cycles_per_second(self):
        return 1e9


def test_the_cuda_clock_queues_the_call_behind_a_spin_so_dispatch_is_not_device_time():
    """The defect: sync, record the start event, then launch from Python: the device idles while the
    host dispatches, and that idle time was counted. Now a spin is queued first, long enough for the
    dispatch last seen, and the start event is recorded behind it."""
    queue = RecordingQueue()
    clock = Clock("cpu", queue=queue)
    seconds = clock.measure(lambda: queue.log.append("call"))
    assert seconds == pytest.approx(1e-3)
    assert queue.log == ["sync", f"sleep {int(MIN_AHEAD_S * 1e9)}", "record", "call", "record", "event-sync"]
    clock.dispatch_s = 1e-3  # a call whose dispatch took a millisecond: the next spin covers twice that
    queue.log.clear()
    clock.measure(lambda: None)
    assert queue.log[1] == f"sleep {int(2e-3 * 1e9)}"
    assert ahead_seconds(10.0) == 0.05  # capped


def test_latency_is_measured_apart_from_device_time():
    queue = RecordingQueue()
    clock = Clock("cpu", queue=queue)
    queue.log.clear()
    clock.latency(lambda: queue.log.append("call"))
    assert queue.log == ["sync", "call", "sync"]  # launched on an idle device, waited for: no spin, no events


def test_the_timer_reports_latency_beside_device_time(monkeypatch):
    queue = RecordingQueue()
    monkeypatch.setattr("hebbbench.measure.timing.CudaQueue", lambda device: queue)
    clock_init = Clock.__init__
    monkeypatch.setattr(Clock, "__init__", lambda self, device, queue_=None: clock_init(self, device, queue))
    results = time_interleaved({"a": lambda: None, "b": lambda: None}, "cpu", POLICY)
    for timing in results.values():
        assert timing.samples == [pytest.approx(1e-3)] * 2 and len(timing.latency) == 2
        columns = timing.columns()
        assert columns["latency_s"] == pytest.approx(float(np.median(timing.latency)))
        assert Timing.from_record(timing.record()).latency == timing.latency
    assert Timing([1.0, 3.0]).columns()["latency_s"] == 2.0  # CPU: a sample is the call's latency


def test_gpu_workers_share_the_cores_and_the_cpu_worker_keeps_torchs_default():
    settings = Settings(policy=POLICY)
    assert worker_threads("cuda:0", settings, concurrent=8, cores=16) == 2
    assert worker_threads("cuda:1", settings, concurrent=32, cores=16) == 1
    assert worker_threads("cpu", settings, concurrent=1, cores=16) is None
    assert worker_threads("cuda:0", Settings(policy=POLICY, threads=3), concurrent=8, cores=16) == 3

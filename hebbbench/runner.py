"""Running a grid: every case checked, measured and written as it finishes.

Per case: variants that cannot run here (device, predicted memory over the budget,
predicted time over the cap) are ``skipped`` with the reason; the others are set up,
run once (peak memory, and ΔW checked against the FastHebb form in float64: ``wrong``
if outside the dtype's tolerance), then timed together, interleaved (timing.py), with the
case's calibration product (workload.py) as one more call in every round; its samples are
stored under the pseudo-label ``CALIBRATION``, not as a row. An
out-of-memory error is recorded as ``oom`` and the device's memory released; any other
exception as ``error``; the run goes on.

Devices: each GPU is timed by its own worker process when several run at once; the CPU
is timed after them, alone, in this process (GPU workers would disturb it).
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from hebbbench.measure import ceilings as ceilings_mod
from hebbbench.measure import devices as dev
from hebbbench import rules
from hebbbench.measure import environment
from hebbbench.errors import UserError
from hebbbench.suites.grid import Case, Grid, Variant
from hebbbench.measure.numerics import tolerance
from hebbbench.store import CALIBRATION, CALIBRATION_KIND, SCHEMA_VERSION, ResultSet, Status
from hebbbench.measure.units import format_bytes
from hebbbench.measure.timing import TimingPolicy, Timing, speedup_columns
from hebbbench.measure.variants import one_line, run_variants
from hebbbench.suites.workload import CaseWorkload, predict

Emit = Callable[[str, Any], None]


@dataclass
class Settings:
    """How a device worker runs its cases (picklable for worker processes)."""

    policy: TimingPolicy
    seed: int = 0
    threads: int | None = None
    memory_budget: float | None = None  # bytes; None: 80 % of the device's memory
    max_case_seconds: float = 60.0  # a variant whose predicted call time exceeds this is skipped
    imports: tuple[str, ...] = ()  # modules that register users' implementations
    run_id: str = ""
    shard: tuple[int, int] | None = None  # (i, n): the i-th of n disjoint parts of the grid
    ceilings: dict[str, dict] = field(default_factory=dict)  # "device/dtype" -> Ceilings as dict


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def import_plugins(modules: tuple[str, ...] | list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"cannot import {name!r} (given with --import): {exc}") from None


def budget_for(device: str, settings: Settings) -> float:
    return settings.memory_budget if settings.memory_budget is not None else dev.budget_memory(device)


# -- one case ----------------------------------------------------------------------------
def base_row(case: Case, variant: Variant, settings: Settings) -> dict[str, Any]:
    layer = case.layer
    return {
        "schema": SCHEMA_VERSION, "run_id": settings.run_id, "case_id": case.case_id, "sweep": case.sweep,
        "rule": case.rule, "rule_options": dict(case.rule_options), "impl": variant.impl,
        "impl_options": dict(variant.options), "label": variant.label,
        "baseline": (case.baseline_variant().label if case.baseline_variant() else ""),
        "layer": layer.name, "layer_kind": layer.kind, "layer_spec": layer.describe(), "batch": case.batch,
        "n": case.n, "m": layer.m, "d": layer.d, "dtype": case.dtype, "device": case.device,
        "device_name": dev.device_name(case.device), "threads": torch.get_num_threads(), "what": case.what,
        "memory_method": dev.memory_method(case.device),
    }


def run_case(case: Case, settings: Settings, ceilings: ceilings_mod.Ceilings) -> tuple[list[dict], dict[str, list]]:
    """Check, measure and time every variant of one case; never raises for a variant's failure."""
    rows = {v.label: base_row(case, v, settings) for v in case.variants}
    budget = budget_for(case.device, settings)
    runnable: list[Variant] = []
    for v in case.variants:
        row, cost = rows[v.label], predict(case, v)
        row.update(flops=cost.flops, bytes=cost.bytes, predicted_memory_bytes=cost.memory,
                   predicted_s=cost.predicted_seconds(ceilings))
        cls = rules.lookup(case.rule, v.impl)
        same_as = cls.same_as_on.get(case.layer.kind)
        if not cls.supports(case.device):
            row.update(status=Status.SKIPPED, reason=f"{case.rule}/{v.impl} runs on {', '.join(cls.device_types)} only")
        elif same_as in {other.label for other in case.variants}:
            row.update(status=Status.SKIPPED, reason=f"on a {case.layer.kind} layer {v.impl} runs {same_as}'s code, "
                                                f"timed in this case already")
        elif cost.memory > budget:
            row.update(status=Status.SKIPPED, reason=f"predicted memory {format_bytes(cost.memory)} exceeds the "
                                                f"budget {format_bytes(budget)} (--memory-budget)")
        elif row["predicted_s"] > settings.max_case_seconds:
            row.update(status=Status.SKIPPED, reason=f"predicted {row['predicted_s']:.1f} s per call exceeds "
                                                f"{settings.max_case_seconds:g} s (--max-case-seconds)")
        else:
            runnable.append(v)

    samples: dict[str, list[float]] = {}
    workload = None
    try:
        if runnable:
            workload = CaseWorkload(case, settings.seed)
            reference = workload.reference()
    except Exception as exc:  # inputs or reference did not fit: nothing of this case can run
        for v in runnable:
            rows[v.label].update(status=Status.OOM if dev.is_out_of_memory(exc) else Status.ERROR,
                                 reason=f"setting up inputs: {one_line(exc)}")
        runnable, workload = [], None
        dev.release(case.device, collect=True)

    if runnable:
        outcomes, extra = run_variants(
            {v.label: (lambda v=v: workload.prepare(v)) for v in runnable}, case.device, settings.policy,
            reference=reference, against="fh in float64",
            tolerances={v.label: tolerance(case.torch_dtype, rules.lookup(case.rule, v.impl).rtol) for v in runnable},
            extra={CALIBRATION: workload.calibration()})
        for label, out in outcomes.items():
            row = rows[label]
            row.update(status=out.status, reason=out.reason, error=out.error, tolerance=out.tolerance,
                       compile_s=out.compile_s, first_call_s=out.first_call_s,
                       peak_memory_bytes=None if math.isnan(out.peak_bytes) else out.peak_bytes)
            if out.timing is not None:
                row.update(out.timing.columns())
                samples[label] = out.timing.samples
        if CALIBRATION in extra:
            samples[CALIBRATION] = extra[CALIBRATION].samples
        _speedups(case, rows, {label: o.timing for label, o in outcomes.items() if o.timing is not None})
    del workload
    dev.release(case.device)
    stamp = now()
    for row in rows.values():
        row.setdefault("status", Status.ERROR)
        row["finished_at"] = stamp
        if row["status"] == Status.OK and row.get("median_s"):
            row["flop_per_s"] = row["flops"] / row["median_s"]
            row["byte_per_s"] = row["bytes"] / row["median_s"]
            row["pct_of_attainable"] = 100.0 * row["flop_per_s"] / ceilings.attainable(row["flops"], row["bytes"])
    return list(rows.values()), samples


def _speedups(case: Case, rows: dict[str, dict], timings: dict[str, Timing]) -> None:
    base = case.baseline_variant()
    if base is None or base.label not in timings:
        return
    for label, t in timings.items():
        rows[label].update(speedup_columns(timings[base.label].samples, t.samples))


# -- one device --------------------------------------------------------------------------
def run_device(device: str, cases: list[Case], settings: Settings, emit: Emit) -> None:
    """Run the cases of one device in order; report through ``emit(kind, payload)``."""
    threads_before = torch.get_num_threads()
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(torch.device(device))
    elif settings.threads or settings.policy.threads:
        torch.set_num_threads(settings.threads or settings.policy.threads)
    try:
        _run_cases(device, cases, settings, emit)
    finally:  # the CPU runs in the caller's process: leave its thread count as it was
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


def _run_cases(device: str, cases: list[Case], settings: Settings, emit: Emit) -> None:
    measured: dict[str, ceilings_mod.Ceilings] = {}
    for case in cases:
        key = f"{device}/{case.dtype}"
        if key not in measured:
            emit("status", f"measuring {key} ceilings")
            measured[key] = ceilings_mod.measure(device, case.torch_dtype, ceilings_mod.probe_policy(settings.policy))
            emit("ceilings", measured[key].as_dict())
        emit("start", case.case_id)
        rows, samples = run_case(case, settings, measured[key])
        emit("case", (rows, samples))


def _worker(device: str, cases: list[Case], settings: Settings, queue) -> None:
    try:
        import_plugins(settings.imports)
        run_device(device, cases, settings, lambda kind, payload: queue.put((device, kind, payload)))
    except BaseException as exc:  # reported to the parent, which records it
        queue.put((device, "failed", one_line(exc)))
    finally:
        queue.put((device, "done", None))


def execute(cases: list[Case], settings: Settings, emit: Emit, isolate: bool = False) -> None:
    """Run every case: GPUs in their own processes when several (or ``isolate``), then the CPU here."""
    by_device: dict[str, list[Case]] = {}
    for case in cases:
        by_device.setdefault(case.device, []).append(case)
    gpus = [d for d in by_device if d != "cpu"]
    in_process = [d for d in by_device if d == "cpu" or (len(gpus) == 1 and not isolate)]
    workers = [d for d in by_device if d not in in_process]
    if isolate and "cpu" in in_process:
        workers.append("cpu")
        in_process.remove("cpu")
    if workers:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(d, by_device[d], settings, queue), daemon=True) for d in workers]
        for p in procs:
            p.start()
        pending = set(workers)
        try:
            while pending:
                device, kind, payload = queue.get()
                if kind == "done":
                    pending.discard(device)
                elif kind == "failed":
                    emit("failed", f"{device}: {payload}")
                else:
                    emit(kind, payload)
        finally:
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
    for device in sorted(in_process, key=lambda d: d == "cpu"):  # GPUs first, the CPU alone last
        run_device(device, by_device[device], settings, emit)


def default_run_id(grid: Grid, devices: list[str]) -> str:
    names = []
    for d in devices:
        if d == "cpu":
            names.append("cpu")
        else:
            name = dev.device_name(d).lower().replace("nvidia", "").strip()
            names.append(name.split()[-1] if name else "cuda")
    tag = "+".join(dict.fromkeys(names)) or "none"
    return f"{grid.name}-{tag}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_info(grid: Grid, settings: Settings, run_settings: dict[str, Any], devices: list[str],
             argv: list[str] | None, cases: int, total_cases: int) -> dict[str, Any]:
    """env.json of a new run; ``run_settings`` are the run's settings as the API records them (RunConfig.as_dict)."""
    shard = settings.shard
    return {"run_id": settings.run_id, "started_at": now(), "finished_at": None, "status": "running",
            "devices": devices, "grid": grid.as_dict(), "grid_fingerprint": grid.fingerprint(),
            "cases": cases, "total_cases": total_cases,
            "shard": {"index": shard[0], "count": shard[1]} if shard else None,
            "settings": run_settings,
            "ceilings": {}, "calibration": CALIBRATION_KIND,
            "env": environment.collect(settings.seed, argv if argv is not None else sys.argv)}


def record(result_set: ResultSet) -> Emit:
    """An emit that writes finished cases and measured ceilings into the result set."""
    def emit(kind: str, payload: Any) -> None:
        if kind == "case":
            rows, samples = payload
            result_set.append_case(rows, samples)
        elif kind == "ceilings":
            env = result_set.env()
            env.setdefault("ceilings", {})[f"{payload['device']}/{payload['dtype']}"] = payload
            result_set.write_env(env)
        elif kind == "failed":
            env = result_set.env()
            env.setdefault("failures", []).append(payload)
            result_set.write_env(env)
    return emit


def open_run(out: Path, resume: bool, make_env: Callable[[], dict]) -> ResultSet:
    if resume:
        rs = ResultSet.open(out, "hebbbench run --resume", started=True).lock_for_writing()  # one writer here
        rs.repair()
        rs.update_env(status="running", resumed_at=now())
        return rs
    return ResultSet.create(out, make_env())

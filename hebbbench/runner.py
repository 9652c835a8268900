"""Running a grid: every case measured in several fresh worker processes, written as it finishes.

Per case, in each worker process: variants that cannot run here (device, predicted memory
over the budget, predicted time over the cap) are ``skipped`` with the reason; the others are
set up, run once (peak memory, and ΔW checked against the FastHebb form in float64: ``wrong``
if outside the dtype's tolerance), then timed together, interleaved (timing.py), with the
case's calibration product (workload.py) as one more call in every round; its samples are
stored under the pseudo-label ``CALIBRATION``, not as a row. An out-of-memory error is
recorded as ``oom`` and the device's memory released; any other exception as ``error``; the
run goes on.

**Processes** (docs/design.md §4). The grid is measured ``processes`` times (``--processes``,
default in the preset), each time by fresh worker processes started with the run's allocator
policy (conditions.py) and flushing subnormals, every process with its own warm-ups, the
cases in an order shuffled from the seed and the process index. Each process's measurement of
a case is kept (processes.jsonl) until the case's last process is in; then its rows are
built from all of them (:func:`combine`: samples pooled with their process index, intervals
from the hierarchical bootstrap, a failure in any process is the row's status) and written.
Within one process index each GPU has its own worker, the GPUs running at once; the CPU's
worker runs after them, alone (GPU workers would disturb it). The device ceilings are measured
by the first process and given to the others, so every process makes the same decisions.
A worker that dies (or whose device fails outside any one variant, e.g. a sticky CUDA error) is
reported (``failed``), the case it was measuring is an ``error`` in that process, and a fresh
worker goes on with the device's remaining cases; a worker that dies before its first case is not
replaced: its cases keep the processes that measured them, and a case none measured is an ``error``.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import os
import multiprocessing
from multiprocessing import connection
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hebbbench.measure import ceilings as ceilings_mod
from hebbbench.measure import devices as dev
from hebbbench import rules
from hebbbench.measure import conditions, environment
from hebbbench.rules.fp32_precision import product_precision
from hebbbench.errors import UserError
from hebbbench.suites.grid import Case, Grid, Variant
from hebbbench.measure.numerics import tolerance
from hebbbench.store import CALIBRATION, SCHEMA_VERSION, ResultSet, Status, calibration_kind
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
    allocator: str = conditions.DEFAULT_ALLOCATOR  # the worker processes' allocator policy (conditions.py)
    #: implementations registered at run time in the parent (rules.registry.own_entries), for the workers
    registry: dict[str, Any] = field(default_factory=dict)


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
        "device_name": dev.device_name(case.device), "threads": torch.get_num_threads(),
        "precision": product_precision(rules.lookup(case.rule, variant.impl), case.torch_dtype), "what": case.what,
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

    timings: dict[str, Timing] = {}
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
            rows[label].update(status=out.status, reason=out.reason, error=out.error, tolerance=out.tolerance,
                               compile_s=out.compile_s, first_call_s=out.first_call_s, peak_memory_bytes=out.peak_bytes)
            if out.timing is not None:
                timings[label] = out.timing
        if CALIBRATION in extra:
            timings[CALIBRATION] = extra[CALIBRATION]
    del workload
    dev.release(case.device)
    for row in rows.values():
        row.setdefault("status", Status.ERROR)
    return list(rows.values()), timings


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finite(values: list[Any]) -> list[float]:
    return [v for v in map(_number, values) if math.isfinite(v)]


def combine(measurements: list[tuple[list[dict], dict[str, Timing]]],
            ceilings: ceilings_mod.Ceilings | None) -> tuple[list[dict], dict[str, dict]]:
    """One case's rows and sample records from its measurement in each process (in process order).

    A variant is ``ok`` only if every process timed it (else the first other status, and where
    it happened); its samples are pooled with their process index; error and peak memory are the
    largest over processes, compile and first-call times the median; the speedup interval is the
    hierarchical bootstrap of pooling.py, paired by round.
    """
    count = len(measurements)
    rows_out: list[dict] = []
    pooled: dict[str, Timing] = {}
    for template in measurements[0][0]:
        label = template["label"]
        versions = [next(r for r in rows if r["label"] == label) for rows, _ in measurements]
        row = dict(template)
        failed = next((i for i, v in enumerate(versions) if v["status"] != Status.OK), None)
        if failed is not None:
            where = (f" (in process {failed + 1} of {count})"
                     if count > 1 and any(v["status"] == Status.OK for v in versions) else "")
            row.update(status=versions[failed]["status"], reason=f"{versions[failed]['reason']}{where}")
        for column, pick in (("error", max), ("peak_memory_bytes", max)):
            found = _finite([v.get(column) for v in versions])
            row[column] = pick(found) if found else None
        for column in ("compile_s", "first_call_s"):
            found = _finite([v.get(column) for v in versions])
            row[column] = float(np.median(found)) if found else None
        timed = [t[label] for _, t in measurements if label in t]
        if row["status"] == Status.OK and len(timed) == count:
            pooled[label] = Timing.pooled(timed)
            row.update(pooled[label].columns())
        rows_out.append(row)
    calibration = [t[CALIBRATION] for _, t in measurements if CALIBRATION in t]
    if calibration and len(calibration) == count:
        pooled[CALIBRATION] = Timing.pooled(calibration)
    stamp = now()
    for row in rows_out:
        base = row.get("baseline")
        if base in pooled and row["label"] in pooled:
            row.update(speedup_columns(pooled[base], pooled[row["label"]]))
        row["finished_at"] = stamp
        if row["status"] == Status.OK and row.get("median_s"):
            row["flop_per_s"] = row["flops"] / row["median_s"]
            row["byte_per_s"] = row["bytes"] / row["median_s"]
            if ceilings is not None:
                row["pct_of_attainable"] = 100.0 * row["flop_per_s"] / ceilings.attainable(
                    row["flops"], row["bytes"], row.get("precision", "ieee"))
    return rows_out, {label: t.record() for label, t in pooled.items()}


# -- one device, in one worker process -----------------------------------------------------
def worker_threads(device: str, settings: Settings, concurrent: int, cores: int | None = None) -> int | None:
    """CPU threads of a device's worker: ``--threads`` (or the policy's) when given; a GPU worker
    otherwise gets an equal share of the cores with the other GPU workers running beside it (its
    host dispatch is part of a call's latency); None: torch's default (the CPU worker runs alone)."""
    given = settings.threads or settings.policy.threads
    if given:
        return given
    if torch.device(device).type == "cuda":
        cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        return max(1, cores // max(1, concurrent))
    return None


def run_device(device: str, cases: list[Case], settings: Settings, emit: Emit, concurrent: int = 1) -> None:
    """Run the cases of one device in order, subnormals flushed; report through ``emit(kind, payload)``."""
    threads_before = torch.get_num_threads()
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(torch.device(device))
    threads = worker_threads(device, settings, concurrent)
    if threads:
        torch.set_num_threads(threads)
    try:
        with conditions.flushed_subnormals():
            _run_cases(device, cases, settings, emit)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


def ceilings_for(device: str, dtype: str, settings: Settings, emit: Emit,
                 measured: dict[str, ceilings_mod.Ceilings]) -> ceilings_mod.Ceilings:
    """The ceilings of device/dtype: given by the run (measured by its first process) or measured now."""
    key = f"{device}/{dtype}"
    if key not in measured:
        if key in settings.ceilings:
            measured[key] = ceilings_mod.Ceilings(**settings.ceilings[key])
        else:
            emit("status", f"measuring {key} ceilings")
            measured[key] = ceilings_mod.measure(device, getattr(torch, dtype), ceilings_mod.probe_policy(settings.policy))
            emit("ceilings", measured[key].as_dict())
    return measured[key]


class DeviceFailed(RuntimeError):
    """The device failed outside any one variant (e.g. a sticky CUDA error on synchronising): the
    case is recorded as an error and this worker ends; the parent goes on in a fresh one."""


def error_rows(case: Case, settings: Settings, reason: str) -> list[dict]:
    """Rows of a case that could not be measured in one process, every variant an ``error``."""
    return [{**base_row(case, v, settings), "status": Status.ERROR, "reason": reason} for v in case.variants]


def _run_cases(device: str, cases: list[Case], settings: Settings, emit: Emit) -> None:
    measured: dict[str, ceilings_mod.Ceilings] = {}
    for case in cases:
        ceilings = ceilings_for(device, case.dtype, settings, emit, measured)
        emit("start", case.case_id)
        try:
            rows, timings = run_case(case, settings, ceilings)
        except Exception as exc:  # noqa: BLE001 - run_case records each variant's failure: this is the device's
            reason = f"the device failed: {one_line(exc)}"
            emit("measured", (case.case_id, error_rows(case, settings, reason), {}))
            raise DeviceFailed(reason) from exc
        emit("measured", (case.case_id, rows, {label: t.record() for label, t in timings.items()}))


def _die_with(parent: int) -> None:
    """Linux: this process is killed when its parent dies (a parent killed with -9 leaves no orphan that
    goes on measuring beside the resumed run)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _worker(device: str, cases: list[Case], settings: Settings, conn, parent: int, concurrent: int) -> None:
    """A device's worker process. Messages go through its own pipe, each written before the next
    step begins (a worker that dies leaves no message unsent), as (kind, payload)."""
    _die_with(parent)
    send = lambda kind, payload: conn.send((kind, payload))  # noqa: E731
    try:
        import_plugins(settings.imports)
        rules.registry.adopt(settings.registry)
        send("conditions", {**conditions.describe(settings.allocator), "page_fault_s": conditions.fault_seconds()})
        run_device(device, cases, settings, send, concurrent)
    except BaseException as exc:  # reported to the parent, which records it
        send("failed", one_line(exc))
    finally:
        send("done", None)
        conn.close()


@dataclass
class _Worker:
    """The parent's view of one device's worker process."""

    process: Any
    conn: Any
    remaining: list[Case]  # its cases not measured yet, in order
    current: str | None = None  # the case it said it started and has not finished
    progressed: bool = False  # it measured (or was charged with) at least one case
    done: bool = False


def _run_workers(jobs: dict[str, list[Case]], settings: Settings, on_message: Callable[[str, str, Any], None]) -> None:
    """One worker process per device, all at once; messages go to ``on_message(device, kind, payload)``.

    A worker that dies (a segfault, the OOM killer, a device that fails) is reported as ``failed``;
    the case it was measuring is charged to it (``measured`` with error rows: the run goes on) and a
    fresh worker takes the device's remaining cases, as long as each worker gets past one case.
    """
    ctx = multiprocessing.get_context("spawn")
    by_id = {c.case_id: c for cases in jobs.values() for c in cases}
    workers: dict[str, _Worker] = {}

    def start(device: str, cases: list[Case]) -> None:
        reader, writer = ctx.Pipe(duplex=False)
        with conditions.started_with(settings.allocator):
            proc = ctx.Process(target=_worker, args=(device, cases, settings, writer, os.getpid(), len(jobs)),
                               daemon=True)
            proc.start()
        writer.close()  # the child holds the only writer: its exit ends the pipe
        workers[device] = _Worker(proc, reader, list(cases))

    def handle(device: str, w: _Worker, kind: str, payload: Any) -> None:
        if kind == "done":
            w.done = True
            return
        if kind == "start":
            w.current = payload
        elif kind == "measured":
            w.remaining = [c for c in w.remaining if c.case_id != payload[0]]
            w.current, w.progressed = None, True
        on_message(device, kind, payload)

    def ended(device: str, w: _Worker) -> None:
        w.process.join(timeout=10)
        if w.process.is_alive():  # its pipe is closed but it hangs on its way out (e.g. a device's teardown)
            w.process.terminate()
            w.process.join()
        if not w.done:
            on_message(device, "failed", f"its worker process died (exit code {w.process.exitcode})")
        if w.current is not None:  # it died measuring this case: an error row for it, in this process
            reason = f"its worker process died while measuring it (exit code {w.process.exitcode})"
            handle(device, w, "measured", (w.current, error_rows(by_id[w.current], settings, reason), {}))
        del workers[device]
        if w.remaining and w.progressed:
            start(device, w.remaining)

    for device, cases in jobs.items():
        start(device, cases)
    try:
        while workers:
            waitables = [w.conn for w in workers.values()]
            for conn in connection.wait(waitables, timeout=1.0):
                device, w = next((d, w) for d, w in workers.items() if w.conn is conn)
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):  # the worker is gone and every message it sent was read
                    ended(device, w)
                    continue
                handle(device, w, kind, payload)
    finally:
        for w in workers.values():
            w.process.terminate()
            w.process.join(timeout=5)


def process_order(cases: list[Case], seed: int, process: int) -> list[Case]:
    """The order in which process ``process`` measures ``cases``: shuffled from the seed and the index."""
    order = list(cases)
    random.Random(f"{seed}/{process}").shuffle(order)
    return order


def execute(cases: list[Case], settings: Settings, emit: Emit,
            measured: dict[str, dict[int, tuple[list[dict], dict[str, Timing]]]] | None = None) -> None:
    """Measure every case in ``settings.policy.processes`` worker processes and emit each finished case.

    ``measured`` (a resumed run): case_id -> process -> (rows, timings) already measured; those
    are not measured again. Emits ``measured`` (case_id, process, rows, sample records) per process,
    ``case`` (rows, sample records) when a case is complete, and ``start``, ``status``,
    ``ceilings``, ``conditions``, ``failed``.
    """
    count = settings.policy.processes
    measured = {k: dict(v) for k, v in (measured or {}).items()}
    ceilings = {k: ceilings_mod.Ceilings(**v) for k, v in settings.ceilings.items()}
    by_id = {c.case_id: c for c in cases}
    finished: set[str] = set()

    def finish(case_id: str) -> None:
        case = by_id[case_id]
        parts = [measured[case_id][p] for p in sorted(measured[case_id])]
        emit("case", combine(parts, ceilings.get(f"{case.device}/{case.dtype}")))
        finished.add(case_id)

    for case_id in [c for c in by_id if len(measured.get(c, {})) >= count]:
        finish(case_id)
    for process in range(count):
        pending = [c for c in cases if c.case_id not in finished and process not in measured.get(c.case_id, {})]
        if not pending:
            continue
        given = Settings(**{**settings.__dict__, "ceilings": {k: c.as_dict() for k, c in ceilings.items()}})

        def on_message(device: str, kind: str, payload: Any, process: int = process) -> None:
            if kind == "measured":
                case_id, rows, records = payload
                measured.setdefault(case_id, {})[process] = (rows, {k: Timing.from_record(r) for k, r in records.items()})
                emit("measured", (case_id, process, rows, records))
                if len(measured[case_id]) >= count:
                    finish(case_id)
            elif kind == "ceilings":
                ceilings.setdefault(f"{payload['device']}/{payload['dtype']}", ceilings_mod.Ceilings(**payload))
                emit(kind, payload)
            elif kind == "conditions":
                emit(kind, {**payload, "process": process})
            elif kind == "start":
                emit(kind, f"{payload} (process {process + 1}/{count})" if count > 1 else payload)
            elif kind == "failed":
                emit(kind, f"{device}, process {process + 1}: {payload}")
            else:
                emit(kind, payload)

        order = process_order(pending, settings.seed, process)
        gpus = {d: [c for c in order if c.device == d] for d in dict.fromkeys(c.device for c in order) if d != "cpu"}
        for jobs in (gpus, {"cpu": [c for c in order if c.device == "cpu"]}):
            jobs = {d: cs for d, cs in jobs.items() if cs}
            if jobs:
                _run_workers(jobs, given, on_message)
    for case in cases:  # a worker died: its cases keep the processes that measured them
        if case.case_id in finished:
            continue
        if measured.get(case.case_id):
            finish(case.case_id)
        else:
            rows = error_rows(case, settings, "no worker process measured it (each died before; see env.json's failures)")
            emit("case", ([{**row, "finished_at": now()} for row in rows], {}))


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
            "ceilings": {}, "calibration": calibration_kind(devices),
            "conditions": {"allocator": settings.allocator, "allocator_policy": conditions.ALLOCATORS[settings.allocator],
                           "subnormals": conditions.SUBNORMALS, "processes": []},
            "env": environment.collect(settings.seed, argv if argv is not None else sys.argv)}


def record(result_set: ResultSet) -> Emit:
    """An emit that writes each process's measurements, finished cases, measured ceilings and the
    processes' conditions into the result set."""
    def emit(kind: str, payload: Any) -> None:
        if kind == "measured":
            result_set.append_measured(*payload)
        elif kind == "case":
            rows, samples = payload
            result_set.append_case(rows, samples)
        elif kind == "conditions":
            env = result_set.env()
            env.setdefault("conditions", {}).setdefault("processes", []).append(payload)
            result_set.write_env(env)
        elif kind == "ceilings":
            env = result_set.env()
            env.setdefault("ceilings", {})[f"{payload['device']}/{payload['dtype']}"] = payload
            result_set.write_env(env)
        elif kind == "failed":
            env = result_set.env()
            env.setdefault("failures", []).append(payload)
            result_set.write_env(env)
    return emit


def open_run(out: Path, resume: bool, make_env: Callable[[], dict], cases: list[Case]) -> ResultSet:
    """A new result set, or the one to resume: repaired, a case a kill left with only some rows dropped."""
    if resume:
        rs = ResultSet.open(out, "hebbbench run --resume", started=True).lock_for_writing()  # one writer here
        rs.repair({c.case_id: {v.label for v in c.variants} for c in cases})
        rs.update_env(status="running", resumed_at=now())
        return rs
    return ResultSet.create(out, make_env())

"""``hebbbench scale``: data-parallel Hebbian training timed at several world sizes.

For each device kind and world size w, w processes each train a copy of the network on
their shard of every batch (:mod:`hebbbench.nn.parallel`: one all-reduce of partial sums
per step, batch norm synchronised), and each (rule, impl) is timed:

- **strong scaling** (default): the global batch is fixed — the network's own batch (64
  for the 6-layer net) unless ``batch`` says otherwise — and split over the w ranks. This
  is the data-parallel form of the paper's training: the same updates, the same weights
  after every step as one process with the whole batch (``rel_diff_vs_w1`` checks it: the
  relative difference between what the last timed step changed in the weights at w ranks
  and at one; ``tests/test_distributed.py`` checks several consecutive steps);
- **weak scaling**: each rank gets ``batch`` images, the global batch grows to w·batch
  (more images per step; not the paper's training, so no weights to compare).

Per step, all ranks start together (a barrier outside the timing), the device is
synchronised before the clock is read, and the step's time is the slowest rank's: each
(rule, impl) is a :class:`hebbbench.measure.variants.Prepared` step timed by the runner's
:func:`hebbbench.measure.variants.time_together`, its rows built as every suite's are. After
warm-up (by time; the ranks agree when it is over) ``steps`` steps are timed on fixed
batches. Before every step, outside the timing, the weights go back to their starting
values (as the harness resets them before every sample): every step does the same work at
every world size, and many steps cannot drift into weights that overflow (HPCA at the
networks' default η = 1e-3 reaches NaN after about six consecutive steps on the 6-layer
net). Reported per (device, w, rule, impl):

    step time        median over steps (q1, q3 beside it)
    throughput       global batch / median step time                      (images/s)
    efficiency       throughput_w / (w · throughput_1)
    comm share       median over steps of (time inside all-reduce calls, mean over ranks) / step time

CPU: gloo, threads per rank = cores / w (recorded). CUDA: NCCL, one GPU per rank; a world
size larger than the visible GPUs is refused. Processes are spawned here
(:func:`hebbbench.nn.parallel.launch_local`), one fresh set per world size; under torchrun
(``python -m hebbbench.distributed scale ...``, one node or several) the ranks are
torchrun's, and each world size w runs on ranks 0..w−1 (a subgroup) while the others wait.

A result set is a folder: ``results.csv`` (one row per device × world size × rule × impl),
``samples.jsonl`` (every rank's raw step and communication times), ``env.json`` (the
environment, the configuration, ``kind: "scale"``); its report (``scale.png``/``scale.svg``
and ``report.md``, :mod:`hebbbench.reports.scale`) goes to ``reports/<run-id>/``.

Rows carry the store's key columns (:data:`hebbbench.store.KEY_COLUMNS`), as a grid's do: the
case is ``network/rule/scaling/w<w>/b<global batch>/float32/device/step`` (everything but the
implementation), the label the implementation with its options (``naive(G=8)``), ``median_s``,
``q1_s``, ``q3_s`` the step time (the slowest rank's, per step) over ``n_samples`` steps, and
``speedup`` = median(baseline)/median(this row) at the same device and world size with the
bootstrap interval of :func:`hebbbench.measure.timing.speedup`, the baseline being the first
``naive`` implementation listed (none: NaN). Scaling against world size 1 is ``efficiency``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hebbbench.measure import conditions
from hebbbench import rules
from hebbbench.measure import environment
from hebbbench.nn.data import synthetic_batches
from hebbbench.measure.devices import cuda_count, device_name
from hebbbench.nn.parallel import (REDUCE_MODES, Comm, DataParallel, RankFailed, RankInfo, init_from_env,
                                   launch_local, shard)
from hebbbench import store
from hebbbench.errors import UserError
from hebbbench.nn.networks import NETWORKS, NetworkSpec, build_network, layer_shapes, scale_spec
from hebbbench.nn.training import load_weights, weights
from hebbbench.rules.specs import parse_spec
from hebbbench.measure.timing import Timing, speedup_columns
from hebbbench.rules.fp32_precision import mode_of
from hebbbench.measure.variants import Prepared, time_together
from hebbbench.suites.grid import Variant

KIND = store.Kind.SCALE
SCHEMA_VERSION = store.SCHEMA_VERSION
RESULTS, SAMPLES, ENV, REPORT = "results.csv", "samples.jsonl", "env.json", "report.md"
SCALINGS = ("strong", "weak")
DEVICE_TYPES = ("cpu", "cuda")
#: distinct mini-batches cycled through by the timed steps.
BATCHES = 4
#: CPU ranks allowed per core of this machine (a local launch): beyond, a run measures oversubscription.
MAX_RANKS_PER_CORE = 4

#: the implementation other variants' speedups are measured against (its first variant listed).
BASELINE_IMPL = "naive"

COLUMNS = [*store.KEY_COLUMNS,
    "device_name", "backend", "launcher", "nodes", "network", "rule", "scaling", "world_size", "global_batch",
    "rank_batch", "threads_per_rank", "reduce", "steps", "warmup_steps", "rel_iqr", "throughput_img_s",
    "efficiency", "median_comm_s", "comm_share", "update_comm_s", "batchnorm_comm_s", "comm_calls_per_step",
    "comm_bytes_per_step", "update_bytes_per_step", "in_sync", "rel_diff_vs_w1", "finished_at",
]


def variant(item: str) -> tuple[str, str, str]:
    """An implementation item as written (``naive:group_size=8``) -> (impl, impl_options as JSON, label)."""
    spec = parse_spec(item)
    return spec.name, json.dumps(spec.kwargs, sort_keys=True), Variant(spec.name, spec.options).label


def case_id(config: "ScaleConfig", device: str, world_size: int, rule: str) -> str:
    """Everything of a row but the implementation."""
    return (f"{config.network}/{rule}/{config.scaling}/w{world_size}/b{config.global_batch(world_size)}/"
            f"float32/{device}/step")


@dataclass(frozen=True)
class ScaleConfig:
    """What ``hebbbench scale`` measures (picklable: every rank gets a copy)."""

    network: str = "6layer"
    width: float = 1.0  # every layer's C_out times this (scale_spec), for smaller test networks
    input_size: int | None = None
    rules: tuple[str, ...] = ("swta", "hpca")
    impls: tuple[str, ...] = ("fh", "naive")  # as written, options included: naive:group_size=8
    devices: tuple[str, ...] = ("cpu",)
    world_sizes: tuple[int, ...] = (1, 2)
    batch: int | None = None  # strong: the global batch; weak: each rank's (default: the network's)
    scaling: str = "strong"
    steps: int = 10
    warmup_s: float = 1.0
    reduce: str = "bucket"
    seed: int = 0
    timeout_s: float = 1800.0  # per device and world size (local launch)

    def spec(self) -> NetworkSpec:
        return scale_spec(self.network, width=self.width, input_size=self.input_size)

    def base_batch(self) -> int:
        return self.batch or self.spec().batch_size

    def global_batch(self, world_size: int) -> int:
        return self.base_batch() * (world_size if self.scaling == "weak" else 1)

    def rank_batch(self, world_size: int) -> int:
        """The largest shard (strong scaling splits unevenly when w does not divide the batch)."""
        return self.base_batch() if self.scaling == "weak" else math.ceil(self.base_batch() / world_size)

    def variants(self) -> list[tuple[str, str]]:
        """The (rule, impl) pairs to time: every rule with each of the impls registered for it."""
        return [(rule, impl) for rule in self.rules for impl in self.impls
                if (rule, parse_spec(impl).name) in rules.available()]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def baseline(self) -> str:
        """The label speedups are measured against: the first naive item's; "" when none is timed."""
        return next((variant(i)[2] for i in self.impls if parse_spec(i).name == BASELINE_IMPL), "")


def check(config: ScaleConfig) -> None:
    """Raise UserError for anything wrong with ``config`` before a process is started."""
    if config.network not in NETWORKS:
        raise UserError(f"unknown network {config.network!r}; allowed: {', '.join(NETWORKS)}")
    try:
        config.spec()
    except ValueError as exc:
        raise UserError(f"--width/--input-size: {exc}") from None
    for rule in config.rules:
        try:
            rules.rule_class(rule)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    for item in config.impls:  # an impl some of the rules lack is timed for the others
        impl = parse_spec(item, "impl", "--impls").name
        if not any((rule, impl) in rules.available() for rule in config.rules):
            raise UserError(f"unknown impl {impl!r} for rule{'s' if len(config.rules) > 1 else ''} "
                            f"{', '.join(config.rules)}; allowed: "
                            f"{', '.join(sorted({i for r in config.rules for i in rules.impls(r)}))}")
    if config.scaling not in SCALINGS:
        raise UserError(f"unknown scaling {config.scaling!r}; allowed: {', '.join(SCALINGS)}")
    if config.reduce not in REDUCE_MODES:
        raise UserError(f"unknown reduce {config.reduce!r}; allowed: {', '.join(REDUCE_MODES)}")
    if not config.world_sizes or any(w < 1 for w in config.world_sizes):
        raise UserError(f"world sizes must be integers >= 1, got {list(config.world_sizes)}")
    if not (config.steps >= 1 and math.isfinite(config.warmup_s) and config.warmup_s >= 0
            and math.isfinite(config.timeout_s) and config.timeout_s > 0):
        raise UserError(f"--steps must be >= 1, --warmup a finite number >= 0 and --timeout a finite number > 0, "
                        f"got {config.steps}, {config.warmup_s}, {config.timeout_s}")
    if config.base_batch() < 1:
        raise UserError(f"--batch must be >= 1, got {config.batch}")
    largest = max(config.world_sizes)
    if config.scaling == "strong" and config.base_batch() < largest:
        raise UserError(f"a global batch of {config.base_batch()} cannot be split over {largest} ranks "
                        "(strong scaling needs at least one image per rank): raise --batch or use --scaling weak")
    for device in config.devices:
        if device not in DEVICE_TYPES:
            raise UserError(f"unknown device {device!r}; allowed: {', '.join(DEVICE_TYPES)} "
                            "(CUDA: one GPU per process, cuda:0 .. cuda:w-1)")
        if device == "cuda" and largest > cuda_count():
            raise UserError(f"world size {largest} needs {largest} GPUs (one per process); "
                            f"torch sees {cuda_count()}")


def threads_for(device: str, world_size: int, cores: int | None = None) -> int:
    """CPU threads per rank: the cores this process may use, shared equally (at least 1)."""
    cores = cores or available_cores()
    return max(1, cores // world_size)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- one world size, run by every rank ------------------------------------------------------
@conditions.measuring
def measure(comm: Comm, config: ScaleConfig, device: str, scratch: str | None = None) -> list[dict[str, Any]]:
    """Time every (rule, impl) on this rank's shards; rank 0 returns the results (others: []).

    Rank 0 also saves each finished result in ``scratch`` (when given), so that the
    results measured before a failure survive it.
    """
    spec = config.spec()
    w = comm.size
    images = synthetic_batches(config.global_batch(w), spec.input_size, min(config.steps, BATCHES), config.seed,
                               channels=spec.in_channels, device=device).images
    mine = [shard(b, comm.rank, w) for b in images]
    out: list[dict[str, Any]] = []
    for rule, impl in config.variants():
        result: dict[str, Any] = {"rule": rule, "impl": impl, "world_size": w}
        cls = rules.lookup(rule, parse_spec(impl).name)
        if not cls.supports(device):
            result.update(status="skipped", reason=f"{rule}/{impl} runs on {', '.join(cls.device_types)} only")
        else:
            try:
                result.update(_time_case(comm, config, device, rule, impl, mine))
            except rules.Unavailable as exc:  # raised alike on every rank, before any collective
                result.update(status="skipped", reason=" ".join(str(exc).split()))
        if comm.rank == 0:
            out.append(result)
            if scratch:
                torch.save(result, Path(scratch) / f"{device}-w{w}-{rule}-{impl}.pt")
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def _time_case(comm: Comm, config: ScaleConfig, device: str, rule: str, impl: str,
               mine: list[torch.Tensor]) -> dict[str, Any]:
    variant = parse_spec(impl)
    net = build_network(config.spec(), rule, variant.name, device=device, seed=config.seed, **variant.kwargs)
    dp = DataParallel(net, comm, reduce=config.reduce)
    start = weights(net)
    batches = itertools.cycle(mine)
    step = Prepared(call=lambda: dp.step(next(batches)), reset=lambda: load_weights(net, start), delta=None,
                    fp32=mode_of(rules.lookup(rule, variant.name)))
    # every step from the same weights, at every world size; per step: its time, update and batch-norm comm
    timed, warmup_steps = time_together(step, comm, config.steps, config.warmup_s, start=comm.reset,
                                        after=lambda: [comm.seconds("update"), comm.seconds("batchnorm")])
    samples = torch.tensor(timed, dtype=torch.float64)  # (steps, 3)
    traffic = {"calls": comm.calls(), "bytes": comm.bytes(), "update_bytes": comm.bytes("update")}
    in_sync = dp.weights_identical()
    per_rank = torch.stack(comm.gather(samples))  # (w, steps, 3)
    # what the last timed step changed (W after − W before): compared across world sizes by the caller
    change = {name: (t - start[name]).cpu() for name, t in weights(net).items()} if comm.rank == 0 else {}
    return {"status": "ok", "reason": "", "samples": per_rank.numpy(), "traffic": traffic, "in_sync": in_sync,
            "warmup_steps": warmup_steps, "change": change}


def _rank_entry(info: RankInfo, config: ScaleConfig, device: str, scratch: str) -> list[dict[str, Any]]:
    """One spawned rank of a local launch (hebbbench.nn.parallel.launch_local)."""
    return measure(Comm(device=info.device), config, info.device, scratch)


# -- turning results into rows ---------------------------------------------------------------
def summarise(result: dict[str, Any], config: ScaleConfig) -> dict[str, Any]:
    """The timing columns of one (world size, rule, impl) from every rank's samples."""
    if result.get("status") != "ok":
        return {"status": result.get("status", "error"), "reason": result.get("reason", "")}
    samples = np.asarray(result["samples"])  # (w, steps, 3)
    step = step_times(samples[:, :, 0])  # the slowest rank's time, per step
    comm = samples[:, :, 1:].sum(axis=2).mean(axis=0)  # time inside all-reduce calls, mean over ranks
    timing = Timing([float(s) for s in step])
    median = timing.median
    w = int(result["world_size"])
    return {
        "status": "ok", "reason": "", **timing.columns(),
        "throughput_img_s": config.global_batch(w) / median if median > 0 else math.nan,
        "median_comm_s": float(np.median(comm)), "comm_share": float(np.median(comm / step)),
        "update_comm_s": float(np.median(samples[:, :, 1].mean(axis=0))),
        "batchnorm_comm_s": float(np.median(samples[:, :, 2].mean(axis=0))),
        "comm_calls_per_step": result["traffic"]["calls"], "comm_bytes_per_step": result["traffic"]["bytes"],
        "update_bytes_per_step": result["traffic"]["update_bytes"], "in_sync": bool(result["in_sync"]),
        "warmup_steps": result["warmup_steps"],
    }


def step_times(samples: np.ndarray) -> np.ndarray:
    """Every rank's step times (w, steps) -> the step's time, the slowest rank's (steps,)."""
    return np.asarray(samples).max(axis=0)


def add_speedups(frame: pd.DataFrame, steps: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """``speedup`` = median(baseline)/median(row) with its interval, per case, from the step times
    ``steps[(case_id, label)]`` of the rows that ran."""
    frame = frame.copy()
    frame[["speedup", "speedup_lo", "speedup_hi"]] = math.nan
    for index, row in frame.iterrows():
        base, mine = steps.get((row["case_id"], row["baseline"])), steps.get((row["case_id"], row["label"]))
        if row["status"] == "ok" and base is not None and mine is not None:
            columns = speedup_columns(Timing(list(base)), Timing(list(mine)), paired=False)  # separate runs
            frame.loc[index, list(columns)] = list(columns.values())
    return frame


def add_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Scaling efficiency against world size 1 of the same device, rule and variant."""
    frame = frame.copy()
    frame["efficiency"] = math.nan
    for _, part in frame.groupby(["device", "rule", "label"], sort=False):
        base = part[(part["world_size"] == 1) & (part["status"] == "ok")]
        if base.empty:
            continue
        one = float(base["throughput_img_s"].iloc[0])
        for index, row in part.iterrows():
            if row["status"] == "ok":
                frame.loc[index, "efficiency"] = row["throughput_img_s"] / (row["world_size"] * one)
    return frame


def from_older_rows(env: dict[str, Any], frame: pd.DataFrame, records: list[dict[str, Any]]) -> pd.DataFrame:
    """A scale set's rows written before the key columns (``median_step_s``, ``q1_step_s``, ``q3_step_s``,
    no case or label), in them: the same numbers, the speedups from its samples.jsonl."""
    raw = dict(env.get("config") or {})
    config = ScaleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()
                            if k in {f.name for f in dataclasses.fields(ScaleConfig)}})
    frame = frame.rename(columns={"median_step_s": "median_s", "q1_step_s": "q1_s", "q3_step_s": "q3_s"})
    items = [str(i) for i in frame["impl"]]
    frame["case_id"] = [case_id(config, d, int(w), r) for d, w, r in zip(frame["device"], frame["world_size"],
                                                                         frame["rule"])]
    frame["impl"], frame["impl_options"], frame["label"] = zip(*map(variant, items)) if items else ((), (), ())
    frame["baseline"], frame["what"] = config.baseline(), "step"
    frame["n_samples"] = [int(config.steps) if st == "ok" else 0 for st in frame["status"]]
    steps = {}
    for record in records:
        key = (case_id(config, record["device"], int(record["world_size"]), record["rule"]), variant(record["impl"])[2])
        steps[key] = step_times(np.asarray(record["step_s"]))
    return add_speedups(frame, steps)[COLUMNS]


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """‖a − b‖_F / ‖b‖_F over all layers' weights (float64)."""
    diff = sum(float(torch.linalg.vector_norm(a[k].double() - b[k].double()) ** 2) for k in b)
    norm = sum(float(torch.linalg.vector_norm(b[k].double()) ** 2) for k in b)
    return math.sqrt(diff) / max(math.sqrt(norm), torch.finfo(torch.float32).tiny)


# -- the result set ------------------------------------------------------------------------------
class ScaleSet:
    """A scale result set being written: rows, raw samples and env.json, rewritten as results come."""

    def __init__(self, path: Path, config: ScaleConfig, launcher: str, argv: list[str] | None) -> None:
        self.path, self.config, self.launcher = Path(path), config, launcher
        self.lock = store.WriterLock.claim(self.path, (RESULTS, ENV),
                                           f"{self.path} already holds results; choose another --out")
        self.run_id = self.path.name
        self.rows: list[dict[str, Any]] = []
        #: (device, rule, impl) -> what the last timed step changed in the weights at world size 1
        self.first_change: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
        #: (case_id, label) -> the step times (steps,) of a row that ran
        self.steps: dict[tuple[str, str], np.ndarray] = {}
        self.env = {"schema_version": SCHEMA_VERSION, "kind": KIND.value, "run_id": self.run_id, "started_at": now(),
                    "finished_at": None, "status": "running", "launcher": launcher, "config": config.as_dict(),
                    "network": {"spec": dataclasses.asdict(config.spec()),
                                "layers": [s.as_dict() for s in layer_shapes(config.spec(), config.base_batch())]},
                    "threads_per_rank": {}, "failures": [],
                    "env": environment.collect(config.seed, argv if argv is not None else sys.argv),
                    "conditions": conditions.describe()}
        self._write_env()
        (self.path / SAMPLES).write_text("")
        self._write_rows()

    def add(self, device: str, world_size: int, result: dict[str, Any], *, backend: str, threads: int,
            nodes: int, name: str) -> None:
        """One (device, world size, rule, impl) result: its row, its raw samples."""
        config = self.config
        impl, options, label = variant(result["impl"])
        case = case_id(config, device, world_size, result["rule"])
        row = {"schema": SCHEMA_VERSION, "run_id": self.run_id, "case_id": case, "label": label, "impl": impl,
               "impl_options": options, "baseline": config.baseline(), "device": device, "dtype": "float32",
               "what": "step", "n_samples": 0, "device_name": name, "backend": backend, "launcher": self.launcher,
               "nodes": nodes, "network": config.network, "rule": result["rule"], "scaling": config.scaling,
               "world_size": world_size, "global_batch": config.global_batch(world_size),
               "rank_batch": config.rank_batch(world_size), "threads_per_rank": threads, "reduce": config.reduce,
               "steps": config.steps, **summarise(result, config), "finished_at": now()}
        key = (device, result["rule"], result["impl"])
        change = result.get("change")
        if change and config.scaling == "strong":
            if world_size == 1:
                self.first_change[key] = change
            elif key in self.first_change:
                row["rel_diff_vs_w1"] = relative_difference(change, self.first_change[key])
        self.rows.append(row)
        if result.get("status") == "ok":
            samples = np.asarray(result["samples"])
            self.steps[(case, label)] = step_times(samples[:, :, 0])
            record = {"case_id": case, "label": label, "device": device, "world_size": world_size,
                      "rule": result["rule"], "impl": result["impl"],
                      "step_s": samples[:, :, 0].tolist(), "update_comm_s": samples[:, :, 1].tolist(),
                      "batchnorm_comm_s": samples[:, :, 2].tolist()}
            with open(self.path / SAMPLES, "a") as f:
                f.write(json.dumps(record) + "\n")
        self._write_rows()

    def fail(self, device: str, world_size: int, done: set[tuple[str, str]], why: str, *, backend: str,
             threads: int, nodes: int, name: str) -> None:
        """Rows for the (rule, impl) a failed world size did not finish, with the failure as the reason."""
        self.env["failures"].append(f"{device}, world size {world_size}: {why}")
        for rule, impl in self.config.variants():
            if (rule, impl) not in done:
                self.add(device, world_size, {"rule": rule, "impl": impl, "status": "error", "reason": why},
                         backend=backend, threads=threads, nodes=nodes, name=name)
        self._write_env()

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        return add_speedups(add_ratios(frame), self.steps) if len(frame) else frame

    def _write_rows(self) -> None:
        tmp = self.path / (RESULTS + ".tmp")
        self.frame().to_csv(tmp, index=False)
        os.replace(tmp, self.path / RESULTS)

    def _write_env(self) -> None:
        store.write_env(self.path, self.env)

    def finish(self, status: str = "complete") -> pd.DataFrame:
        self.env.update(status=status, finished_at=now())
        self._write_env()
        self._write_rows()
        self.lock.release()
        frame = self.frame()
        frame.attrs["path"] = str(self.path)
        return frame


def default_out(config: ScaleConfig) -> Path:
    """A new folder of its own (``-2``, ``-3``, ... for runs started in the same second)."""
    tag = "+".join(config.devices)
    return store.fresh_folder(Path("results") / f"scale-{config.network}-{tag}-"
                                                f"{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def run_local(config: ScaleConfig, out: str | Path | None = None, *, argv: list[str] | None = None,
              progress=None) -> pd.DataFrame:
    """Spawn w local processes per world size, time every (rule, impl), write the result set and report.

    ``progress(text)`` (optional) hears what is being run. Returns results.csv as a
    DataFrame (``attrs["path"]``: the folder).
    """
    check(config)
    largest = max(config.world_sizes)
    if "cpu" in config.devices and largest > MAX_RANKS_PER_CORE * available_cores():  # all ranks on this machine
        raise UserError(f"world size {largest} would run {largest} processes on {available_cores()} cores (at "
                        f"most {MAX_RANKS_PER_CORE} per core here): their steps would measure the processes "
                        "waiting for a core, not data parallelism; use fewer, or torchrun on more machines")
    result_set = ScaleSet(Path(out) if out else default_out(config), config, "local", argv)
    say = progress or (lambda text: None)
    try:
        for device in config.devices:
            name = device_name("cuda:0" if device == "cuda" else "cpu")
            for w in sorted(set(config.world_sizes)):
                threads = threads_for(device, w)
                result_set.env["threads_per_rank"][f"{device}/w{w}"] = threads
                say(f"{device}: world size {w} ({threads} thread{'s' if threads > 1 else ''} per rank)")
                backend = "nccl" if device == "cuda" else "gloo"
                with tempfile.TemporaryDirectory(prefix="hebbbench-scale-") as scratch:
                    failure = None
                    try:
                        launch_local(_rank_entry, w, (config, device, scratch), device_type=device,
                                     timeout_s=config.timeout_s, threads=threads)
                    except RankFailed as exc:
                        failure = " ".join(str(exc).split())
                    done = set()
                    for rule, impl in config.variants():  # rank 0 saved each finished case, failure or not
                        path = Path(scratch) / f"{device}-w{w}-{rule}-{impl}.pt"
                        if path.exists():
                            result = torch.load(path, weights_only=False)
                            result_set.add(device, w, result, backend=backend, threads=threads, nodes=1, name=name)
                            done.add((rule, impl))
                    if failure:
                        say(f"{device}: world size {w} failed: {failure}")
                        result_set.fail(device, w, done, failure, backend=backend, threads=threads, nodes=1,
                                        name=name)
    except KeyboardInterrupt:
        result_set.finish("interrupted")
        raise
    return result_set.finish()


def run_torchrun(config: ScaleConfig, out: str | Path | None = None, *, argv: list[str] | None = None,
                 progress=None) -> pd.DataFrame | None:
    """This process is one rank started by torchrun: world sizes as subgroups of ranks 0..w−1.

    Every rank measures the world sizes it belongs to; rank 0 writes the result set and
    report (others return None). One device kind per launch.
    """
    import torch.distributed as dist

    if len(config.devices) != 1:
        raise UserError("under torchrun, give one device kind (--devices cpu or --devices cuda)")
    device = config.devices[0]
    world = int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    sizes = tuple(sorted(set(config.world_sizes))) if config.world_sizes else ()
    sizes = sizes or tuple(sorted({2**i for i in range(world.bit_length()) if 2**i <= world} | {world}))
    config = dataclasses.replace(config, world_sizes=sizes, devices=(device,))
    if max(sizes) > world:
        raise UserError(f"world size {max(sizes)} is larger than torchrun's {world} processes")
    check(dataclasses.replace(config, devices=("cpu",)))  # each rank finds its GPU as it joins (cuda_index)
    threads = threads_for(device, local_world)
    torch.set_num_threads(threads)
    info = init_from_env(device, timeout_s=config.timeout_s * len(sizes))
    hosts = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    everyone = Comm(device=info.device)
    result_set, refusal = None, None
    if info.rank == 0:
        try:
            result_set = ScaleSet(Path(out) if out else default_out(config), config, "torchrun", argv)
        except UserError as exc:
            refusal = exc
    if not everyone.all_agree(refusal is None):  # every rank stops, not only rank 0
        dist.destroy_process_group()
        raise refusal or UserError("rank 0 could not create the result set (see its message)")
    say = progress or (lambda text: None)
    for w in sizes:
        group = dist.new_group(list(range(w))) if w < world else None  # every rank takes part in creating it
        if info.rank == 0:
            result_set.env["threads_per_rank"][f"{device}/w{w}"] = threads
            say(f"{device}: world size {w} of {world}")
        if info.rank < w:
            results = measure(Comm(group, info.device), config, info.device)
            for result in results:  # rank 0 only
                result_set.add(device, w, result, backend=info.backend, threads=threads,
                               nodes=len(set(hosts[:w])), name=device_name(info.device))
        everyone.barrier()  # the ranks outside this world size wait here
    dist.destroy_process_group()
    if result_set is None:
        return None
    return result_set.finish()


# -- what to expect: communication against compute, per layer ------------------------------------
def communication_table(spec: NetworkSpec, batch: int, variants: list[tuple[str, str]],
                        world_sizes: tuple[int, ...] = (1,)) -> pd.DataFrame:
    """Per layer: numbers all-reduced per step against each (rule, impl)'s update FLOPs per rank.

    ``update`` is M·D + 1 float32 numbers (this scheme); ``separate`` is M·D + M² (reducing
    YᵀX and YᵀY apart, HPCA's alternative); ``batchnorm`` is 2C + 1 float64 numbers. The
    FLOPs (the registry's cost model) are per rank at each world size of strong scaling,
    whose rank holds ⌈B/w⌉ images: what does not shrink with w (e.g. HPCA-fh's tril(YᵀY)W,
    2M²D whatever the rows) is what limits the speedup.
    """
    lines = []
    for shape in layer_shapes(spec, batch):
        n, m, d = shape.n, shape.m, shape.d
        line: dict[str, Any] = {
            "layer": shape.name, "n": n, "m": m, "d": d, "update_numbers": m * d + 1, "update_bytes": 4 * (m * d + 1),
            "separate_numbers": m * d + m * m, "batchnorm_bytes": 8 * (2 * m + 1)}
        for rule, impl in variants:
            spec = parse_spec(impl)
            cost = rules.get(rule, spec.name, **spec.kwargs)
            for w in world_sizes:
                rows = n // batch * math.ceil(batch / w)  # a rank's rows: ⌈B/w⌉ images
                line[f"{rule}/{variant(impl)[2]} w={w} gflop"] = cost.flops(rows, m, d) / 1e9
        lines.append(line)
    return pd.DataFrame(lines)


def with_default_world_sizes(config: ScaleConfig) -> ScaleConfig:
    """1 and the powers of two up to the processing units here (cores, or GPUs for cuda), and that count."""
    units = min(cuda_count() if device == "cuda" else available_cores() for device in config.devices)
    units = max(units, 1)
    sizes = {2**i for i in range(units.bit_length()) if 2**i <= units} | {units}
    return dataclasses.replace(config, world_sizes=tuple(sorted(sizes)))


def summary_table(frame: pd.DataFrame):
    """A rich table of the result set's rows, for the terminal."""
    from rich.markup import escape
    from rich.table import Table

    from hebbbench.measure.units import format_seconds

    table = Table(title=escape(f"hebbbench scale: {frame.attrs.get('path', '')}"))
    for column in ("device", "w", "rule", "impl", "global batch", "threads/rank", "step time", "images/s",
                   "efficiency", "comm share", "vs w=1", "status"):
        table.add_column(column)
    for _, r in frame.iterrows():
        if r["status"] == "ok":
            eff = "-" if pd.isna(r["efficiency"]) else f"{100 * r['efficiency']:.0f} %"
            diff = "-" if pd.isna(r["rel_diff_vs_w1"]) else f"{r['rel_diff_vs_w1']:.1e}"
            cells = [format_seconds(r["median_s"]), f"{r['throughput_img_s']:.1f}", eff,
                     f"{100 * r['comm_share']:.1f} %", diff, "ok"]
        else:
            cells = ["-"] * 5 + [f"{r['status']}: {r['reason']}"]
        table.add_row(*(escape(str(v)) for v in (r["device"], r["world_size"], r["rule"], r["label"],
                                                  r["global_batch"], r["threads_per_rank"], *cells)))
    return table

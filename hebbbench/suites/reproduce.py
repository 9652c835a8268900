"""Reproduce the paper's speed comparison: Hebbian training of whole networks, naive vs FastHebb.

    r = reproduce(networks=["6layer"], device="cpu")
    r.steps    # one row per (network, rule, variant): step time, epoch and 20-epoch times, speedup
    r.layers   # one row per (network, rule, variant, layer): the layer's update
    r.samples  # raw timing samples;  r.claims: the published claims;  r.meta: a plain dict

For each network × rule (:class:`hebbbench.suites.netcase.NetworkCase`), each layer's update and the
whole training step are timed for every implementation variant (default: naive with
G = 8, naive with G = 128, and FastHebb ``fh``) with the harness's interleaved method;
variants that cannot run within the memory and time budgets are estimated and marked.

**Extrapolation**: an epoch is ⌈images / batch⌉ steps (CIFAR-10/100 50,000 training
images, Tiny ImageNet 100,000, ImageNet 1,281,167) of the median step time; ``epochs``
(20, the paper's Hebbian training) epochs the total. Data loading is measured per batch
and reported in its own columns, not in the step time.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from hebbbench.measure import conditions
from hebbbench._version import __version__
from hebbbench.suites.claims import published_claims
from hebbbench.measure import ceilings as ceilings_mod
from hebbbench.measure.ceilings import Ceilings
from hebbbench.measure.costmodel import RooflineFit
from hebbbench.nn.data import load_batches
from hebbbench.errors import UserError
from hebbbench.measure.devices import available_memory, device_name
from hebbbench.suites.netcase import (
    COMPOSED, ERROR, ESTIMATED, ESTIMATED_STATUSES, LAYER_COLUMNS, OK, OOM, OVER_BUDGET, REFERENCE,
    SAMPLE_COLUMNS, SKIPPED, STEP_COLUMNS, WRONG, NetworkCase, NetworkVariant, release, variant_label,
)
from hebbbench.nn.networks import build_network, get_spec
from hebbbench.measure.timing import TimingPolicy

__all__ = [
    "COMPOSED", "DEFAULT_IMPLS", "DEFAULT_POLICY", "ERROR", "ESTIMATED", "ESTIMATED_STATUSES", "LAYER_COLUMNS",
    "OK", "OOM", "OVER_BUDGET", "REFERENCE", "SAMPLE_COLUMNS", "SKIPPED", "STEP_COLUMNS",
    "WRONG", "ProgressEvent", "Reproduction", "reproduce", "variant_label",
]

DEFAULT_IMPLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("naive", {"group_size": 8}), ("naive", {"group_size": 128}), ("fh", {}))
#: the paper's Hebbian training length.
HEBBIAN_EPOCHS = 20
#: short cases: a check run warms each variant up before its case, so one warm-up round suffices.
DEFAULT_POLICY = TimingPolicy(warmup_s=0.0, min_rounds=5, max_rounds=50, min_rounds_capped=3,
                              target_rel_iqr=0.05, case_seconds=3.0)
#: seconds one call (a layer's update or a whole step) of a non-reference variant may take to be timed.
DEFAULT_MAX_NAIVE_SECONDS = 2.5
#: wall seconds per network (shared by its rules) for starting non-reference work; None: no limit.
DEFAULT_TIME_BUDGET = 100.0
#: share of the free memory (device or RAM) a single update may be predicted to use.
MEMORY_SHARE = 0.5


@dataclass
class Reproduction:
    """What :func:`reproduce` returns: tidy frames and a plain metadata dict.

    - ``layers``: one row per (network, rule, variant, layer): the update's time;
    - ``steps``: one row per (network, rule, variant): the step's time and its extrapolations;
    - ``samples``: one row per raw timing sample (``layer`` is "step" for whole steps);
    - ``claims``: the published claims (:func:`hebbbench.suites.claims.published_claims`);
    - ``meta``: parameters, environment, ceilings, data sources, wall time.
    """

    layers: pd.DataFrame
    steps: pd.DataFrame
    samples: pd.DataFrame
    claims: pd.DataFrame
    meta: dict[str, Any]


@dataclass(frozen=True)
class ProgressEvent:
    """Passed to the ``progress`` callback: where the run is (``done`` of ``total`` cases)."""

    network: str
    rule: str
    stage: str  # "data", "layer", "step", "done"
    layer: str
    done: int
    total: int
    message: str

    def __str__(self) -> str:
        return self.message


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def _normalise_impls(impls: Sequence[tuple[str, dict[str, Any]] | str]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for item in impls:
        impl, options = (item, {}) if isinstance(item, str) else (item[0], dict(item[1] or {}))
        out.append((impl, options))
    if not any(impl == REFERENCE and not options for impl, options in out):
        out.append((REFERENCE, {}))
    labels = [variant_label(i, o) for i, o in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"implementations listed twice: {', '.join(labels)}")
    return out


@conditions.measuring
def reproduce(
    networks: Sequence[str] = ("6layer",),
    rules: Sequence[str] = ("swta", "hpca"),
    impls: Sequence[tuple[str, dict[str, Any]] | str] = DEFAULT_IMPLS,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batches: int = 2,
    policy: TimingPolicy = DEFAULT_POLICY,
    data_root: str | os.PathLike | None = None,
    workers: int = 0,
    seed: int = 0,
    max_naive_seconds: float = DEFAULT_MAX_NAIVE_SECONDS,
    memory_budget: float | None = None,
    time_budget: float | None = DEFAULT_TIME_BUDGET,
    datasets: dict[str, str] | None = None,
    epochs: int = HEBBIAN_EPOCHS,
    lr: float = 1e-3,
    ceilings: Ceilings | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    sink: Callable[[dict[str, pd.DataFrame]], None] | None = None,
    earlier: dict[str, pd.DataFrame] | None = None,
) -> Reproduction:
    """Time the paper's Hebbian training steps per layer and per step, and extrapolate to training.

    ``networks``: names from :data:`hebbbench.nn.networks.NETWORKS`; ``rules``: registered rules;
    ``impls``: (impl, options) pairs (``fh`` is added as the reference if absent);
    ``batches``: mini-batches loaded (the timed steps cycle over them); ``data_root``:
    read real data from there (default: synthetic); ``datasets``: network -> dataset
    (default: the network's first); ``max_naive_seconds``: a non-reference variant is
    timed on a layer (or whole step) only if predicted and measured within this;
    ``memory_budget``: bytes one update may be predicted to use (default: half the
    memory free at the start); ``time_budget``: wall seconds per network, shared by its
    rules in turn (rule i of R may start non-reference work until i+1 R-ths of it have
    passed); work that would not fit is skipped and estimated, ``fh`` always runs
    (None: no limit); ``ceilings``: the device's measured peak rates, if already known
    (default: measured here); ``sink``: called with each (network, rule) case's frames
    (``layers``, ``steps``, ``samples``) as it finishes (a result set appends them); ``earlier``:
    the frames of cases measured before (a resumed set): those (network, rule) are not run
    again, their measured layers calibrate the cost model, and they are in the result. Raises
    :class:`~hebbbench.errors.UserError` for a missing dataset or an unavailable device.
    """
    started = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but CUDA is not available here")
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    if not max_naive_seconds > 0:
        raise ValueError(f"max_naive_seconds must be > 0, got {max_naive_seconds!r}")
    variants_spec = _normalise_impls(impls)
    specs = [get_spec(n) for n in networks]
    datasets = dict(datasets or {})
    for spec in specs:
        ds = datasets.setdefault(spec.name, spec.dataset)
        if ds not in spec.datasets:
            raise ValueError(f"network {spec.name} is not defined for dataset {ds!r}; allowed: "
                             f"{', '.join(spec.datasets)}")
    budget = memory_budget if memory_budget is not None else MEMORY_SHARE * available_memory(str(device))
    load_start = _loadavg()
    total = len(specs) * len(rules)
    done = 0
    frames: dict[str, list[pd.DataFrame]] = {"layers": [], "steps": [], "samples": []}
    columns = {"layers": LAYER_COLUMNS, "steps": STEP_COLUMNS, "samples": SAMPLE_COLUMNS}
    data_meta: dict[str, Any] = {}
    calibration_meta: dict[str, Any] = {}
    calibration = RooflineFit()
    done_before: set[tuple[str, str]] = set()
    if earlier is not None:
        for name in frames:
            frames[name].append(earlier[name][columns[name]])
        done_before = set(zip(earlier["steps"]["network"], earlier["steps"]["rule"]))
        measured = earlier["layers"][earlier["layers"]["status"] == OK]
        for _, row in measured.iterrows():  # what the cost model learnt from them
            calibration.add(row["rule"], row["impl"], row["label"], float(row["median_s"]), float(row["roofline_s"]))

    def reporter(network: str, rule: str):
        def report(stage: str, layer: str, message: str) -> None:
            if progress is not None:
                progress(ProgressEvent(network, rule, stage, layer, done, total, message))
        return report

    ceilings = ceilings or ceilings_mod.measure(str(device), dtype)
    for spec in specs:
        network_start = time.perf_counter()
        if all((spec.name, rule) in done_before for rule in rules):
            done += len(rules)
            continue
        reporter(spec.name, "")("data", "", f"{spec.name}: loading {batches} batch(es) of {datasets[spec.name]}")
        data = load_batches(datasets[spec.name], spec.batch_size, spec.input_size, batches, data_root=data_root,
                            workers=workers, seed=seed, device=device, dtype=dtype)
        data_meta[spec.name] = {"dataset": datasets[spec.name], "source": data.source,
                                "load_seconds": data.load_seconds, "seconds_per_batch": data.seconds_per_batch}
        for index, rule in enumerate(rules):
            if (spec.name, rule) in done_before:
                done += 1
                continue
            deadline = math.inf if time_budget is None else network_start + time_budget * (index + 1) / len(rules)
            variants = [NetworkVariant(variant_label(i, o), i, o,
                                 build_network(spec, rule, i, device, dtype, seed, dataset=datasets[spec.name],
                                               lr=lr, **o))
                        for i, o in variants_spec]
            case = NetworkCase(spec, datasets[spec.name], rule, variants, data, device, dtype, policy, ceilings,
                         max_naive_seconds, budget, calibration, deadline, reporter(spec.name, rule))
            case.run_layers()
            case.run_step()
            finished = {"layers": pd.DataFrame(case.layer_rows(), columns=LAYER_COLUMNS),
                        "steps": pd.DataFrame(case.step_rows(epochs), columns=STEP_COLUMNS),
                        "samples": pd.DataFrame(case.sample_rows(), columns=SAMPLE_COLUMNS)}
            if sink is not None:
                sink(finished)
            for name, frame in finished.items():
                frames[name].append(frame)
            calibration_meta[f"{spec.name}/{rule}"] = {
                v.label: calibration.factor(rule, v.impl, v.label)[1] for v in variants}
            del case, variants
            release(device)
            done += 1
            reporter(spec.name, rule)("done", "", f"{spec.name} {rule}: done ({done}/{total})")
        del data
    meta = {
        "hebbbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "device": str(device),
        "device_name": device_name(str(device)),
        "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."), "seed": seed,
        "networks": [s.name for s in specs], "rules": list(rules),
        "impls": [{"impl": i, "options": o, "variant": variant_label(i, o)} for i, o in variants_spec],
        "reference": REFERENCE, "batches": batches, "epochs": epochs, "lr": lr, "policy": asdict(policy),
        "max_naive_seconds": max_naive_seconds, "memory_budget_bytes": budget, "time_budget_s": time_budget,
        "ceilings": asdict(ceilings),
        "calibration": calibration_meta, "data": data_meta, "data_root": str(data_root) if data_root else None,
        "workers": workers,
        "loadavg_start": load_start, "loadavg_end": _loadavg(),
        "wall_seconds": time.perf_counter() - started,
    }
    whole = {}
    for name, parts in frames.items():
        parts = [part for part in parts if len(part)]
        whole[name] = (pd.concat(parts, ignore_index=True)[columns[name]] if parts
                       else pd.DataFrame(columns=columns[name]))
    return Reproduction(whole["layers"], whole["steps"], whole["samples"], published_claims(), meta)

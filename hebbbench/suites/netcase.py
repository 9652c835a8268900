"""One network × rule of :func:`hebbbench.suites.reproduce.reproduce`: checks, budgets, timings and rows.

Every implementation variant has its own copy of the network with the same starting
weights (:class:`NetworkCase`).

1. **Per layer**, on the layer's actual input from a forward pass of the first batch,
   each variant's update (ΔW alone, nothing applied: what ``hebbbench run --what update``
   times) runs once untimed (after a first call that compiles, for implementations that
   compile): it warms up, is checked against ``fh`` (relative Frobenius error within the
   dtype's tolerance; a disagreeing variant is ``wrong``, never timed) and its peak memory
   is measured. Then all runnable variants are timed together, interleaved. Both go
   through the runner every suite's cases go through (:mod:`hebbbench.measure.variants`:
   its check, then :func:`hebbbench.measure.timing.time_interleaved`). A variant is not run on a layer whose predicted memory exceeds the memory budget or whose predicted
   time exceeds the per-call budget or the case's deadline (``skipped``, the reason says
   which budget, its time estimated); one whose untimed run took longer than the per-call budget is
   not repeated (``over_budget``, its time that one run); one that runs out of memory is
   ``oom``. Predictions come from the registry's cost model on the measured ceilings,
   calibrated on the layers measured so far (:mod:`hebbbench.measure.costmodel`); layers are
   visited cheapest first so the calibration grows before the expensive ones.
2. **Whole step** (forward pass + one update and its apply per layer,
   :func:`hebbbench.nn.step.network_step`, in the implementation's own whole-step form where
   it has one: fh-compiled's compiled and fh-graph's captured layer steps; compiled or
   captured by a first step outside the check), cycling over the loaded mini-batches,
   weights reset before every sample: ``fh`` is always timed; another variant is
   timed with it when all its layers ran and its step fits the budgets. Otherwise its
   step time is *composed*:

       t_step(v) = t_step(fh) − Σ_l t_update(fh, l) + Σ_l t_update(v, l)

   (the forward pass, batch norm, pooling and the applies W ← W + ηΔW are the same in every
   variant), with a
   bootstrap interval over the samples of every measured term; such rows are marked
   ``estimated=True`` and say how in ``method``.

Rows carry the store's key columns (:data:`hebbbench.store.KEY_COLUMNS`), as a grid's do: a
layer row is the case ``network/rule/layer/bB/dtype/device/update``, a step row the case
``network/rule/step/bB/dtype/device/step``. Each row's ``speedup`` is, as in ``hebbbench run``,
median(baseline)/median(this variant) on the variant's own row, the baseline being the first
``naive`` variant (naive with G = 8 by default): fh's row carries fh's speedup. Its 95 % interval
is the bootstrap of :func:`hebbbench.measure.timing.speedup` where both sides were timed; where
a step is composed, the percentile interval of the ratio of the composed bootstrap draws; where
a layer's time is estimated, the point alone.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hebbbench.suites import grid
from hebbbench.measure.ceilings import Ceilings
from hebbbench.measure.costmodel import RooflineFit, roofline_seconds
from hebbbench.nn.data import Batches, dataset_info
from hebbbench.nn.networks import HebbianNetwork, LayerShape, NetworkSpec, layer_shapes
from hebbbench.measure.numerics import tolerance
from hebbbench.measure.timing import Timing, TimingPolicy, speedup_columns
from hebbbench.rules.fp32_precision import mode_of
from hebbbench.measure.variants import Outcome, Peak, Prepared, check, time_checked
from hebbbench.store import KEY_COLUMNS, SCHEMA_VERSION, Status
from hebbbench.nn.training import STEP, layer_inputs, load_weights, reset_call, step_call, update_call, weights

#: the implementation every other is compared with (and checked against).
REFERENCE = "fh"

#: statuses of a (layer, variant) or step row.
OK, COMPOSED, ESTIMATED = Status.OK, Status.COMPOSED, Status.ESTIMATED
SKIPPED, OVER_BUDGET, OOM, WRONG, ERROR = Status.SKIPPED, Status.OVER_BUDGET, Status.OOM, Status.WRONG, Status.ERROR
#: statuses whose time is estimated rather than measured.
ESTIMATED_STATUSES = (SKIPPED, OVER_BUDGET, OOM)

#: what every other variant's speedup is measured against: the first variant of this implementation
#: (naive with the authors' G = 8 by default), as a grid's ``baseline`` key does in ``hebbbench run``.
BASELINE_IMPL = "naive"

#: the network suite's own columns, after the store's key columns (:data:`hebbbench.store.KEY_COLUMNS`).
LAYER_COLUMNS = [*KEY_COLUMNS,
    "network", "dataset", "rule", "layer", "kind", "n", "m", "d", "estimated", "method", "iqr_s", "rel_iqr",
    "rel_error", "tolerance", "peak_bytes", "memory_method", "predicted_s", "roofline_s", "predicted_peak_bytes",
    "flops", "bytes_model",
]
STEP_COLUMNS = [*KEY_COLUMNS,
    "network", "dataset", "rule", "batch_size", "estimated", "method", "iqr_s", "layers_measured",
    "layers_estimated", "images_per_epoch", "batches_per_epoch", "epoch_s", "epochs", "total_s", "data_source",
    "data_s_per_batch", "epoch_data_s", "peak_bytes", "memory_method",
]
SAMPLE_COLUMNS = ["case_id", "label", "index", "seconds"]


def variant_label(impl: str, options: dict[str, Any]) -> str:
    """'fh', 'naive(G=8)': an implementation and its options as one name, as in ``hebbbench run``."""
    return grid.Variant(impl, tuple(sorted(options.items()))).label


@dataclass
class NetworkVariant:
    """An implementation variant and its own copy of the network."""

    label: str
    impl: str
    options: dict[str, Any]
    net: HebbianNetwork


@dataclass
class _Outcome:
    """One (layer, variant): what happened and the numbers."""

    status: str = OK
    timing: Timing | None = None
    estimate_s: float = math.nan
    method: str = ""
    peak: Peak = field(default_factory=Peak)
    rel_error: float = math.nan
    roofline_s: float = math.nan
    predicted_s: float = math.nan
    predicted_peak: float = math.nan
    check_s: float = math.nan
    note: str = ""
    checked: Outcome | None = None  # the runner's outcome of the check, timed into when it passes

    @property
    def seconds(self) -> float:
        return self.timing.median if self.timing is not None and self.status == OK else self.estimate_s


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _predicted_peak(variant: NetworkVariant, shape: LayerShape, itemsize: int) -> float:
    rule = variant.net.hebbian_layers[shape.name].rule
    unfold = shape.n * shape.d * itemsize if shape.kind == "conv" else 0  # the patch rows X (N,D)
    return rule.memory(shape.n, shape.m, shape.d, itemsize) + unfold


class NetworkCase:
    """One network × rule: the variants' networks, their layer outcomes and step timings."""

    def __init__(self, spec: NetworkSpec, dataset: str, rule: str, variants: list[NetworkVariant], batches: Batches,
                 device: torch.device, dtype: torch.dtype, policy: TimingPolicy, ceilings: Ceilings,
                 max_naive_seconds: float, memory_budget: float, calibration: RooflineFit, deadline: float,
                 report: Callable[[str, str, str], None]) -> None:
        self.spec, self.dataset, self.rule, self.variants = spec, dataset, rule, variants
        self.batches, self.device, self.dtype, self.policy, self.ceilings = batches, device, dtype, policy, ceilings
        self.max_s, self.memory_budget, self.report = max_naive_seconds, memory_budget, report
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        self.ref = next(v for v in variants if v.label == REFERENCE)
        self.baseline = next((v for v in variants if v.impl == BASELINE_IMPL), None)
        self.dtype_name = str(dtype).removeprefix("torch.")
        self.others = [v for v in variants if v is not self.ref]
        self.state = weights(self.ref.net)
        for v in self.others:
            load_weights(v.net, self.state)
        self.shapes = {s.name: s for s in layer_shapes(spec)}
        self.calibration, self.deadline = calibration, deadline
        self.outcomes: dict[tuple[str, str], _Outcome] = {}
        self.step_timings: dict[str, Timing] = {}
        self.step_peaks: dict[str, Peak] = {}

    # -- per layer -----------------------------------------------------------------------------
    def _roofline(self, v: NetworkVariant, shape: LayerShape) -> float:
        rule = v.net.hebbian_layers[shape.name].rule
        return roofline_seconds(rule, shape.n, shape.m, shape.d, self.itemsize, self.ceilings)

    def _affordable(self, seconds: float) -> bool:
        """Whether a check run, a warm-up and the minimum samples of a call fit before the deadline."""
        return time.perf_counter() + seconds * (2 + self.policy.min_rounds_capped) <= self.deadline

    def _update(self, v: NetworkVariant, name: str, inputs, responses) -> Prepared:
        """Layer ``name``'s update of ``v`` on its captured input, as the runner takes it."""
        call = update_call(v.net, name, inputs, responses)

        def compile_() -> float:  # compilation or capture for this shape: one-time work, not the update's time
            t0 = time.perf_counter()
            call()
            return time.perf_counter() - t0
        rule = v.net.hebbian_layers[name].rule
        return Prepared(call=call, reset=None, delta=call, compile=compile_ if rule.compiles else None,
                        fp32=mode_of(type(rule)))

    def _checked(self, out: _Outcome, prepare, reference, tolerance_: float,
                 budget: float) -> Prepared | None:
        """The runner's check of one variant (:func:`hebbbench.measure.variants.check`), into ``out``."""
        checked, prepared = check(prepare, str(self.device), reference, tolerance_, budget,
                                  against=REFERENCE)
        out.status, out.note, out.check_s = checked.status, checked.reason, checked.first_call_s
        out.rel_error, out.peak = checked.error, Peak.of(checked, str(self.device))
        out.checked = checked
        return prepared

    def run_layers(self) -> None:
        captured = layer_inputs(self.ref.net, self.batches.images[0])
        order = sorted(self.shapes.values(),
                       key=lambda s: max([self._roofline(v, s) for v in self.others] or [0.0]))
        for shape in order:
            self.report("layer", shape.name, f"{self.spec.name} {self.rule} {shape.name} "
                        f"(N={shape.n}, D={shape.d}, M={shape.m})")
            self._run_layer(shape, *captured[shape.name])
        del captured
        release(self.device)
        self._fill_estimates()

    def _run_layer(self, shape: LayerShape, inputs, responses) -> None:
        name = shape.name
        tolerances = {v.label: tolerance(self.dtype, v.net.hebbian_layers[name].rule.rtol) for v in self.variants}
        ref_out = _Outcome(roofline_s=self._roofline(self.ref, shape),
                           predicted_peak=_predicted_peak(self.ref, shape, self.itemsize))
        self.outcomes[(name, self.ref.label)] = ref_out
        reference = update_call(self.ref.net, name, inputs, responses)()  # fh's ΔW: what every variant must match
        timed = {REFERENCE: self._checked(ref_out, lambda: self._update(self.ref, name, inputs, responses),
                                          reference, tolerances[REFERENCE], math.inf)}
        if timed[REFERENCE] is None:
            raise RuntimeError(f"{REFERENCE} failed on {self.spec.name} {self.rule} {name}: {ref_out.note}")
        committed = 0.0  # predicted seconds per round of the variants accepted so far
        for v in self.others:
            out = _Outcome(roofline_s=self._roofline(v, shape), predicted_peak=_predicted_peak(v, shape, self.itemsize))
            self.outcomes[(name, v.label)] = out
            out.predicted_s, how = self.calibration.predict(self.rule, v.impl, v.label, out.roofline_s)
            if out.predicted_peak > self.memory_budget:
                out.status = SKIPPED
                out.note = (f"predicted {out.predicted_peak / 2**30:.2f} GiB > budget "
                            f"{self.memory_budget / 2**30:.2f} GiB")
                continue
            if out.predicted_s > self.max_s:
                out.status = SKIPPED
                out.note = f"predicted {out.predicted_s:.3g} s ({how}) > budget {self.max_s:.3g} s"
                continue
            if not self._affordable(committed + out.predicted_s):
                out.status = SKIPPED
                out.note = f"the run's time budget is spent (predicted {out.predicted_s:.3g} s per call, {how})"
                continue
            prepared = self._checked(out, lambda v=v: self._update(v, name, inputs, responses), reference,
                                     tolerances[v.label], self.max_s)
            if prepared is not None:
                timed[v.label] = prepared
                committed += max(out.predicted_s, out.check_s)
        del reference
        checked = {label: self.outcomes[(name, label)].checked for label in timed}
        time_checked(timed, checked, str(self.device), self.policy, keep=REFERENCE)
        for label, result in checked.items():
            out = self.outcomes[(name, label)]
            out.status, out.note, out.timing = result.status, result.reason, result.timing
            if out.timing is not None:
                out.method = "measured: interleaved update (ΔW alone) timings on the layer's captured input"
                v = next(v for v in self.variants if v.label == label)
                self.calibration.add(self.rule, v.impl, label, out.timing.median, out.roofline_s)

    def _fill_estimates(self) -> None:
        for (name, label), out in self.outcomes.items():
            if out.status == OVER_BUDGET:
                out.estimate_s = out.check_s
                out.method = "estimated: one untimed (cold) run, over the time budget, not repeated"
            elif out.status in (SKIPPED, OOM):
                v = next(v for v in self.variants if v.label == label)
                out.estimate_s, how = self.calibration.predict(self.rule, v.impl, label, out.roofline_s)
                out.method = f"estimated: cost model, {how}"
            if out.status == OK and out.timing is None:  # pragma: no cover - defensive
                out.status, out.note = ERROR, "not timed"

    # -- whole step ----------------------------------------------------------------------------
    def _layer_status(self, v: NetworkVariant) -> list[str]:
        return [self.outcomes[(name, v.label)].status for name in self.shapes]

    def _step(self, v: NetworkVariant) -> Prepared:
        """``v``'s whole Hebbian step on the loaded batches, weights reset before every call."""
        call, reset = step_call(v.net, self.batches.images), reset_call(v.net, self.state)

        def compile_() -> float:  # compiles or captures the layer steps: one-time work, not the step's time
            t0 = time.perf_counter()
            call()
            return time.perf_counter() - t0
        compiles = any(layer.rule.compiles for layer in v.net.hebbian_layers.values())
        modes = {mode_of(type(layer.rule)) for layer in v.net.hebbian_layers.values()}
        return Prepared(call=call, reset=reset, delta=None, compile=compile_ if compiles else None,
                        fp32=modes.pop() if len(modes) == 1 else "ieee")

    def run_step(self) -> None:
        """Time the whole step of fh and of every variant whose step fits the budget, interleaved."""
        self.report("step", STEP, f"{self.spec.name} {self.rule} whole step")
        device = str(self.device)
        outcomes, timed = {}, {}
        outcomes[REFERENCE], timed[REFERENCE] = check(lambda: self._step(self.ref), device, None,
                                                      math.inf)
        if timed[REFERENCE] is None:
            raise RuntimeError(f"{REFERENCE}'s step failed on {self.spec.name} {self.rule}: "
                               f"{outcomes[REFERENCE].reason}")
        # the impl-independent part (forward, batch norm, pooling), from the reference's cold step
        ref_cold = outcomes[REFERENCE].first_call_s
        forward = max(0.0, ref_cold - sum(self.outcomes[(n, REFERENCE)].seconds for n in self.shapes))
        for v in self.others:
            if any(s != OK for s in self._layer_status(v)):
                continue
            predicted = forward + sum(self.outcomes[(n, v.label)].seconds for n in self.shapes)
            if predicted > self.max_s or not self._affordable(predicted):
                continue
            outcome, prepared = check(lambda v=v: self._step(v), device, None, math.inf, self.max_s)
            if prepared is not None:  # else composed from its layers (over the budget, out of memory, ...)
                outcomes[v.label], timed[v.label] = outcome, prepared
        try:
            time_checked(timed, outcomes, device, self.policy)
        finally:
            for v in self.variants:
                load_weights(v.net, self.state)
        self.step_timings = {label: o.timing for label, o in outcomes.items() if o.timing is not None}
        self.step_peaks = {label: Peak.of(o, device) for label, o in outcomes.items() if o.timing is not None}
        if REFERENCE not in self.step_timings:
            raise RuntimeError(f"{REFERENCE}'s step could not be timed: {outcomes[REFERENCE].reason}")

    # -- rows ----------------------------------------------------------------------------------
    def _keys(self, v: NetworkVariant, part: str, what: str, batch: int) -> dict[str, Any]:
        """The key columns of variant ``v``'s row for ``part`` (a layer, or ``step``); run_id is the set's."""
        base = self.baseline
        return {"schema": SCHEMA_VERSION, "run_id": "", "network": self.spec.name, "dataset": self.dataset,
                "rule": self.rule,
                "case_id": f"{self.spec.name}/{self.rule}/{part}/b{batch}/{self.dtype_name}/{self.device}/{what}",
                "label": v.label, "impl": v.impl, "impl_options": json.dumps(v.options, sort_keys=True),
                "baseline": base.label if base is not None else "", "device": str(self.device),
                "dtype": self.dtype_name, "what": what}

    def _layer_speedup(self, name: str, v: NetworkVariant) -> dict[str, float]:
        """median(baseline)/median(v) on layer ``name``: bootstrapped where both were timed, else the
        ratio of the times the run used (a measured median or an estimate), else NaN."""
        if self.baseline is None:
            return {"speedup": math.nan, "speedup_lo": math.nan, "speedup_hi": math.nan}
        base, out = self.outcomes[(name, self.baseline.label)], self.outcomes[(name, v.label)]
        if base.status == OK and out.status == OK and base.timing is not None and out.timing is not None:
            return speedup_columns(base.timing, out.timing)
        return {"speedup": base.seconds / out.seconds, "speedup_lo": math.nan, "speedup_hi": math.nan}

    def layer_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, shape in self.shapes.items():
            for v in self.variants:
                out = self.outcomes[(name, v.label)]
                rule = v.net.hebbian_layers[name].rule
                t = out.timing if out.status == OK and out.timing is not None else Timing()
                rows.append({
                    **self._keys(v, name, "update", self.spec.batch_size), "status": out.status,
                    "reason": out.note, **t.columns(), **self._layer_speedup(name, v),
                    "median_s": out.seconds if out.status in (OK, *ESTIMATED_STATUSES) else math.nan,
                    "layer": name, "kind": shape.kind, "n": shape.n, "m": shape.m, "d": shape.d,
                    "estimated": out.status in ESTIMATED_STATUSES, "method": out.method,
                    "rel_error": out.rel_error, "tolerance": tolerance(self.dtype, rule.rtol),
                    "peak_bytes": out.peak.bytes, "memory_method": out.peak.method,
                    "predicted_s": self.calibration.predict(self.rule, v.impl, v.label, out.roofline_s)[0],
                    "roofline_s": out.roofline_s, "predicted_peak_bytes": out.predicted_peak,
                    "flops": rule.flops(shape.n, shape.m, shape.d),
                    "bytes_model": rule.bytes_moved(shape.n, shape.m, shape.d, self.itemsize),
                })
        return rows

    def _composed_draws(self, v: NetworkVariant, resamples: int = 2000, seed: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
        """Composed step time of ``v``: the point, its bootstrap draws (resamples,) and the draws of
        fh's step that the composition used (the same in every call: one seed)."""
        rng = np.random.default_rng(seed)
        ref_step = np.asarray(self.step_timings[REFERENCE].samples)

        def draw(samples: list[float]) -> np.ndarray:
            s = np.asarray(samples)
            return np.median(s[rng.integers(0, len(s), size=(resamples, len(s)))], axis=1)  # (resamples,)

        ref_boot = draw(list(ref_step))
        forward = ref_boot.copy()  # the impl-independent part: fh step - fh updates
        point_forward = float(np.median(ref_step))
        variant = np.zeros(resamples)
        point = 0.0
        for name in self.shapes:
            r, o = self.outcomes[(name, REFERENCE)], self.outcomes[(name, v.label)]
            forward -= draw(r.timing.samples)
            point_forward -= r.timing.median
            # a model estimate carries no sampling spread
            variant += draw(o.timing.samples) if o.status == OK else o.estimate_s
            point += o.seconds
        # noise can make the difference negative when the forward part is tiny: it is >= 0
        total = np.maximum(forward, 0.0) + variant
        point += max(point_forward, 0.0)
        return point, total, ref_boot

    def _step_draws(self, v: NetworkVariant, resamples: int = 2000) -> np.ndarray:
        """Bootstrap draws of ``v``'s step time (resamples,): composed, or of its own samples."""
        if v.label not in self.step_timings:
            return self._composed_draws(v, resamples)[1]
        if v is self.ref:
            return self._composed_draws(v, resamples)[2]  # the draws the composed steps were built on
        s = np.asarray(self.step_timings[v.label].samples)
        rng = np.random.default_rng(1)
        return np.median(s[rng.integers(0, len(s), size=(resamples, len(s)))], axis=1)

    def _step_speedup(self, v: NetworkVariant, medians: dict[str, float]) -> dict[str, float]:
        """median(baseline)/median(v) of the whole step: bootstrapped where both were timed, else from
        the composed draws; NaN where either has no time."""
        base = self.baseline
        if base is None or not (math.isfinite(medians[base.label]) and math.isfinite(medians[v.label])):
            return {"speedup": math.nan, "speedup_lo": math.nan, "speedup_hi": math.nan}
        if base.label in self.step_timings and v.label in self.step_timings:
            return speedup_columns(self.step_timings[base.label], self.step_timings[v.label])
        ratios = self._step_draws(base) / self._step_draws(v)
        return {"speedup": medians[base.label] / medians[v.label], "speedup_lo": float(np.percentile(ratios, 2.5)),
                "speedup_hi": float(np.percentile(ratios, 97.5))}

    def step_rows(self, epochs: int) -> list[dict[str, Any]]:
        info = dataset_info(self.dataset)
        batch = self.spec.batch_size
        per_epoch = math.ceil(info.train_images / batch)
        rows, medians = [], {}
        for v in self.variants:
            statuses = self._layer_status(v)
            measured = sum(s == OK for s in statuses)
            estimated_layers = [n for n, s in zip(self.shapes, statuses) if s in ESTIMATED_STATUSES]
            failed = [f"{n} {s}" for n, s in zip(self.shapes, statuses) if s in (WRONG, ERROR)]
            t = self.step_timings.get(v.label)
            peak = self.step_peaks.get(v.label)
            if failed:
                status, median, method = (WRONG if any(WRONG in f for f in failed) else ERROR), math.nan, ""
                note = "; ".join(failed)
            elif t is not None:
                status, median, method, note = OK, t.median, "measured: interleaved whole-step timings", ""
            else:
                status = ESTIMATED if estimated_layers else COMPOSED
                median = self._composed_draws(v)[0]
                method = (f"composed: {REFERENCE} step - {REFERENCE} updates + this variant's updates "
                          f"({measured} measured, {len(estimated_layers)} estimated)")
                note = ("estimated layers: " + ", ".join(
                    f"{n} {self.outcomes[(n, v.label)].status}" for n in estimated_layers)) if estimated_layers \
                    else ("whole step not timed directly: predicted or measured over the "
                          f"{self.max_s:.3g} s per-call budget, or the run's time budget spent")
            medians[v.label] = median
            if peak is None:
                peak = self._layer_peak(v)
            epoch_s = per_epoch * median
            rows.append({
                **self._keys(v, STEP, "step", batch), "status": status, "reason": note,
                **(t if t is not None and status == OK else Timing()).columns(), "median_s": median,
                "batch_size": batch, "estimated": status in (COMPOSED, ESTIMATED), "method": method,
                "layers_measured": measured, "layers_estimated": len(estimated_layers),
                "images_per_epoch": info.train_images, "batches_per_epoch": per_epoch, "epoch_s": epoch_s,
                "epochs": epochs, "total_s": epochs * epoch_s, "data_source": self.batches.source,
                "data_s_per_batch": self.batches.seconds_per_batch,
                "epoch_data_s": per_epoch * self.batches.seconds_per_batch,
                "peak_bytes": peak.bytes, "memory_method": peak.method,
            })
        for row, v in zip(rows, self.variants):
            row.update(self._step_speedup(v, medians))
        return rows

    def _layer_peak(self, v: NetworkVariant) -> Peak:
        """A step's peak from its layers': measured where they ran, the cost model where estimated."""
        measured, modelled = [], []
        for name in self.shapes:
            out = self.outcomes[(name, v.label)]
            if out.status == OK and np.isfinite(out.peak.bytes):
                measured.append(out.peak.bytes)
            elif out.status in ESTIMATED_STATUSES:
                modelled.append(out.predicted_peak)
        if not measured and not modelled:
            return Peak()
        how = f"max over layer updates ({len(measured)} measured, {len(modelled)} cost model)"
        return Peak(max(measured + modelled), how)

    def sample_rows(self) -> list[dict[str, Any]]:
        rows = []
        batch = self.spec.batch_size
        for (name, label), out in self.outcomes.items():
            if out.status == OK and out.timing is not None:
                case_id = self._keys(self.ref, name, "update", batch)["case_id"]
                rows += [{"case_id": case_id, "label": label, "index": i, "seconds": s}
                         for i, s in enumerate(out.timing.samples)]
        for label, t in self.step_timings.items():
            case_id = self._keys(self.ref, STEP, "step", batch)["case_id"]
            rows += [{"case_id": case_id, "label": label, "index": i, "seconds": s} for i, s in enumerate(t.samples)]
        return rows

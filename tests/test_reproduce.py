"""reproduce(): tidy frames, statuses, estimates and budgets, on a small network with short timings."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import spy_step_forms
from hebbbench import rules
from hebbbench.measure.ceilings import Ceilings
from hebbbench.measure.costmodel import RooflineFit
from hebbbench.nn.layers import HebbianLayer
from hebbbench.errors import UserError
from hebbbench.nn.networks import scale_spec
from hebbbench.measure import variants
from hebbbench.store import KEY_COLUMNS
from hebbbench.suites.reproduce import LAYER_COLUMNS, SAMPLE_COLUMNS, STEP_COLUMNS, reproduce, variant_label
from hebbbench.measure.timing import TimingPolicy

SMALL = scale_spec("6layer", width=1 / 8, batch_size=4)
QUICK = TimingPolicy(warmup_s=0, min_rounds=2, max_rounds=3, min_rounds_capped=2, case_seconds=0.05,
                     flush_cache=False)
CEILINGS = Ceilings("cpu", "float32", matmul_flop_per_s=1e11, matmul_size=0, copy_byte_per_s=1e10, copy_bytes=0)
IMPLS = [("naive", {"group_size": 8}), ("naive", {"group_size": 5}), ("fh", {})]


def run(**kwargs):
    options = dict(networks=[SMALL], impls=IMPLS, policy=QUICK, ceilings=CEILINGS, batches=2,
                   max_naive_seconds=60.0)
    options.update(kwargs)
    return reproduce(**options)


@pytest.fixture(scope="module")
def result():
    return run()


def test_frames_are_tidy_with_documented_columns(result):
    assert list(result.layers.columns) == LAYER_COLUMNS
    assert list(result.steps.columns) == STEP_COLUMNS
    assert list(result.samples.columns) == SAMPLE_COLUMNS
    assert len(result.layers) == 2 * 3 * 5 and len(result.steps) == 2 * 3
    assert set(KEY_COLUMNS) <= set(LAYER_COLUMNS) and set(KEY_COLUMNS) <= set(STEP_COLUMNS)
    assert not result.layers.duplicated(["case_id", "label"]).any()
    assert not result.steps.duplicated(["case_id", "label"]).any()
    assert set(result.steps.label) == {"naive(G=8)", "naive(G=5)", "fh"}
    assert (result.layers.what == "update").all() and (result.steps.what == "step").all()
    assert (result.layers.device == "cpu").all() and (result.steps.dtype == "float32").all()
    assert set(result.layers.case_id) == {f"6layer/{r}/{layer}/b4/float32/cpu/update" for r in ("swta", "hpca")
                                          for layer in result.layers.layer}
    assert (result.steps.baseline == "naive(G=8)").all() and (result.layers.baseline == "naive(G=8)").all()
    assert list(result.claims.speedup) == [70.0, 50.0, 20.0]
    assert result.meta["networks"] == ["6layer"] and result.meta["reference"] == "fh"


def test_small_run_measures_everything_and_agrees(result):
    layers, steps = result.layers, result.steps
    assert (layers.status == "ok").all() and not layers.estimated.any()
    assert (layers.rel_error <= layers.tolerance).all()
    assert (layers.n_samples >= 2).all() and (layers.median_s > 0).all()
    assert (layers.speedup_lo <= layers.speedup).all() and (layers.speedup <= layers.speedup_hi).all()
    assert (steps.status == "ok").all() and (steps.n_samples >= 2).all()
    assert (steps.speedup_lo <= steps.speedup).all() and (steps.speedup <= steps.speedup_hi).all()


@pytest.mark.parametrize("frame", ["layers", "steps"])
def test_speedup_is_the_baselines_median_over_this_rows_on_this_row(result, frame):
    """As in a grid set: median(baseline)/median(row), each row's own, computed from the raw samples."""
    rows, s = getattr(result, frame), result.samples
    for _, row in rows.iterrows():
        mine = s[(s.case_id == row.case_id) & (s.label == row.label)].seconds
        base = s[(s.case_id == row.case_id) & (s.label == row.baseline)].seconds
        assert row.speedup == pytest.approx(base.median() / mine.median(), rel=1e-12)
        assert len(mine) == row.n_samples


def test_epoch_extrapolation(result):
    steps = result.steps
    assert (steps.batches_per_epoch == math.ceil(50_000 / 4)).all()
    assert (steps.epoch_s == steps.batches_per_epoch * steps.median_s).all()
    assert (steps.total_s == 20 * steps.epoch_s).all()
    assert (steps.data_source == "synthetic").all() and (steps.epoch_data_s >= 0).all()


def test_samples_are_the_raw_timings(result):
    s = result.samples
    row = result.steps[(result.steps.rule == "hpca") & (result.steps.label == "fh")].iloc[0]
    fh_step = s[(s.case_id == row.case_id) & (s.label == "fh")]
    assert len(fh_step) == row.n_samples and fh_step.seconds.median() == pytest.approx(row.median_s)


@pytest.mark.parametrize("impl", ["fh-compiled", "fh-graph"])
def test_steps_time_the_whole_step_forms_and_layers_time_the_update_alone(monkeypatch, impl):
    """The step rows time each layer's step in the implementation's own form (``wrap_step``); the
    per-layer rows time ΔW alone (as ``run --what update``): no step form runs, no weight moves."""
    forms = spy_step_forms(monkeypatch, impl)
    timed = []  # (labels, step forms called while timing them)
    interleaved = variants.time_interleaved

    def recording(calls, *args, **kwargs):
        before = len(forms)
        out = interleaved(calls, *args, **kwargs)
        timed.append((sorted(calls), len(forms) - before, out))
        return out

    monkeypatch.setattr(variants, "time_interleaved", recording)
    r = run(rules=["swta"], impls=[(impl, {})])
    layers = len(r.layers) // 2
    assert (r.layers.status == "ok").all() and (r.steps.status == "ok").all()
    *per_layer, (labels, steps_forms, step_timings) = timed
    assert len(per_layer) == layers and all(calls == 0 for _, calls, _ in per_layer)
    assert labels == ["fh", impl]
    samples = len(step_timings[impl].samples)
    assert samples == r.steps.set_index("label").n_samples[impl] >= 2
    assert steps_forms >= layers * samples and steps_forms % layers == 0  # every sample ran every layer's form


def test_per_layer_rows_apply_nothing(monkeypatch):
    """An update is ΔW alone: timing the layers applies nothing (so no weights to restore); the steps do."""
    applied = []
    apply_update = HebbianLayer.apply_update
    monkeypatch.setattr(HebbianLayer, "apply_update", lambda self, dw: (applied.append(self), apply_update(self, dw)))
    interleaved, during = variants.time_interleaved, []

    def counting(calls, *args, **kwargs):
        before = len(applied)
        out = interleaved(calls, *args, **kwargs)
        during.append(len(applied) - before)
        return out

    monkeypatch.setattr(variants, "time_interleaved", counting)
    run(rules=["hpca"], impls=[("fh", {})])
    assert during[:-1] == [0] * len(SMALL.layers) and during[-1] > 0  # the layers' updates, then the steps


def test_over_budget_naive_is_estimated_and_marked():
    r = run(rules=["hpca"], max_naive_seconds=1e-12)
    naive = r.layers[r.layers.impl == "naive"]
    assert len(naive) == 2 * 5  # two group sizes × five layers
    assert set(naive.status) <= {"skipped", "over_budget"} and naive.estimated.all()
    assert naive.method.str.startswith("estimated:").all() and (naive.median_s > 0).all()
    assert (naive.n_samples == 0).all()
    fh = r.layers[r.layers.impl == "fh"]
    assert len(fh) == 5 and (fh.status == "ok").all() and not fh.estimated.any()
    steps = r.steps.set_index("label")
    assert steps.loc["naive(G=8)", "status"] == "estimated"
    assert bool(steps.loc["naive(G=8)", "estimated"])
    assert steps.loc["naive(G=8)", "method"].startswith("composed:")
    assert steps.loc["fh", "status"] == "ok"
    # fh's speedup over the composed baseline: the ratio of the two step times, its interval around it
    fh = steps.loc["fh"]
    assert fh.speedup == pytest.approx(steps.loc["naive(G=8)", "median_s"] / fh.median_s, rel=1e-12)
    assert fh.speedup_lo <= fh.speedup <= fh.speedup_hi
    # a layer whose naive time is estimated: the ratio of the times the run used, no interval
    layer = r.layers[r.layers.label == "fh"].iloc[0]
    base = r.layers[(r.layers.case_id == layer.case_id) & (r.layers.label == "naive(G=8)")].iloc[0]
    assert layer.speedup == pytest.approx(base.median_s / layer.median_s) and math.isnan(layer.speedup_lo)


def test_memory_budget_skips_naive_but_not_fh():
    r = run(rules=["swta"], memory_budget=1.0)
    naive, fh = r.layers[r.layers.impl == "naive"], r.layers[r.layers.impl == "fh"]
    assert len(naive) == 2 * 5 and len(fh) == 5
    assert (naive.status == "skipped").all() and naive.reason.str.contains("GiB > budget").all()
    assert (fh.status == "ok").all()


def test_a_wrong_implementation_is_reported_wrong_never_fast(register):
    @register("swta", "broken_test")
    class Broken(rules.SWTA):
        def delta(self, x, y, w):
            return 2 * rules.get("swta", "fh", temperature=self.temperature).delta(x, y, w)

    r = run(rules=["swta"], impls=["broken_test"])
    broken = r.layers[r.layers.impl == "broken_test"]
    assert len(broken) == 5 and (broken.status == "wrong").all() and broken.median_s.isna().all()
    step = r.steps.set_index("label").loc["broken_test"]
    assert step.status == "wrong" and math.isnan(step.median_s)


def test_progress_events_and_missing_data(tmp_path):
    events = []
    run(rules=["swta"], impls=["fh"], progress=events.append)
    assert [e.stage for e in events][0] == "data" and events[-1].stage == "done"
    assert {e.layer for e in events if e.stage == "layer"} == {"conv1", "conv2", "conv3", "conv4", "fc5"}
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        run(rules=["swta"], impls=["fh"], data_root=tmp_path)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="listed twice"):
        run(impls=[("naive", {"group_size": 8}), ("naive", {"group_size": 8})])
    with pytest.raises(ValueError, match="unknown network"):
        reproduce(networks=["lenet"])
    with pytest.raises(ValueError, match="not defined for dataset"):
        run(datasets={"6layer": "imagenet"})
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            run(device="cuda")
    assert variant_label("naive", {"group_size": 8}) == "naive(G=8)" and variant_label("fh", {}) == "fh"


def test_calibration_falls_back_in_order():
    c = RooflineFit()
    assert c.factor("hpca", "naive", "naive(G=8)")[1].startswith("roofline, uncalibrated")
    c.add("swta", "naive", "naive(G=8)", measured=2.0, roofline=1.0)
    assert c.factor("hpca", "naive", "naive(G=8)") == (2.0, "roofline x 2 (calibrated on 1 measured "
                                                                    "layer(s) under other rules)")
    c.add("hpca", "naive", "naive(group_size=128)", measured=3.0, roofline=1.0)
    assert c.factor("hpca", "naive", "naive(G=8)")[0] == 3.0  # same rule first
    c.add("hpca", "naive", "naive(G=8)", measured=5.0, roofline=1.0)
    assert c.predict("hpca", "naive", "naive(G=8)", 2.0)[0] == 10.0



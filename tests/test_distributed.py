"""Data-parallel Hebbian training: 2 gloo processes with half a batch each = 1 process with the whole batch.

The two-process checks run in one launch (spawning costs seconds on a loaded machine);
the parent computes the single-process reference with the plain step
(``HebbianNetwork.hebbian_step``), not with the data-parallel reduction.
"""

from __future__ import annotations

import time
import traceback

import pytest
import torch
from torch import nn

from conftest import spy_step_forms
from hebbbench.errors import UserError
from hebbbench.nn.parallel import Comm, DataParallel, RankFailed, SyncBatchNorm, launch_local, shard
from hebbbench.nn.parallel.launch import cuda_index
from hebbbench.nn.networks import build_network, layer_shapes, scale_spec
from hebbbench.measure.numerics import relative_error
from hebbbench.nn.training import weights
from hebbbench.rules import compiled

#: a small 6-layer net: conv 3→12 k5, 12→16, 16→24, 24→32, fc 288→512 at batch 8.
SPEC = scale_spec("6layer", width=1 / 8, batch_size=8)
STEPS = 3
#: learning rates that change the weights visibly in STEPS steps without blowing up.
LR = {"swta": 0.05, "hpca": 0.002}
#: (rule, impl, global batch, reduce): uneven shards (4 + 3 images) and per-layer reduction too.
SCENARIOS = [("swta", "fh", 8, "bucket"), ("hpca", "fh", 8, "bucket"), ("swta", "naive", 8, "bucket"),
             ("hpca", "naive", 8, "bucket"), ("hpca", "fh", 7, "layer")]
TOLERANCE = 1e-4  # float32 (hebbbench.measure.numerics.TOLERANCE)


def batches(size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(size, 3, 32, 32, generator=g) for _ in range(STEPS)]


def change(net, start) -> dict[str, torch.Tensor]:
    return {name: w - start[name] for name, w in weights(net).items()}


def train_data_parallel(info, scenarios):
    """Runs on each of the ranks: every scenario, data-parallel on this rank's shards."""
    out = []
    for rule, impl, size, reduce in scenarios:
        net = build_network(SPEC, rule, impl, seed=3, lr=LR[rule])
        start = weights(net)
        dp = DataParallel(net, Comm(), reduce=reduce)
        for images in batches(size):
            dp.step(shard(images, info.rank, info.world_size))
        traffic = {kind: (t.calls, t.bytes) for kind, t in dp.comm.traffic.items()}
        out.append({"change": change(net, start), "identical": dp.weights_identical(), "traffic": traffic,
                    "rows": shard(batches(size)[0], info.rank, info.world_size).shape[0]})
    return out


def train_single(rule: str, impl: str, size: int) -> dict[str, torch.Tensor]:
    net = build_network(SPEC, rule, impl, seed=3, lr=LR[rule])
    start = weights(net)
    for images in batches(size):
        net.hebbian_step(images)
    return change(net, start)


@pytest.fixture(scope="module")
def two_ranks():
    started = time.monotonic()
    results = launch_local(train_data_parallel, 2, (SCENARIOS,), timeout_s=240, threads=1)
    return results, time.monotonic() - started


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=["-".join(map(str, s)) for s in SCENARIOS])
def test_two_ranks_train_the_weights_of_one_process(two_ranks, index):
    results, _ = two_ranks
    rule, impl, size, reduce = SCENARIOS[index]
    reference = train_single(rule, impl, size)
    mine = results[0][index]
    assert [r[index]["rows"] for r in results] == [len(t) for t in torch.tensor_split(torch.arange(size), 2)]
    for name, ref in reference.items():
        moved = torch.linalg.vector_norm(ref) / torch.linalg.vector_norm(weights(build_network(SPEC, rule, impl,
                                                                                              seed=3))[name])
        assert moved > 1e-3, f"{name}: the weights hardly moved ({moved:.1e}): the comparison would prove nothing"
        err = relative_error(mine["change"][name], ref)
        print(f"{rule}/{impl} B={size} {reduce} {name}: relative difference of the weight change {err:.1e}")
        assert err < TOLERANCE, (name, err)
    # every rank applies the same reduced sums: the same weights, bit for bit
    assert all(r[index]["identical"] for r in results)
    for name in reference:
        assert torch.equal(results[0][index]["change"][name], results[1][index]["change"][name])


def test_traffic_is_one_bucket_per_step_and_one_small_reduce_per_batch_norm(two_ranks):
    results, _ = two_ranks
    shapes = layer_shapes(SPEC)
    update_bytes = 4 * sum(s.m * s.d + 1 for s in shapes)  # float32 ΔW and a count per layer
    batchnorm_bytes = 8 * sum(2 * s.m + 1 for s in shapes)  # float64 n, Σx, Σx² per channel
    for rank in results:
        bucket = rank[0]["traffic"]
        assert bucket["update"] == (STEPS, STEPS * update_bytes)
        assert bucket["batchnorm"] == (STEPS * len(shapes), STEPS * batchnorm_bytes)
        per_layer = rank[-1]["traffic"]  # reduce="layer": one call per layer, the same bytes
        assert per_layer["update"] == (STEPS * len(shapes), STEPS * update_bytes)


def test_two_rank_launch_is_quick(two_ranks):
    _, seconds = two_ranks
    print(f"two-rank launch with {len(SCENARIOS)} scenarios: {seconds:.1f} s")
    assert seconds < 240  # a hang is cut by launch_local's timeout long before pytest's


@pytest.mark.parametrize("impl", ["fh", "naive"])
def test_one_rank_without_a_process_group_is_the_plain_step_bit_for_bit(impl):
    """Uneven batches of 7: a reduction's B·ΔW / B would round differently; one rank reduces nothing."""
    for rule in LR:
        dp_net = build_network(SPEC, rule, impl, seed=3, lr=LR[rule])
        dp = DataParallel(dp_net)
        assert dp.comm.size == 1
        single = build_network(SPEC, rule, impl, seed=3, lr=LR[rule])
        start = weights(single)
        for images in batches(7):
            dp.step(images)
            single.hebbian_step(images)
        for name, w in weights(single).items():
            assert torch.equal(weights(dp_net)[name], w), (rule, name)
            assert relative_error(w, start[name]) > 1e-4, (rule, name)  # the steps moved it
        assert dp.comm.traffic == {}


class _Mirror:
    """A stand-in for a two-rank Comm whose other rank holds the same shard: every sum is twice this one."""

    size = 2

    def __init__(self):
        self.kinds = []

    def all_reduce(self, tensor, kind):
        self.kinds.append(kind)
        return tensor.mul_(2)


@pytest.mark.parametrize("impl", ["fh", "fh-compiled", "fh-graph"])
@pytest.mark.parametrize("reduce", ["bucket", "layer"])
def test_the_reduction_runs_inside_the_step_forms_and_gives_the_plain_step(monkeypatch, impl, reduce):
    """Two ranks with the same shard (``_Mirror``) train the weights one process trains on it; the
    partial sums are written inside each layer's step form (fh-compiled: one compiled graph per layer,
    the write included; fh-graph: its stand-in on the CPU, see conftest.spy_step_forms)."""
    forms = spy_step_forms(monkeypatch, impl) if impl != "fh" else []
    graphs = []
    if impl == "fh-compiled":
        def counting_backend(gm, example_inputs):
            graphs.append(gm)
            return gm.forward

        monkeypatch.setattr(compiled, "BACKEND", counting_backend)
    rule, layers = "swta", len(layer_shapes(SPEC))
    dp_net, single = (build_network(SPEC, rule, impl, seed=3, lr=LR[rule]) for _ in range(2))
    start = weights(single)
    comm = _Mirror()
    dp = DataParallel(dp_net, comm, reduce=reduce, broadcast=False)
    for images in batches(7):
        dp.step(images)
        single.hebbian_step(images)
    assert comm.kinds.count("update") == STEPS * (1 if reduce == "bucket" else layers)
    for name, w in weights(single).items():
        assert relative_error(w, start[name]) > 1e-3, name
        assert relative_error(weights(dp_net)[name], w) < 1e-5, name
    if impl != "fh":  # each layer's step form ran once per step, in each network
        assert len(forms) == 2 * STEPS * layers
    if impl == "fh-compiled":  # a graph per layer step and form, no graph break at the write
        assert len(graphs) == 2 * layers


class _Capture:
    """A stand-in for a two-rank Comm that keeps what would be all-reduced."""

    size = 2

    def all_reduce(self, tensor, kind):
        self.seen = tensor.clone()
        return tensor


class _AddOther:
    """A stand-in for a two-rank Comm: the other rank's contribution is known in advance."""

    size = 2

    def __init__(self, other):
        self.other = other

    def all_reduce(self, tensor, kind):
        return tensor.add_(self.other)


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_sync_batch_norm_uses_the_whole_batchs_statistics(offset):
    """Channels 100 standard deviations off zero too: the float64 combination keeps the variance."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 5, 5, generator=g) + offset  # (B,C,H,W)
    norm = nn.BatchNorm2d(4, affine=False, track_running_stats=False)
    first, second = x[:4], x[4:]
    capture = _Capture()
    SyncBatchNorm(norm, capture)(first)
    out = SyncBatchNorm(norm, _AddOther(capture.seen))(second)
    x64 = x.double()
    mean, var = x64.mean(dim=(0, 2, 3), keepdim=True), x64.var(dim=(0, 2, 3), correction=0, keepdim=True)
    expected = ((x64 - mean) / torch.sqrt(var + norm.eps))[4:]
    assert relative_error(out, expected) < 1e-5
    assert relative_error(norm(x)[4:], expected) < 1e-5  # torch's own batch norm on the whole batch agrees


def test_shard_splits_evenly_and_refuses_empty_ranks():
    images = torch.arange(7)
    assert [len(shard(images, r, 3)) for r in range(3)] == [3, 2, 2]
    assert torch.equal(torch.cat([shard(images, r, 3) for r in range(3)]), images)
    with pytest.raises(ValueError, match="cannot be split over 8 ranks"):
        shard(images, 0, 8)


def fail_on_rank_one(info):
    """Rank 1 raises; rank 0 waits for it in a collective (it would hang without the watchdog)."""
    if info.rank == 1:
        raise ValueError("injected failure")
    Comm().barrier()
    return "unreachable"


def sleep_forever(info):
    time.sleep(3600)


def test_a_failing_rank_ends_the_launch_with_its_error():
    with pytest.raises(RankFailed, match=r"rank 1 of 2 failed: ValueError: injected failure"):
        launch_local(fail_on_rank_one, 2, timeout_s=120, threads=1)


def test_a_rank_past_the_deadline_is_ended():
    started = time.monotonic()
    with pytest.raises(RankFailed, match=r"still running after 2 s; ended"):
        launch_local(sleep_forever, 1, timeout_s=2, threads=1)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("local_rank, count, visible, expected", [
    (0, 4, None, 0), (3, 4, None, 3), (3, 4, "0,1,2,3", 3),  # every rank sees the node's 4 GPUs: LOCAL_RANK
    (0, 1, "5", 0), (3, 1, "7", 0),  # the launcher gives each rank its own GPU: the one it sees
    (3, 2, "6,7", 1),  # each rank sees its own 2 (SLURM --gpus-per-task=2): the (r mod 2)-th
])
def test_a_rank_takes_a_gpu_it_sees(local_rank, count, visible, expected):
    assert cuda_index(local_rank, 4, count, visible) == expected


def test_a_rank_without_a_gpu_of_its_own_says_so_in_one_line():
    with pytest.raises(UserError, match=r"^rank 2 on this node sees no CUDA device \(CUDA_VISIBLE_DEVICES ''\)$"):
        cuda_index(2, 4, 0, visible="")
    with pytest.raises(UserError, match=r"sees no CUDA device \(CUDA_VISIBLE_DEVICES not set\)$"):
        cuda_index(0, 4, 0, visible=None)
    # every rank sees the same 2 GPUs: 4 ranks would share them
    with pytest.raises(UserError, match=r"^4 processes on this node need 4 GPUs \(one per process\); torch sees 2$"):
        cuda_index(3, 4, 2, visible=None)


#: the dtypes NCCL reduces (torch's ProcessGroupNCCL; bool travels as uint8): no int16.
NCCL_DTYPES = {torch.int8, torch.uint8, torch.bool, torch.int32, torch.int64, torch.float16, torch.bfloat16,
               torch.float32, torch.float64}


def comm_checks(info):
    """Runs on each of 2 ranks: Comm.identical on 2-byte floats (the dtypes it reduces recorded),
    and the host's waits for the device (Comm.sync) inside one data-parallel step."""
    out = {}
    reduced = []
    all_reduce = torch.distributed.all_reduce

    def recording(tensor, *args, **kwargs):
        reduced.append(tensor.dtype)
        return all_reduce(tensor, *args, **kwargs)

    torch.distributed.all_reduce = recording
    try:
        verdicts = {}
        for dtype in (torch.bfloat16, torch.float16):
            values = torch.tensor([1.5, -2.0, float("nan"), 0.0], dtype=dtype)
            one_ulp, signed_zero = values.clone(), values.clone()
            if info.rank == 1:
                one_ulp.view(torch.int16)[1] += 1  # -2.0's neighbour
                signed_zero[3] = -0.0
            verdicts[str(dtype)] = [Comm().identical(v) for v in (values, one_ulp, signed_zero)]
        out["identical"] = {"verdicts": verdicts, "dtypes": sorted({str(d) for d in reduced})}
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        out["identical"] = {"traceback": traceback.format_exc()}
    torch.distributed.all_reduce = all_reduce

    syncs = []
    Comm.sync = lambda self: syncs.append(1)  # this process only: counts every wait for the device
    net = build_network(SPEC, "swta", "fh", seed=3, lr=LR["swta"])
    dp = DataParallel(net, Comm(), reduce="layer")
    images = shard(batches(8)[0], info.rank, info.world_size)
    dp.step(images)
    calls, waits = dp.comm.calls(), len(syncs)
    dp.step(images)
    out["step"] = {"all_reduces": dp.comm.calls() - calls, "syncs": len(syncs) - waits, "seconds": dp.comm.seconds()}
    return out


@pytest.fixture(scope="module")
def comm_ranks():
    return launch_local(comm_checks, 2, timeout_s=240, threads=1)


def test_identical_compares_two_byte_floats_in_a_dtype_nccl_reduces(comm_ranks):
    for rank in comm_ranks:
        result = rank["identical"]
        assert "traceback" not in result, result.get("traceback")
        # the same bits (NaN included), one ulp apart, 0.0 against -0.0
        assert result["verdicts"] == {"torch.bfloat16": [True, False, False], "torch.float16": [True, False, False]}
        assert result["dtypes"] and {getattr(torch, d.split(".")[1]) for d in result["dtypes"]} <= NCCL_DTYPES, result


def test_a_step_never_waits_for_the_device_around_its_all_reduces(comm_ranks):
    """Per layer an update all-reduce (reduce="layer") and a batch norm one, none with a host wait
    (the harness waits once, after the step: time_together); their seconds are still measured."""
    layers = len(layer_shapes(SPEC))
    for rank in comm_ranks:
        assert rank["step"]["all_reduces"] == 2 * layers, rank["step"]
        assert rank["step"]["syncs"] == 0, rank["step"]
        assert rank["step"]["seconds"] > 0, rank["step"]

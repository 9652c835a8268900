"""The device's own ceilings, measured in the same run (docs/design.md §4).

- compute: FLOP/s of one large square matrix product C = A B (2 n³ FLOPs), in each precision
  the implementations' products use (fp32_precision.product_precision): ``ieee`` (the dtype's
  own products, float32 in IEEE float32), ``tf32`` (float32 with TF32 allowed; float32 only)
  and ``bf16`` (bfloat16 operands, float32 accumulation: the same product function fh-bf16
  uses, which on the CPU is a float32 product of the rounded operands). A row's attainable
  FLOP/s is taken from the ceiling of its own precision, so a TF32 or bf16 variant is not
  held to the strict float32 rate (it could exceed 100 % of it);
- memory: bytes/s of one large copy (read + write: 2 × its size).

Achieved FLOP/s and bytes/s of every implementation are reported against these, and
they give the predicted time of a case, max(FLOPs / peak FLOP/s, bytes / peak bytes/s), and the
roofline: the attainable FLOP/s of work with arithmetic intensity I = FLOPs / bytes is
min(peak FLOP/s, I × peak bytes/s) (Williams, Waterman, Patterson, CACM 2009).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from collections.abc import Callable

import torch
from torch import Tensor

from hebbbench.rules import fp32_precision
from hebbbench.measure.timing import TimingPolicy, time_interleaved

#: sizes of the probes: (matrix side, copy bytes) per device type.
PROBE_SIZES = {"cuda": (8192, 2**30), "cpu": (1024, 2**27)}
PROBE_POLICY = TimingPolicy(warmup_s=0.2, min_rounds=5, max_rounds=50, case_seconds=2.0, flush_cache=False)


def probe_policy(policy: TimingPolicy) -> TimingPolicy:
    """The probes' policy: PROBE_POLICY, but no longer per probe than the grid's cases."""
    seconds = min(PROBE_POLICY.case_seconds, max(0.2, policy.case_seconds))
    return TimingPolicy(**{**PROBE_POLICY.__dict__, "case_seconds": seconds, "warmup_s": min(PROBE_POLICY.warmup_s, seconds / 4)})


@dataclass(frozen=True)
class Ceilings:
    device: str
    dtype: str
    matmul_flop_per_s: float
    matmul_size: int
    copy_byte_per_s: float
    copy_bytes: int
    #: precision -> FLOP/s of the product in that precision (sets from before: none, read as ieee's)
    matmul_flop_per_s_by_precision: dict[str, float] = field(default_factory=dict)

    def matmul_rate(self, precision: str = "ieee") -> float:
        """FLOP/s of the large product in ``precision`` (the dtype's own where not measured)."""
        return self.matmul_flop_per_s_by_precision.get(precision, self.matmul_flop_per_s)

    def predicted_seconds(self, flops: float, nbytes: float) -> float:
        return max(flops / self.matmul_flop_per_s, nbytes / self.copy_byte_per_s)

    def attainable(self, flops: float, nbytes: float, precision: str = "ieee") -> float:
        """The roofline: min(peak FLOP/s in ``precision``, arithmetic intensity × peak bytes/s) for this work."""
        intensity = flops / nbytes if nbytes > 0 else float("inf")
        return min(self.matmul_rate(precision), intensity * self.copy_byte_per_s)

    def as_dict(self) -> dict:
        return asdict(self)


def products(dtype: torch.dtype) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """The product of each precision an implementation may use with ``dtype`` inputs."""
    from hebbbench.rules.precision import bf16_matmul, tf32_matmul  # the implementations' own products

    out = {"ieee": lambda a, b: a @ b, "bf16": bf16_matmul}
    if dtype == torch.float32:
        out["tf32"] = tf32_matmul
    return out


def measure(device: str, dtype: torch.dtype, policy: TimingPolicy = PROBE_POLICY) -> Ceilings:
    """Time one large matrix product in each precision and one large copy on ``device`` in ``dtype``
    (the products in IEEE precision unless their name says otherwise; the flags restored after)."""
    side, copy_bytes = PROBE_SIZES[torch.device(device).type]
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(side, side, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(side, side, generator=g).to(device=device, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    src = torch.empty(copy_bytes // itemsize, dtype=dtype, device=device).fill_(1)
    dst = torch.empty_like(src)
    calls = {f"matmul/{p}": (lambda f=f: f(a, b)) for p, f in products(dtype).items()}
    with fp32_precision.fp32("ieee"):
        timings = time_interleaved({**calls, "copy": lambda: dst.copy_(src)}, device, policy)
    name = str(dtype).removeprefix("torch.")
    rates = {label.split("/")[1]: 2.0 * side**3 / t.median for label, t in timings.items() if label != "copy"}
    return Ceilings(device, name, rates["ieee"], side,
                    2.0 * src.numel() * itemsize / timings["copy"].median, src.numel() * itemsize, rates)

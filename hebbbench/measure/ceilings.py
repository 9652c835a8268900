"""The device's own ceilings, measured in the same run (docs/design.md §4).

- compute: FLOP/s of one large square matrix product C = A B (2 n³ FLOPs);
- memory: bytes/s of one large copy (read + write: 2 × its size).

Achieved FLOP/s and bytes/s of every implementation are reported against these, and
they give the predicted time of a case, max(FLOPs / peak FLOP/s, bytes / peak bytes/s), and the
roofline: the attainable FLOP/s of work with arithmetic intensity I = FLOPs / bytes is
min(peak FLOP/s, I × peak bytes/s) (Williams, Waterman, Patterson, CACM 2009).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

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

    def predicted_seconds(self, flops: float, nbytes: float) -> float:
        return max(flops / self.matmul_flop_per_s, nbytes / self.copy_byte_per_s)

    def attainable(self, flops: float, nbytes: float) -> float:
        """The roofline: min(peak FLOP/s, arithmetic intensity × peak bytes/s) for this work."""
        intensity = flops / nbytes if nbytes > 0 else float("inf")
        return min(self.matmul_flop_per_s, intensity * self.copy_byte_per_s)

    def as_dict(self) -> dict:
        return asdict(self)


def measure(device: str, dtype: torch.dtype, policy: TimingPolicy = PROBE_POLICY) -> Ceilings:
    """Time one large matrix product and one large copy on ``device`` in ``dtype``."""
    side, copy_bytes = PROBE_SIZES[torch.device(device).type]
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(side, side, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(side, side, generator=g).to(device=device, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    src = torch.empty(copy_bytes // itemsize, dtype=dtype, device=device).fill_(1)
    dst = torch.empty_like(src)
    timings = time_interleaved({"matmul": lambda: a @ b, "copy": lambda: dst.copy_(src)}, device, policy)
    name = str(dtype).removeprefix("torch.")
    return Ceilings(device, name, 2.0 * side**3 / timings["matmul"].median, side,
                    2.0 * src.numel() * itemsize / timings["copy"].median, src.numel() * itemsize)

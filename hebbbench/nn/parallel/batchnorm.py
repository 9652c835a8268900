"""Batch norm over a batch split across ranks, on gloo and NCCL alike.

The networks normalise every hidden layer's responses with the statistics of the batch
at hand (``track_running_stats=False``). Split over P ranks, each rank sees only its
shard, whose mean and variance differ from the batch's; normalising with them would
change every layer's input and so the update. Exact data parallelism needs the whole
batch's statistics. torch's ``nn.SyncBatchNorm`` runs on CUDA only, so this one is
written with one all-reduce per layer, which works on any backend.

Per channel c, rank r computes over its n_r values (stable two-pass ``torch.var_mean``)
its mean m_r and M2_r = Σ (x − m_r)², and contributes, in float64,

    [ n_r,  n_r·m_r,  M2_r + n_r·m_r² ]  = [ n_r, Σ x, Σ x² ]   (2C + 1 numbers)

so one sum all-reduce gives n, Σx, Σx² of the whole batch; then

    mean = Σx / n,   var = Σx² / n − mean²   (biased, as batch norm uses)

The subtraction loses ε₆₄·mean²/var relative precision: about 1e-12 even when a channel's
mean is 100 standard deviations away from zero, far below float32's rounding, while the
same single-pass formula in float32 would lose 1e-3 there. The layer's output is then
``F.batch_norm`` with these statistics, in the input's dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from hebbbench.nn.parallel.comm import Comm

#: the kind under which the statistics' all-reduces are counted.
KIND = "batchnorm"


class SyncBatchNorm(nn.Module):
    """Batch norm (batch statistics only) whose statistics span every rank's shard of the batch."""

    def __init__(self, norm: _BatchNorm, comm: Comm) -> None:
        super().__init__()
        if norm.track_running_stats:
            raise ValueError("SyncBatchNorm replaces batch norm with batch statistics only "
                             "(track_running_stats=False), the kind the Hebbian networks use")
        self.norm, self.comm = norm, comm

    def extra_repr(self) -> str:
        return f"{self.norm.num_features}, eps={self.norm.eps}, ranks={self.comm.size}"

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        dims = (0, *range(2, x.dim()))  # every dimension but the channels
        var, mean = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,) over this rank's values
        n = x.numel() // channels
        mean64 = mean.double()
        stats = torch.cat([torch.full((1,), float(n), dtype=torch.float64, device=x.device),
                           n * mean64,  # Σ x
                           n * (var.double() + mean64 * mean64)])  # Σ x² = M2 + n·mean²
        self.comm.all_reduce(stats, KIND)  # (2C+1,)
        total = stats[0]
        mean64 = stats[1:channels + 1] / total
        var64 = (stats[channels + 1:] / total - mean64 * mean64).clamp_min_(0.0)
        return F.batch_norm(x, mean64.to(x.dtype), var64.to(x.dtype), self.norm.weight, self.norm.bias,
                            training=False, momentum=0.0, eps=self.norm.eps)


def synchronised(post: nn.Module, comm: Comm) -> nn.Module:
    """A copy of ``post`` (e.g. BatchNorm, ReLU, MaxPool) with every batch norm synchronised over ``comm``.

    The modules are shared, not copied: only batch norms are wrapped. ``post`` itself is
    returned unchanged for one rank.
    """
    if comm.size == 1:
        return post
    if isinstance(post, _BatchNorm):
        return SyncBatchNorm(post, comm)
    if isinstance(post, nn.Sequential):
        return nn.Sequential(*(synchronised(m, comm) for m in post))
    if any(isinstance(m, _BatchNorm) for m in post.modules()):
        raise ValueError(f"cannot synchronise the batch norm inside {type(post).__name__}: "
                         "only BatchNorm modules and nn.Sequential of them are handled")
    return post

"""Data-parallel Hebbian training on torch.distributed: NCCL on GPUs, gloo on the CPU.

Every Hebbian update is a mean over the mini-batch's rows of per-row terms at the same W,
so P ranks, each holding a shard of the batch, get the single-process update exactly from
one all-reduce of partial sums per step (``trainer.py`` has the maths and the volumes).
Batch norm uses the whole batch's statistics through one small all-reduce per layer
(``batchnorm.py``). Communication is counted and timed apart (``comm.py``).

    # one rank; start it with torchrun (one node or several) or hebbbench's launch_local
    from hebbbench.nn.parallel import Comm, DataParallel, init_from_env, shard
    from hebbbench.nn.networks import build_network

    info = init_from_env("cuda")                      # NCCL, GPU LOCAL_RANK mod visible (gloo: "cpu")
    net = build_network("6layer", "hpca", "fh", device=info.device)
    dp = DataParallel(net, Comm(device=info.device))  # reduce="bucket" (default) or "layer"
    for images in batches:                            # the global batch (B, 3, 32, 32) ...
        dp.step(shard(images, info.rank, info.world_size))   # ... each rank trains on its part
    dp.comm.seconds(), dp.comm.bytes()                # time in all-reduce calls, payload bytes

Modules: ``comm`` (counted, timed all-reduce), ``batchnorm`` (SyncBatchNorm on any backend),
``trainer`` (the step), ``launch`` (local processes, or joining torchrun's group), and
``python -m hebbbench.distributed`` (one rank of ``hebbbench scale`` under torchrun).
"""

from hebbbench.nn.parallel.batchnorm import SyncBatchNorm, synchronised
from hebbbench.nn.parallel.comm import Comm, Traffic
from hebbbench.nn.parallel.launch import RankFailed, RankInfo, init_from_env, launch_local, under_torchrun
from hebbbench.nn.parallel.trainer import REDUCE_MODES, DataParallel, shard

__all__ = [
    "REDUCE_MODES", "Comm", "DataParallel", "RankFailed", "RankInfo", "SyncBatchNorm", "Traffic", "init_from_env",
    "launch_local", "shard", "synchronised", "under_torchrun",
]

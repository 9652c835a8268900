"""``python -m hebbbench.distributed scale ...``: one rank of ``hebbbench scale``, started by torchrun.

    # one node, 8 GPUs (world sizes 1, 2, 4, 8 as subgroups of ranks 0..w-1)
    torchrun --standalone --nproc-per-node 8 -m hebbbench.distributed scale --devices cuda
    # two nodes of 8 GPUs: the same command on each, --node-rank 0 and 1
    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 --master-addr HOST0 --master-port 29500 \\
        -m hebbbench.distributed scale --devices cuda --world-sizes 1,2,4,8,16

The options are those of ``hebbbench scale``; rank 0 writes the result set and its report.
"""

from __future__ import annotations

import sys

from hebbbench.cli import err_console, main
from hebbbench.nn.parallel.launch import TORCHRUN_VARIABLES, under_torchrun


def rank_main() -> None:
    if not under_torchrun():
        err_console.print("error: python -m hebbbench.distributed runs one rank under torchrun "
                          f"({', '.join(TORCHRUN_VARIABLES)} are not all set); on one machine, "
                          "hebbbench scale starts its processes itself", markup=False, highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    sys.argv[0] = "hebbbench"
    main()


if __name__ == "__main__":
    rank_main()

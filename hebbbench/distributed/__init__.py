"""``python -m hebbbench.distributed``: torchrun's entry point for ``hebbbench scale`` (a command, not the engine).

The data-parallel engine itself (collectives, batch norm across ranks, the step) is
:mod:`hebbbench.nn.parallel`; this package only starts one rank of the command line.
"""

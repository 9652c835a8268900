"""hebbbench: Hebbian learning rules under one interface, and an honest harness that times them.

    from hebbbench import rules
    dw = rules.get("hpca", impl="fh").update(x, y, w)

    df = hebbbench.run(preset="quick")                         # a benchmark run (results/<run-id>/)
    hebbbench.reports.build([df.attrs["path"]])                # its report (reports/<run-id>/)
"""

from hebbbench._version import __version__  # noqa: E402

from hebbbench import rules  # noqa: E402
from hebbbench.nn.layers import HebbianConv2d, HebbianLinear  # noqa: E402

__all__ = ["HebbianConv2d", "HebbianLinear", "__version__", "reports", "rules", "run"]


def run(*args, **kwargs):
    """Run a benchmark grid; see :func:`hebbbench.api.run` (returns a pandas DataFrame)."""
    from hebbbench.api import run as _run

    return _run(*args, **kwargs)


def __getattr__(name: str):
    """``hebbbench.reports`` on first use (it imports matplotlib, which ``import hebbbench`` does not need)."""
    if name == "reports":
        import importlib

        return importlib.import_module("hebbbench.reports")
    raise AttributeError(f"module 'hebbbench' has no attribute {name!r}")

"""FastHebb compiled by ``torch.compile`` (impl ``fh-compiled``).

The fh forms (SWTA: R = softmax(Y/T), (Rᵀ X − diag(1ᵀR) W)/N; HPCA: (Yᵀ X − tril(Yᵀ Y) W)/N)
as pure functions handed to ``torch.compile(..., dynamic=False)`` (TorchInductor: the
matrix products stay library calls, the element-wise parts — softmax, column sums,
the diagonal scaling, the division — are fused into generated kernels; C++/OpenMP on
the CPU, Triton on CUDA).

Compilation is lazy and cached the way torch caches it: per function, one graph per
(shapes, strides, dtype, device, grad mode), compiled on the first call that needs it.
Each new shape therefore costs a compilation (seconds): call :meth:`prepare` before
timing, it returns those seconds. Dynamo's default limit of 8 graphs per function
would make later shapes silently run eagerly (the graphs of a function are shared by
every torch.compile of it: the update's and the layer step's add up). So the first
use of fh-compiled raises dynamo's limits for the whole process, once, and makes
hitting them an error (``torch._dynamo.config``: ``recompile_limit`` and
``accumulated_recompile_limit`` to at least 1024, ``fail_on_recompile_limit_hit``):
a timed call is always the compiled code.
If torch.compile cannot work on the machine (no C++ compiler, no Triton for the GPU),
the call raises :class:`CompileUnavailable` saying why; nothing falls back to eager.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hebbbench.rules.hpca import HPCAFastHebb, hpca_fh
from hebbbench.rules.local import local_update
from hebbbench.rules.registry import Unavailable, register
from hebbbench.rules.swta import SWTAFastHebb, soft_winners

#: graphs allowed per compiled function (dynamo's default, 8, would fall back to eager).
RECOMPILE_LIMIT = 1024
#: the torch.compile backend (tests swap in cheap ones to check the caching logic).
BACKEND = "inductor"


class CompileUnavailable(Unavailable):
    """torch.compile could not compile the update on this machine; the message says why."""


def swta_fh(x: Tensor, y: Tensor, w: Tensor, temperature: float) -> Tensor:
    """SWTA-FH as one pure function of its inputs (what torch.compile traces)."""
    r = soft_winners(y, temperature)  # (N,M)
    return local_update(r, r.sum(0), x, w)  # (M,D)


_COMPILED: dict[tuple[Callable[..., Tensor], Any], Callable[..., Tensor]] = {}
_SEEN: set[tuple[Any, ...]] = set()


def _signature(fn: Any, tensors: tuple[Tensor, ...], extra: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a compiled graph is specialised on (a superset of dynamo's guards that matter here)."""
    return (fn, torch.is_grad_enabled(), torch.is_inference_mode_enabled(), extra,
            *((t.shape, t.stride(), t.dtype, t.device, t.requires_grad) for t in tensors))


def call_compiled(fn: Callable[..., Tensor], x: Tensor, y: Tensor, w: Tensor, *extra: Any) -> Tensor:
    """fn(x, y, w, *extra) through torch.compile, compiling for a new signature, never eager."""
    compiled = _COMPILED.get((fn, BACKEND))
    if compiled is None:
        compiled = _COMPILED[fn, BACKEND] = torch.compile(fn, dynamic=False, backend=BACKEND)
    key = _signature((fn, BACKEND), (x, y, w), extra)
    if key in _SEEN:
        return compiled(x, y, w, *extra)
    from torch import _dynamo  # loaded by torch.compile already; named for the except clause
    from torch._inductor import exc as inductor_exc

    raise_recompile_limits()
    try:
        out = compiled(x, y, w, *extra)
    except (_dynamo.exc.TorchDynamoException, inductor_exc.InductorError) as error:
        raise CompileUnavailable(
            f"torch.compile could not compile {fn.__name__} for {w.device.type}: {_reason(error)}"
        ) from error
    _SEEN.add(key)
    return out


def raise_recompile_limits() -> None:
    """Dynamo's graph limits raised to RECOMPILE_LIMIT for the process, hitting them an error (idempotent).

    Process-wide rather than around each call: a function's graphs are counted across every
    torch.compile of it and every caller, and a call that found its limit hit would otherwise
    run eagerly without a word.
    """
    from torch._dynamo import config

    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, RECOMPILE_LIMIT)
    config.fail_on_recompile_limit_hit = True


def _reason(error: BaseException) -> str:
    """The underlying error of a compile failure, on one line."""
    cause = getattr(error, "inner_exception", None) or error.__cause__ or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:300]


class Compiled:
    """Mixin: ``compiles`` and :meth:`prepare` (the first call, timed, compilation included).

    For every implementation whose first call per shape compiles code: torch.compile here,
    the Triton JIT in fh-triton (``swta_triton``).
    """

    compiles = True

    def prepare(self, x: Tensor, y: Tensor, w: Tensor) -> float:
        """Compile for these shapes outside timing; the seconds of that first call.

        Call it in the grad mode of the calls it prepares (the harness: ``torch.no_grad()``):
        dynamo specialises a graph on grad mode, so another mode would compile again.
        """
        start = time.perf_counter()
        out = self.update(x, y, w)
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        return time.perf_counter() - start


class CompiledStep(Compiled):
    """Mixin of fh-compiled: the layer's whole step compiled too (:meth:`wrap_step`)."""

    def eager_form(self):
        """The same update uncompiled (the registered class this one compiles), for a compiled layer step."""
        parent = next(c for c in type(self).__mro__[1:] if getattr(c, "impl", "") and not issubclass(c, Compiled))
        return parent(**self.option_values())

    def wrap_step(self, layer, step_with):
        """The layer's whole step (forward, rows, update, apply or sink) as one torch.compile graph per input shape."""
        raise_recompile_limits()  # one graph per layer shape, never an eager fallback
        return torch.compile(step_with(self.eager_form()), dynamic=False, backend=BACKEND)


@register("swta", "fh-compiled")
class SWTACompiled(CompiledStep, SWTAFastHebb):
    """SWTA-FH through torch.compile: softmax, column sums and scaling fused around Rᵀ X."""

    summary = "FastHebb compiled by torch.compile (inductor), per shape"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return call_compiled(swta_fh, x, y, w, float(self.temperature))


@register("hpca", "fh-compiled")
class HPCACompiled(CompiledStep, HPCAFastHebb):
    """HPCA-FH through torch.compile: tril and the epilogue fused around the three products."""

    summary = "FastHebb compiled by torch.compile (inductor), per shape"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return call_compiled(hpca_fh, x, y, w)

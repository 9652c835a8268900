"""Public API of Hebbian rules: ``available()``, ``get(rule, impl, **options)``, ``register``.

    from hebbbench import rules
    rules.available()                                   # [("hpca", "fh"), ...]
    r = rules.get("swta", impl="fh", temperature=0.02)
    dw = r.update(x, y, w)    # x (N,D), y (N,M), w (M,D) -> dw (M,D), dtype/device of w

Rules: ``swta`` and ``hpca`` (the paper's), and the local rules ``kwta``, ``oja``, ``krotov``
and ``hebb`` (``local.py``: all of the form ΔW = (Aᵀ X − diag(c) W) / N).

Importing this module registers the FastHebb forms (``fh``, one per rule module), the
per-sample baselines (``naive``, ``loop``, in the top-level ``baselines/`` folder,
installed as ``hebbbench.baselines``) and the implementations beyond FastHebb:

- ``fh-conv`` (every rule): conv layers without the N×D patch matrix;
- ``fh-blocked``, ``fh-auto`` (hpca): neurons in blocks; the cheaper of fh and blocked per shape;
- ``autograd`` (swta, hpca): minus the gradient of a surrogate loss, by torch.autograd;
- ``fh-tf32``, ``fh-bf16`` (swta, hpca): reduced-precision products, each with its ``rtol``;
- ``fh-compiled`` (swta, hpca): torch.compile per shape (``prepare()`` compiles outside timing);
- ``fh-triton`` (swta, CUDA): a fused Triton kernel (triton imported on first use).
- ``fh-graph`` (swta, hpca, CUDA): the update and the layer step replayed from CUDA graphs.

An implementation that cannot run on this machine raises :class:`Unavailable`.

Temporary registrations (test doubles, experiments): ``with rules.scoped(): ...`` undoes every
change to the registry made in the block; ``with rules.registered(rule, impl, cls): ...``
registers one class for the block only; ``unregister(rule, impl)`` removes one pair.
"""

from hebbbench.rules.registry import (
    Unavailable,
    Update,
    available,
    define_rule,
    get,
    impls,
    lookup,
    register,
    registered,
    rule_class,
    rules,
    scoped,
    unregister,
)
from hebbbench.rules.swta import SWTA
from hebbbench.rules.hpca import HPCA
from hebbbench.rules.kwta import KWTA
from hebbbench.rules.oja import Oja
from hebbbench.rules.krotov import Krotov
from hebbbench.rules.hebb import Hebb

import hebbbench.baselines  # noqa: E402,F401  (registers naive and loop)
from hebbbench.rules import fh_conv  # noqa: E402,F401  (registers fh-conv)
from hebbbench.rules import hpca_blocked  # noqa: E402,F401  (registers fh-blocked, fh-auto)
from hebbbench.rules import autograd  # noqa: E402,F401  (registers autograd)
from hebbbench.rules import precision  # noqa: E402,F401  (registers fh-tf32, fh-bf16)
from hebbbench.rules import compiled  # noqa: E402,F401  (registers fh-compiled)
from hebbbench.rules import swta_triton  # noqa: E402,F401  (registers fh-triton; triton imported on use)
from hebbbench.rules import graphed  # noqa: E402,F401  (registers fh-graph)

from hebbbench.rules import registry  # noqa: E402

registry.freeze_builtins()

__all__ = [
    "HPCA", "KWTA", "SWTA", "Hebb", "Krotov", "Oja", "Unavailable", "Update", "available", "define_rule",
    "get", "impls", "lookup", "register", "registered", "rule_class", "rules", "scoped", "unregister",
]

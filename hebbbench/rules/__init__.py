"""Public API of Hebbian rules: ``available()``, ``get(rule, impl, **options)``, ``register``.

    from hebbbench import rules
    rules.available()                                   # [("hpca", "fh"), ...]
    r = rules.get("swta", impl="fh", temperature=0.02)
    dw = r.update(x, y, w)    # x (N,D), y (N,M), w (M,D) -> dw (M,D), dtype/device of w

Importing this module registers the FastHebb forms (``fh``, here) and the per-sample
baselines (``naive``, ``loop``, in the top-level ``baselines/`` folder, installed as
``hebbbench.baselines``).
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
    rule_class,
    rules,
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

__all__ = [
    "HPCA", "KWTA", "SWTA", "Hebb", "Krotov", "Oja", "Unavailable", "Update", "available", "define_rule", "get", "impls", "lookup",
    "register", "rule_class", "rules", "unregister",
]

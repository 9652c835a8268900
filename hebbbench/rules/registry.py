"""One registry of Hebbian updates, keyed by (rule, impl).

A *rule* is a learning rule defined by its maths (docs/design.md §2): a subclass of
:class:`Update` that knows its options (e.g. SWTA's temperature) and its float64
per-sample reference. An *implementation* is a subclass of that rule class that
computes the same ΔW another way (FastHebb matrix form, grouped per-sample
baseline, literal loop, ...). The harness, the CLI, the tests and users' own code
all discover implementations here (the registry pattern of timm's `_registry.py`).

    @rules.register("swta", "mine")
    class MySWTA(rules.SWTA):
        def delta(self, x, y, w): ...

Every update is ``dw = r.update(x, y, w)`` with x (N,D), y (N,M), w (M,D) -> dw (M,D).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import importlib.metadata
import warnings
from typing import Any, ClassVar

import torch
from torch import Tensor

from hebbbench.rules.conv import ConvGeometry, responses_to_rows

ENTRY_POINT_GROUP = "hebbbench.rules"


class Unavailable(RuntimeError):
    """An implementation cannot run here (no compiler, package or device it needs); the message says why.

    Raised by the call, never replaced by a silent fallback; the harness records it as a
    skipped case and the tests skip with its message.
    """


class Update:
    """Base of every rule and implementation: validated options, shape checks, cost model.

    Subclasses set ``options`` (name -> default; merged along the class hierarchy) and
    implement :meth:`delta`. Rule classes also implement :meth:`reference`.

    Optional hooks, for implementations that need them (defaults suit plain eager code):

    - ``compute_dtype``: the precision of the main products whatever the input dtype
      (e.g. bfloat16); None means the input dtype. When set, the error against the
      reference is bounded by ``rtol`` in every input dtype, float64 included.
    - ``compiles``: True when the first call with a new (shape, dtype, device) compiles
      code (torch.compile, a Triton JIT), so it must happen before timing.
    - :meth:`prepare`: does that one-time work outside timing and returns its seconds.
    - :meth:`wrap_step`: a whole-step form for the layers (fh-compiled compiles the step,
      fh-graph captures it in a CUDA graph).
    - :meth:`magnitude` (rule classes): the element-wise size of ΔW's terms, the scale the
      equivalence tests hold an update to where those terms cancel.
    """

    rule: ClassVar[str] = ""
    impl: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: device types the implementation runs on; others are recorded as skipped.
    device_types: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    #: relative error allowed against the float64 reference in float32 (None: by dtype).
    rtol: ClassVar[float | None] = None
    #: fixed precision of the main products whatever the input dtype (None: the input's).
    compute_dtype: ClassVar[torch.dtype | None] = None
    #: the precision of its float32 products and convolutions (rules/fp32_precision.py): IEEE
    #: float32 unless the implementation's name says otherwise (fh-tf32: "tf32"); the harness sets it.
    fp32_precision: ClassVar[str] = "ieee"
    #: True when a first call with a new (shape, dtype, device) compiles code.
    compiles: ClassVar[bool] = False
    #: layer kind -> the implementation whose code this one runs on such layers (fh-conv is fh on
    #: linear layers); the harness does not time the same code twice in one case.
    same_as_on: ClassVar[dict[str, str]] = {}

    def __init__(self, **options: Any) -> None:
        allowed = self.default_options()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            names = ", ".join(sorted(allowed)) or "none"
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)} for {self.rule}/{self.impl}; allowed: {names}"
            )
        for name, default in allowed.items():
            setattr(self, name, options.get(name, default))
        self.check_options()

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "options", {}) or {})
        return merged

    def option_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.default_options()}

    def check_options(self) -> None:
        """Raise ValueError for an option value outside its domain."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.option_values().items())
        return f"{self.rule}/{self.impl}({opts})"

    # -- the update -------------------------------------------------------------------
    def update(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """ΔW (M,D) from rows x (N,D), responses y (N,M) and weights w (M,D); dtype/device of w."""
        check_shapes(x, y, w)
        x = x.to(device=w.device, dtype=w.dtype)
        y = y.to(device=w.device, dtype=w.dtype)
        return self.delta(x, y, w)

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The per-sample formula of docs/design.md §2 in float64 (the ground truth)."""
        raise NotImplementedError

    def magnitude(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor | None:
        """Element-wise size of the terms ΔW sums, in float64 (≥ |ΔW|); None if the rule does not state it.

        The scale of any float implementation's rounding error (numerics.terms_error): where
        the terms cancel, ‖ΔW‖ is far below it and no relative bound on ‖ΔW‖ holds.
        """
        return None

    def prepare(self, x: Tensor, y: Tensor, w: Tensor) -> float:
        """One-time work for these shapes (compilation, JIT) outside timing; returns its seconds.

        The default has nothing to do and returns 0.0; implementations with ``compiles``
        run the update once and return the time of that first call.
        """
        return 0.0

    def wrap_step(self, layer: Any, step_with: Callable[["Update"], Callable[[Tensor], Tensor]]
                  ) -> Callable[[Tensor], Tensor] | None:
        """An optional whole-step form of a layer's Hebbian step (compiled, or captured in a CUDA graph).

        ``step_with(rule)`` is the layer's eager step using ``rule`` (:func:`hebbbench.nn.step.eager_step`:
        forward, rows, update, then the apply W ← W + ηΔW or, in data-parallel training, ΔW
        written into the all-reduce buffer); ``layer`` owns the weights. The default, None,
        keeps the eager step.
        """
        return None

    def conv_update(self, inputs: Tensor, responses: Tensor, w: Tensor, geometry: ConvGeometry) -> Tensor:
        """ΔW for a conv layer from its input images and output maps.

        inputs (B,C,H,W), responses (B,M,Ho,Wo), w (M,D) -> (M,D). The default unfolds
        the patch rows and calls :meth:`update`; implementations that avoid the
        N×D patch matrix override it.
        """
        x = geometry.rows(inputs)  # (B*Ho*Wo, C*k*k)
        y = responses_to_rows(responses)  # (B*Ho*Wo, M)
        return self.update(x, y, w)

    # -- analytic cost model (per update; n rows, m neurons, d inputs) ------------------
    def flops(self, n: int, m: int, d: int) -> float:
        """Floating-point operations of one update."""
        return 2.0 * n * m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        """Bytes read and written by one update with ideal reuse of intermediates."""
        return float(itemsize) * (n * d + n * m + 2 * m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        """Predicted peak bytes allocated by one update beyond its inputs."""
        return float(itemsize) * (n * m + 2 * m * d)

    def overhead_seconds(self, n: int, m: int, d: int) -> float:
        """Time not explained by FLOPs or bytes (interpreter loops, launches)."""
        return 0.0

    @classmethod
    def supports(cls, device: torch.device | str) -> bool:
        return torch.device(device).type in cls.device_types


def check_shapes(x: Tensor, y: Tensor, w: Tensor) -> None:
    """Raise ValueError unless x (N,D), y (N,M), w (M,D) agree."""
    expected = "expected x (N, D), y (N, M), w (M, D)"
    for name, t in (("x", x), ("y", y), ("w", w)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}; {expected}")
    got = f"got x {tuple(x.shape)}, y {tuple(y.shape)}, w {tuple(w.shape)}"
    if x.dim() != 2 or y.dim() != 2 or w.dim() != 2:
        raise ValueError(f"{expected}, all 2-D; {got}")
    (n, d), (ny, m), (mw, dw) = x.shape, y.shape, w.shape
    if n != ny or m != mw or d != dw:
        raise ValueError(f"{expected}; {got}")
    if n == 0 or m == 0 or d == 0:
        raise ValueError(f"{expected} with N, M, D >= 1; {got}")
    if not w.is_floating_point():
        raise ValueError(f"w must be a floating-point tensor, got {w.dtype}")


# -- the registry ------------------------------------------------------------------------
_RULES: dict[str, type[Update]] = {}
_IMPLS: dict[tuple[str, str], type[Update]] = {}
_plugins_loaded = False
_BUILTIN: dict[tuple[str, str], type[Update]] = {}  # the registry as hebbbench's own modules leave it


def freeze_builtins() -> None:
    """Record the registry as importing hebbbench.rules leaves it (called once, at the end of that import)."""
    _BUILTIN.update(_IMPLS)
_UNSET = object()


def define_rule(name: str):
    """Class decorator: make ``cls`` the rule called ``name`` (its implementations subclass it)."""

    def wrap(cls: type[Update]) -> type[Update]:
        if not (isinstance(cls, type) and issubclass(cls, Update)):
            raise TypeError(f"rule {name!r} must be a subclass of hebbbench.rules.Update")
        if name in _RULES and _RULES[name] is not cls:
            warnings.warn(f"redefining rule {name!r}", stacklevel=2)
        cls.rule = name
        _RULES[name] = cls
        return cls

    return wrap


def register(rule: str, impl: str, *, overwrite: bool = False):
    """Class decorator: register ``cls`` (a subclass of the rule's class) as (rule, impl)."""

    def wrap(cls: type[Update]) -> type[Update]:
        if rule not in _RULES:
            raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(rules())}")
        if not (isinstance(cls, type) and issubclass(cls, _RULES[rule])):
            raise TypeError(f"{cls!r} must subclass the {rule} rule class {_RULES[rule].__name__}")
        if not impl or not isinstance(impl, str):
            raise ValueError("impl must be a non-empty string")
        key = (rule, impl)
        if key in _IMPLS and _IMPLS[key] is not cls:
            if not overwrite:
                raise ValueError(f"{rule}/{impl} is already registered (pass overwrite=True to replace it)")
            warnings.warn(f"overwriting {rule}/{impl}", stacklevel=2)
        cls.impl = impl
        _IMPLS[key] = cls
        return cls

    return wrap


def unregister(rule: str, impl: str) -> None:
    """Remove (rule, impl) from the registry (for tests and notebooks)."""
    _IMPLS.pop((rule, impl), None)


@contextmanager
def scoped() -> Iterator[None]:
    """Undo, on leaving the block, every change made to the registry inside it.

    Registrations, overwrites, unregistrations and rule definitions made in the block are
    reverted when it exits (normally or by an exception): the registry is again exactly
    what it was on entry, the same classes under the same keys, and each class's ``rule``
    and ``impl`` attributes are restored. Inside the block :func:`register` keeps all its
    checks (a taken name needs ``overwrite=True``, the class must subclass the rule's class).
    For test doubles and notebook experiments::

        with rules.scoped():
            rules.register("hpca", "mine")(MyHPCA)
            ...                              # ("hpca", "mine") is available here
        # ... and gone here

    Entry-point plugins are loaded on entry, so a block never drops them.
    """
    _load_plugins()
    rules_before, impls_before = dict(_RULES), dict(_IMPLS)
    names = {cls: (cls.__dict__.get("rule", _UNSET), cls.__dict__.get("impl", _UNSET))
             for cls in {*rules_before.values(), *impls_before.values()}}
    try:
        yield
    finally:
        _RULES.clear()
        _RULES.update(rules_before)
        _IMPLS.clear()
        _IMPLS.update(impls_before)
        for cls, (rule, impl) in names.items():
            for attr, value in (("rule", rule), ("impl", impl)):
                if value is _UNSET:
                    if attr in cls.__dict__:
                        delattr(cls, attr)
                else:
                    setattr(cls, attr, value)


@contextmanager
def registered(rule: str, impl: str, cls: type[Update], *, overwrite: bool = False) -> Iterator[type[Update]]:
    """Register ``cls`` as (rule, impl) for the block only (:func:`register`'s checks, then :func:`scoped`).

        with rules.registered("hpca", "fh", HPCATwice, overwrite=True):
            ...                              # ("hpca", "fh") is HPCATwice here, the built-in fh again after
    """
    with scoped():
        yield register(rule, impl, overwrite=overwrite)(cls)


def own_entries() -> dict[str, Any]:
    """The registry's entries that a fresh process does not get by importing hebbbench and its
    entry-point plugins (implementations and rules registered or replaced at run time), to be
    sent to worker processes (:func:`adopt`). Classes travel by reference: each must be defined
    at the top level of an importable module; ValueError names the one that is not."""
    import pickle

    _load_plugins()
    own = {"rules": {name: cls for name, cls in _RULES.items() if not _builtin(cls)},
           "impls": {key: cls for key, cls in _IMPLS.items() if not _builtin(cls) or _BUILTIN.get(key) is not cls}}
    for key, cls in [*own["rules"].items(), *own["impls"].items()]:
        try:
            pickle.loads(pickle.dumps(cls))
        except Exception:  # noqa: BLE001 - any reason it cannot travel
            name = "/".join(key) if isinstance(key, tuple) else key
            raise ValueError(f"{name} ({cls.__module__}.{cls.__qualname__}) cannot be sent to the worker processes "
                             "that measure: define it at the top level of an importable module (and pass that "
                             "module with --import / imports=)") from None
    return own


def adopt(entries: dict[str, Any]) -> None:
    """In a worker process: make the registry what :func:`own_entries` saw in the parent."""
    _load_plugins()
    for name, cls in entries.get("rules", {}).items():
        if _RULES.get(name) is not cls:
            _RULES[name] = cls
            cls.rule = name
    for (rule, impl), cls in entries.get("impls", {}).items():
        if _IMPLS.get((rule, impl)) is not cls:
            _IMPLS[(rule, impl)] = cls
            cls.impl = impl


def _builtin(cls: type) -> bool:
    return cls.__module__.split(".")[0] in ("hebbbench", "baselines")


def _load_plugins() -> None:
    """Import packages that declare implementations under the `hebbbench.rules` entry point."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def rules() -> list[str]:
    """Names of the defined rules, sorted."""
    _load_plugins()
    return sorted(_RULES)


def impls(rule: str | None = None) -> list[str]:
    """Names of the implementations (of one rule, or of any), sorted."""
    return sorted({i for r, i in available() if rule is None or r == rule})


def available(rule: str = "*", impl: str = "*") -> list[tuple[str, str]]:
    """Registered (rule, impl) pairs, optionally filtered by fnmatch patterns, sorted."""
    _load_plugins()
    return sorted(k for k in _IMPLS if fnmatch.fnmatchcase(k[0], rule) and fnmatch.fnmatchcase(k[1], impl))


def lookup(rule: str, impl: str) -> type[Update]:
    """The class registered as (rule, impl); ValueError naming the allowed values otherwise."""
    _load_plugins()
    if rule not in _RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(rules())}")
    if (rule, impl) not in _IMPLS:
        raise ValueError(f"unknown impl {impl!r} for rule {rule!r}; allowed: {', '.join(impls(rule))}")
    return _IMPLS[(rule, impl)]


def get(rule: str, impl: str = "fh", **options: Any) -> Update:
    """An instance of (rule, impl) with the given keyword options."""
    return lookup(rule, impl)(**options)


def rule_class(rule: str) -> type[Update]:
    _load_plugins()
    if rule not in _RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(rules())}")
    return _RULES[rule]

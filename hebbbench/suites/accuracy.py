"""``hebbbench accuracy``: speed that still learns — accuracy against label fraction, and the parity gate.

The semi-supervised sample-efficiency protocol of Lagani, Falchi, Gennaro, Amato, "Hebbian
semi-supervised learning in a sample efficiency setting" (Neural Networks 2021), which FastHebb
(Lagani et al., "FastHebb: Scaling Hebbian training of deep neural networks to ImageNet level",
Neurocomputing 2024) exists to speed up. For a network, a rule and an implementation, per seed:

1. **Hebbian phase** (no labels): ``epochs`` passes over ``hebbian_images`` images of the training
   split, shuffled by the seed, in mini-batches of ``batch`` (the last partial batch dropped), each
   a network step (:func:`hebbbench.nn.step.network_step`) of every Hebbian layer. Its wall time
   (the steps alone, the device synchronised) is ``hebbian_s``. Layer l's learning rate is
   η_l = ``lr`` for SWTA (a step toward the winners' mean, convex for η ≤ 1) and η_l = ``lr`` /
   mean_n ‖x_n‖² for HPCA, the mean over the rows of the layer's input on the first batch at the
   starting weights: it bounds η_l·λ_max(XᵀX/N) by ``lr``, the stability condition of Sanger's rule.
2. **Probe** (method ``probe``): the Hebbian layers frozen, a linear classifier on the last one's
   flattened output, trained by SGD (momentum 0.9) on the labelled subset of the fraction f for
   ``probe_steps`` mini-batches; features standardised by the mean and deviation over the whole
   training split (its images, not their labels, are known in the semi-supervised setting).
3. **Fine-tuning** (method ``finetune``, the papers' backprop variant): the whole net — Hebbian
   weights as the start, and the classifier — trained by backprop on the same subset for
   ``backprop_steps`` mini-batches (for the implementations in ``finetune_impls``: exact
   reformulations reach the same weights, which the parity gate checks).

Baselines, per seed and fraction, from the same starting weights: ``backprop`` (the same network
trained end to end by backprop on the same labelled subset, the fine-tuning's procedure without the
Hebbian phase) and ``random`` (the starting layers frozen, the probe's classifier on top).
Every accuracy is measured on the held-out split (:mod:`hebbbench.nn.labelled`), the same for all
seeds. Batch norm always normalises with the statistics of the batch at hand (docs/design.md §3),
so features are computed in fixed chunks of ``EVAL_CHUNK`` images, in order.

**Time to accuracy**: every ``probe_every`` Hebbian steps (and at step 0) the probe at
``curve_fraction`` is trained and evaluated, outside the timed steps; the time to accuracy of a
run is the Hebbian time at the first check whose accuracy reaches ``target``.

**Parity gate** (on the first seed): every implementation registered for the rule that runs on
the device (but ``loop``, far too slow for a network) is trained through the same Hebbian phase
from the same starting weights. Exact reformulations must end within ``WEIGHT_RTOL`` of fh's
weights (relative Frobenius difference over all layers; float32's tolerance in docs/design.md §4)
and within ``EXACT_PP`` percentage points of fh's probe accuracy at every fraction; approximate
ones (an implementation with its own tolerance or a fixed reduced compute precision: ``fh-bf16``,
``fh-tf32``) within ``APPROX_PP`` points, or they are flagged.

Files of the set (:class:`AccuracySet`): ``results.csv``, one row per (method, rule, implementation,
seed, fraction) with ``labels`` (the subset's size), ``accuracy`` (held-out, in [0, 1]), ``hebbian_s``
and ``train_s`` (the classifier's or backprop's seconds) and the store's ``status``/``reason``
(baselines have no rule or implementation); ``curve.csv``, the time-to-accuracy points (``step``,
``hebbian_s``, ``accuracy``); ``parity.csv``, one row per (rule, implementation) of the gate; env.json
(kind ``accuracy``) with the configuration, what was trained, the data and the environment.

The CI form (the defaults) trains the first two Hebbian layers of the 6-layer net at 1/8 width
(conv1 12 and conv2 16 channels) on scikit-learn's digits resized to 32×32, one Hebbian pass over
512 images (8 steps), three seeds: small enough for minutes on two CPU cores. ``--width 1 --depth 5`` and
the paper's 20 epochs train the whole network.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hebbbench import rules, store
from hebbbench.errors import UserError
from hebbbench.measure import conditions, environment
from hebbbench.measure.devices import device_name
from hebbbench.nn import labelled
from hebbbench.nn.data import DATASETS
from hebbbench.nn.networks import NETWORKS, HebbianNetwork, NetworkSpec, layer_shapes, scale_spec, split_options
from hebbbench.nn.training import layer_inputs, load_weights, weights
from hebbbench.rules import fp32_precision
from hebbbench.rules.specs import parse_spec
from hebbbench.suites.netcase import variant_label

KIND = store.Kind.ACCURACY
RESULTS, CURVE, PARITY = "results.csv", "curve.csv", "parity.csv"
#: methods of a row: Hebbian layers with a trained classifier, fine-tuned by backprop, and the baselines.
PROBE, FINETUNE, BACKPROP, RANDOM = "probe", "finetune", "backprop", "random"
METHODS = (PROBE, FINETUNE, BACKPROP, RANDOM)
#: images per forward pass when features and accuracies are computed (batch norm uses each chunk's statistics).
EVAL_CHUNK = 256
#: the implementation every other is held to in the parity gate.
REFERENCE = "fh"
#: parity tolerances: weights (exact reformulations, relative), accuracy in percentage points.
WEIGHT_RTOL = 1e-4
EXACT_PP, APPROX_PP = 0.2, 1.0
#: implementations the parity gate leaves out: the literal per-sample loop takes hours on a network.
NOT_IN_PARITY = ("loop",)
#: the classifier's and backprop's SGD: learning rate, momentum, mini-batch (at most).
PROBE_LR, BACKPROP_LR, MOMENTUM, SGD_BATCH = 0.05, 0.02, 0.9, 32

RESULT_COLUMNS = ["schema", "run_id", "dataset", "network", "rule", "impl", "label", "method", "seed", "fraction",
                  "labels", "accuracy", "hebbian_s", "train_s", "status", "reason"]
CURVE_COLUMNS = ["run_id", "rule", "impl", "label", "seed", "step", "images", "hebbian_s", "fraction", "accuracy"]
PARITY_COLUMNS = ["run_id", "rule", "impl", "label", "kind", "seed", "steps", "weight_rel_diff", "weight_rtol",
                  "accuracy_diff_pp", "accuracy_tol_pp", "verdict", "status", "reason"]


@dataclass(frozen=True)
class AccuracyConfig:
    """Everything one ``hebbbench accuracy`` run takes; env.json records it (``config``)."""

    dataset: str = "digits"
    data_root: str | None = None
    max_images: int | None = None  # a stratified subset of a data-root set (None: all of it)
    network: str = "6layer"
    width: float = 0.125  # every Hebbian layer's channels times this
    depth: int = 2  # the first `depth` Hebbian layers are trained, and probed on the last of them
    rules: tuple[str, ...] = ("swta", "hpca")
    impls: tuple[str, ...] = ("fh", "naive")
    finetune_impls: tuple[str, ...] = ("fh",)
    parity: bool = True
    parity_impls: tuple[str, ...] | None = None  # None: every implementation the gate takes (parity_impls())
    fractions: tuple[float, ...] = (0.02, 0.05, 0.2, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 1
    hebbian_images: int | None = 512  # images per Hebbian epoch (None: the whole training split)
    batch: int = 64
    lr: float = 0.5
    probe_steps: int = 100
    backprop_steps: int = 40
    probe_every: int = 4
    curve_fraction: float = 0.2
    target: float = 0.9
    test_fraction: float = 1 / 3
    split_seed: int = 0
    device: str = "cpu"
    threads: int | None = 1  # CPU threads (None: torch's default); one by default: small work, shared cores

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def spec(self) -> NetworkSpec:
        """The network trained: the first ``depth`` Hebbian layers of ``network`` at ``width``."""
        base = scale_spec(self.network, width=self.width)
        return dataclasses.replace(base, layers=base.layers[: self.depth])

    def curve_at(self) -> float:
        return self.curve_fraction

    def variants(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(label, impl, options) of each implementation item."""
        out = []
        for item in self.impls:
            spec = parse_spec(item, "impl", "--impls")
            out.append((variant_label(spec.name, spec.kwargs), spec.name, spec.kwargs))
        return out


def check(config: AccuracyConfig) -> None:
    """Refuse, in one line each, what cannot run (before any folder is made)."""
    if config.network not in NETWORKS:
        raise UserError(f"unknown network {config.network!r}; allowed: {', '.join(NETWORKS)}")
    spec = NETWORKS[config.network]
    if config.dataset in DATASETS and config.dataset not in spec.datasets:
        raise UserError(f"network {config.network} is not defined for {config.dataset}; allowed: digits, "
                        f"{', '.join(spec.datasets)}")
    if not 1 <= config.depth <= len(spec.layers):
        raise UserError(f"--depth must be 1 to {len(spec.layers)} for {config.network}, got {config.depth}")
    if not (math.isfinite(config.width) and config.width > 0):
        raise UserError(f"--width must be a finite number > 0, got {config.width}")
    try:
        layer_shapes(config.spec())
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not config.fractions or any(not (math.isfinite(f) and 0 < f <= 1) for f in config.fractions):
        raise UserError(f"label fractions must be numbers in (0, 1], got {', '.join(map(str, config.fractions))}")
    if not (math.isfinite(config.curve_fraction) and 0 < config.curve_fraction <= 1):
        raise UserError(f"--curve-fraction must be in (0, 1], got {config.curve_fraction}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds) or any(s < 0 for s in config.seeds):
        raise UserError(f"--seeds must be distinct integers >= 0, got {', '.join(map(str, config.seeds))}")
    for name in ("epochs", "batch", "probe_steps", "backprop_steps", "probe_every"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    for name in ("hebbian_images", "max_images", "threads"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise UserError(f"--lr must be a finite number > 0, got {config.lr}")
    if not 0 < config.test_fraction < 1:
        raise UserError(f"--test-fraction must be in (0, 1), got {config.test_fraction}")
    if not 0 <= config.target <= 1:
        raise UserError(f"--target must be an accuracy in [0, 1], got {config.target}")
    if config.device != "cpu" and not config.device.startswith("cuda"):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {config.device!r}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {config.device} requested but CUDA is not available here")
    if not config.rules:
        raise UserError("give at least one rule")
    for rule in config.rules:
        if rule not in rules.registry.rules():
            raise UserError(f"unknown rule {rule!r}; allowed: {', '.join(rules.registry.rules())}")
    labels = [label for label, _, _ in config.variants()]
    if len(set(labels)) != len(labels):
        raise UserError(f"implementations listed twice: {', '.join(labels)}")
    for label, impl, _ in config.variants():
        if not any((rule, impl) in rules.available() for rule in config.rules):
            raise UserError(f"unknown impl {impl!r} for rules {', '.join(config.rules)}; allowed: "
                            f"{', '.join(sorted({i for r, i in rules.available() if r in config.rules}))}")
    registered = {i for r, i in rules.available() if r in config.rules}
    for impl in config.parity_impls or ():
        if impl not in registered:
            raise UserError(f"unknown impl {impl!r} in --parity-impls; allowed: {', '.join(sorted(registered))}")
    unknown = [i for i in config.finetune_impls if i not in labels]
    if unknown:
        raise UserError(f"--finetune-impls {', '.join(unknown)} must be among --impls ({', '.join(labels)})")


# -- training -------------------------------------------------------------------------------------
def build(config: AccuracyConfig, rule: str, impl: str, options: dict[str, Any], seed: int,
          classes: int) -> HebbianNetwork:
    """The network with the seed's starting weights (the same for every rule and implementation)."""
    generator = torch.Generator().manual_seed(seed)
    own, impl_options = split_options(rule, options)
    return HebbianNetwork(config.spec(), rule, impl, classes=classes, lr=1.0, generator=generator,
                          device=config.device, dtype=torch.float32, rule_options=own, impl_options=impl_options)


def set_rates(net: HebbianNetwork, rule: str, lr: float, first: Tensor) -> dict[str, float]:
    """Each layer's η (module docstring): ``lr``, over mean_n ‖x_n‖² of its input rows for HPCA."""
    rates = {}
    captured = layer_inputs(net, first)
    for name, layer in net.hebbian_layers.items():
        h = captured[name][0]
        rows = layer.rows(h) if hasattr(layer, "rows") else h.flatten(1)  # (N, D)
        scale = float(rows.double().pow(2).sum(1).mean()) if rule == "hpca" else 1.0
        layer.lr = rates[name] = lr / scale
    return rates


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@torch.no_grad()
def features(net: HebbianNetwork, images: Tensor) -> Tensor:
    """The last Hebbian layer's output, flattened, in chunks of EVAL_CHUNK: (n,3,S,S) -> (n,F)."""
    return torch.cat([net.features(images[i:i + EVAL_CHUNK]) for i in range(0, len(images), EVAL_CHUNK)])


def _batches(count: int, n: int, batch: int, generator: torch.Generator) -> list[Tensor]:
    """``count`` mini-batch index sets of min(batch, n), from successive seeded permutations of n."""
    size, out, order = min(batch, n), [], torch.empty(0, dtype=torch.long)
    while len(out) < count:
        if len(order) < size:
            order = torch.randperm(n, generator=generator)
        out.append(order[:size])
        order = order[size:]
    return out


def probe(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
          classes: int, steps: int, seed: int, scale: tuple[Tensor, Tensor]) -> float:
    """Held-out accuracy of a linear classifier trained by SGD on frozen features (n,F), standardised by
    ``scale`` = (mean (F,), deviation (F,))."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = scale
    torch.manual_seed(seed)
    classifier = torch.nn.Linear(train_features.shape[1], classes).to(train_features.device)
    optimiser = torch.optim.SGD(classifier.parameters(), lr=PROBE_LR, momentum=MOMENTUM)
    for index in _batches(steps, len(train_features), SGD_BATCH, generator):
        x = (train_features[index] - mean) / std  # (b,F)
        loss = torch.nn.functional.cross_entropy(classifier(x), train_labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = classifier((test_features - mean) / std).argmax(1)  # (n_test,)
    return float((predicted == test_labels).float().mean())


def backprop(net: HebbianNetwork, images: Tensor, labels: Tensor, test: labelled.Labelled, steps: int,
             seed: int) -> float:
    """Train a copy of ``net`` end to end by backprop (Hebbian weights and classifier); its held-out accuracy."""
    import copy

    net = copy.deepcopy(net)
    generator = torch.Generator().manual_seed(seed)
    params = [layer.weight.requires_grad_(True) for layer in net.hebbian_layers.values()]
    params += list(net.classifier.parameters())
    optimiser = torch.optim.SGD(params, lr=BACKPROP_LR, momentum=MOMENTUM)
    for index in _batches(steps, len(images), SGD_BATCH, generator):
        loss = torch.nn.functional.cross_entropy(net(images[index]), labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = torch.cat([net(test.images[i:i + EVAL_CHUNK]).argmax(1)
                               for i in range(0, len(test.images), EVAL_CHUNK)])  # (n_test,)
    return float((predicted == test.labels.to(predicted.device)).float().mean())


@dataclass
class HebbianRun:
    """What the Hebbian phase left: the weights, the steps' wall time, the accuracy curve."""

    weights: dict[str, Tensor]
    hebbian_s: float
    steps: int
    curve: list[dict[str, Any]]
    finite: bool
    probe: dict[float, float] = dataclasses.field(default_factory=dict)  # fraction -> the probe's accuracy


class Trainer:
    """The run's data on the device, its label subsets, and the training procedures of the module docstring."""

    def __init__(self, config: AccuracyConfig, data: labelled.Split) -> None:
        self.config = config
        self.train = dataclasses.replace(data.train, images=data.train.images.to(config.device),
                                         labels=data.train.labels.to(config.device))
        self.test = dataclasses.replace(data.test, images=data.test.images.to(config.device),
                                        labels=data.test.labels.to(config.device))
        self.classes = data.train.classes
        self.subsets = {(seed, f): labelled.label_subset(data.train.labels, f, seed).to(config.device)
                        for seed in config.seeds for f in {*config.fractions, config.curve_at()}}

    def probe_accuracy(self, net: HebbianNetwork, fractions, seed: int) -> dict[float, float]:
        """The probe's held-out accuracy at each fraction (features computed once)."""
        train_features = features(net, self.train.images)  # (n_train, F)
        test_features = features(net, self.test.images)
        scale = train_features.mean(0), train_features.std(0, unbiased=False) + 1e-6  # (F,), (F,)
        return {f: probe(train_features[self.subsets[(seed, f)]], self.train.labels[self.subsets[(seed, f)]],
                         test_features, self.test.labels, self.classes, self.config.probe_steps, seed, scale)
                for f in fractions}

    def backprop_accuracy(self, net: HebbianNetwork, fraction: float, seed: int) -> float:
        index = self.subsets[(seed, fraction)]
        return backprop(net, self.train.images[index], self.train.labels[index], self.test,
                        self.config.backprop_steps, seed)

    def hebbian(self, net: HebbianNetwork, rule: str, seed: int, curve: bool = True,
                start: float | None = None) -> HebbianRun:
        """The Hebbian phase from ``net``'s weights (changed in place); the curve every ``probe_every`` steps.
        ``start``: the probe's accuracy at the starting weights, when known (the random-features baseline's)."""
        config = self.config
        generator = torch.Generator().manual_seed(seed)
        n = len(self.train.images)
        per_epoch = min(n, config.hebbian_images or n)
        order = [torch.randperm(n, generator=generator)[:per_epoch] for _ in range(config.epochs)]
        batches = [epoch[i:i + config.batch] for epoch in order
                   for i in range(0, per_epoch - config.batch + 1, config.batch)]
        if not batches:
            raise UserError(f"--batch {config.batch} is larger than the {per_epoch} images of a Hebbian epoch")
        set_rates(net, rule, config.lr, self.train.images[batches[0]])
        points, seconds = [], 0.0
        at = config.curve_at()

        def check(step: int) -> None:
            if curve:
                accuracy = start if step == 0 and start is not None else self.probe_accuracy(net, [at], seed)[at]
                points.append({"step": step, "images": step * config.batch, "hebbian_s": seconds,
                               "fraction": at, "accuracy": accuracy})

        check(0)
        mode = fp32_precision.mode_of(type(next(iter(net.hebbian_layers.values())).rule))
        for step, index in enumerate(batches, 1):
            images = self.train.images[index]  # (B,3,S,S)
            with fp32_precision.fp32(mode):  # the implementation's precision; the probe's stays IEEE
                sync(config.device)
                t0 = time.perf_counter()
                net.hebbian_step(images)
                sync(config.device)
                seconds += time.perf_counter() - t0
            if step % config.probe_every == 0 or step == len(batches):
                check(step)
        state = weights(net)
        finite = all(bool(torch.isfinite(w).all()) for w in state.values())
        return HebbianRun(state, seconds, len(batches), points, finite)


def weight_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """‖a − b‖_F / ‖b‖_F over all layers (float64)."""
    diff = sum(float(torch.linalg.vector_norm(a[k].double() - b[k].double()) ** 2) for k in b)
    norm = sum(float(torch.linalg.vector_norm(b[k].double()) ** 2) for k in b)
    return math.sqrt(diff) / max(math.sqrt(norm), torch.finfo(torch.float32).tiny)


def approximate(rule: str, impl: str) -> bool:
    """An implementation with its own tolerance or a fixed reduced compute precision (fh-bf16, fh-tf32)."""
    cls = rules.lookup(rule, impl)
    return cls.rtol is not None or cls.compute_dtype is not None


def parity_impls(rule: str, device: str, chosen: tuple[str, ...] | None = None) -> list[str]:
    """Every implementation of ``rule`` that runs on ``device`` (but NOT_IN_PARITY), or those of ``chosen``
    registered for it; fh, the reference, first and always."""
    kind = torch.device(device).type
    found = [impl for r, impl in rules.available(rule) if impl not in NOT_IN_PARITY
             and kind in rules.lookup(r, impl).device_types and (chosen is None or impl in (*chosen, REFERENCE))]
    return sorted(found, key=lambda impl: (impl != REFERENCE, impl))


# -- the result set ---------------------------------------------------------------------------------
class AccuracySet:
    """An accuracy result set being written: results.csv, curve.csv, parity.csv, env.json; each file
    rewritten atomically as rows come (a killed run leaves readable files; it is not resumable)."""

    def __init__(self, path: Path, config: AccuracyConfig, extra_env: dict[str, Any], argv: list[str]) -> None:
        self.path = Path(path)
        self.lock = store.WriterLock.claim(self.path, (RESULTS, store.ENV),
                                           f"{self.path} already holds results; choose another --out")
        self.run_id = self.path.name
        self.tables: dict[str, list[dict[str, Any]]] = {RESULTS: [], CURVE: [], PARITY: []}
        self.env = {"schema_version": store.SCHEMA_VERSION, "kind": KIND.value, "run_id": self.run_id,
                    "started_at": now(), "finished_at": None, "status": "running", "config": config.as_dict(),
                    "network": {"spec": dataclasses.asdict(config.spec()),
                                "layers": [s.as_dict() for s in layer_shapes(config.spec(), config.batch)],
                                "trained": f"the first {config.depth} Hebbian layer(s) of {config.network} at "
                                           f"width x{config.width:g}, probed on the last"},
                    **extra_env, "env": environment.collect(config.seeds[0], argv),
                    "conditions": conditions.describe()}
        self.write_env()
        for name in self.tables:
            self._write(name)

    def add(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.tables[name].extend({"run_id": self.run_id, **row} for row in rows)
        self._write(name)

    def frame(self, name: str) -> pd.DataFrame:
        columns = {RESULTS: RESULT_COLUMNS, CURVE: CURVE_COLUMNS, PARITY: PARITY_COLUMNS}[name]
        return pd.DataFrame(self.tables[name], columns=columns)

    def _write(self, name: str) -> None:
        tmp = self.path / f".{name}.{os.getpid()}.tmp"
        self.frame(name).to_csv(tmp, index=False)
        os.replace(tmp, self.path / name)

    def write_env(self) -> None:
        store.write_env(self.path, self.env)

    def finish(self, status: str = "complete", **changes: Any) -> None:
        self.env.update(status=status, finished_at=now(), **changes)
        self.write_env()
        self.lock.release()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_out(config: AccuracyConfig) -> Path:
    device = config.device.replace(":", "")
    return store.fresh_folder(Path("results") / f"accuracy-{device}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


# -- the run ----------------------------------------------------------------------------------------
def run(config: AccuracyConfig, out: str | Path | None = None, *, argv: list[str] | None = None,
        progress: Callable[[str], None] | None = None) -> Path:
    """Run the suite (module docstring) and write its result set; returns the folder."""
    say = progress or (lambda text: None)
    check(config)
    data = labelled.load(config.dataset, config.spec().input_size, config.data_root, config.max_images,
                         config.split_seed)
    split = labelled.split(data, config.test_fraction, config.split_seed)
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, data, split, out, argv, say)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: AccuracyConfig, data: labelled.Labelled, split: labelled.Split, out: str | Path | None,
         argv: list[str] | None, say: Callable[[str], None]) -> Path:
    folder = Path(out) if out is not None else default_out(config)
    started = time.perf_counter()
    result_set = AccuracySet(folder, config, {
        "data": {"dataset": data.name, "source": data.source, "images": len(data.labels), "classes": data.classes,
                 "train_images": len(split.train.labels), "test_images": len(split.test.labels),
                 "image_size": config.spec().input_size, "split_seed": config.split_seed},
        "device_name": device_name(config.device), "threads": torch.get_num_threads(),
        "tolerances": {"weight_rtol": WEIGHT_RTOL, "exact_pp": EXACT_PP, "approx_pp": APPROX_PP},
        "sgd": {"probe_lr": PROBE_LR, "backprop_lr": BACKPROP_LR, "momentum": MOMENTUM, "batch": SGD_BATCH,
                "eval_chunk": EVAL_CHUNK}}, argv if argv is not None else sys.argv)
    try:
        # as every command that measures: subnormals flushed, float32 products and convolutions in IEEE
        # precision (a Hebbian phase in its implementation's own: Trainer.hebbian)
        with conditions.flushed_subnormals(), fp32_precision.fp32("ieee"):
            _measure(config, Trainer(config, split), result_set, say)
    except BaseException:
        result_set.finish("interrupted")
        raise
    result_set.finish(wall_s=time.perf_counter() - started)
    return result_set.path


def _row(config: AccuracyConfig, rule: str, impl: str, label: str, method: str, seed: int, fraction: float,
         count: int, accuracy: float, hebbian_s: float | None = None, train_s: float | None = None,
         status: str = store.Status.OK.value, reason: str = "") -> dict[str, Any]:
    return {"schema": store.SCHEMA_VERSION, "dataset": config.dataset, "network": config.network, "rule": rule,
            "impl": impl, "label": label, "method": method, "seed": seed, "fraction": fraction, "labels": count,
            "accuracy": accuracy, "hebbian_s": hebbian_s, "train_s": train_s, "status": status, "reason": reason}


def _measure(config: AccuracyConfig, trainer: Trainer, result_set: AccuracySet, say: Callable[[str], None]) -> None:
    classes, fractions = trainer.classes, list(config.fractions)
    first_rule = config.rules[0]
    starts: dict[int, float] = {}  # seed -> the probe's accuracy at the starting weights, at the curve's fraction
    for seed in config.seeds:
        start = build(config, first_rule, REFERENCE if (first_rule, REFERENCE) in rules.available() else
                      rules.registry.impls(first_rule)[0], {}, seed, classes)
        say(f"seed {seed}: baselines (random features, backprop)")
        t0 = time.perf_counter()
        random = trainer.probe_accuracy(start, dict.fromkeys([*fractions, config.curve_at()]), seed)
        probe_s = (time.perf_counter() - t0) / len(random)
        starts[seed] = random[config.curve_at()]
        rows = [_row(config, "", "", "", RANDOM, seed, f, len(trainer.subsets[(seed, f)]), random[f],
                     train_s=probe_s) for f in fractions]
        for f in fractions:
            t0 = time.perf_counter()
            accuracy = trainer.backprop_accuracy(start, f, seed)
            rows.append(_row(config, "", "", "", BACKPROP, seed, f, len(trainer.subsets[(seed, f)]), accuracy,
                             train_s=time.perf_counter() - t0))
        result_set.add(RESULTS, rows)
    runs: dict[tuple[str, str, int], HebbianRun] = {}
    for rule in config.rules:
        for seed in config.seeds:
            for label, impl, options in config.variants():
                if (rule, impl) not in rules.available():
                    continue
                say(f"{rule} {label} seed {seed}: Hebbian phase, probes" +
                    (", fine-tuning" if label in config.finetune_impls else ""))
                result_set.add(RESULTS, _hebbian_rows(config, trainer, rule, impl, label, options, seed, runs,
                                                      result_set, starts.get(seed)))
        if config.parity:
            say(f"{rule}: parity gate")
            result_set.add(PARITY, _parity_rows(config, trainer, rule, runs, result_set))


def _hebbian_rows(config: AccuracyConfig, trainer: Trainer, rule: str, impl: str, label: str,
                  options: dict[str, Any], seed: int, runs: dict, result_set: AccuracySet | None,
                  start: float | None = None) -> list[dict]:
    """One Hebbian phase and its probe (and fine-tuning) rows at every fraction; kept in ``runs``."""
    fractions = list(config.fractions)
    count = {f: len(trainer.subsets[(seed, f)]) for f in fractions}
    try:
        net = build(config, rule, impl, options, seed, trainer.classes)
        run = trainer.hebbian(net, rule, seed, curve=result_set is not None, start=start)
    except rules.Unavailable as exc:
        return [_row(config, rule, impl, label, PROBE, seed, f, count[f], math.nan, status="skipped",
                     reason=" ".join(str(exc).split())) for f in fractions]
    except (RuntimeError, ValueError) as exc:
        return [_row(config, rule, impl, label, PROBE, seed, f, count[f], math.nan, status="error",
                     reason=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]) for f in fractions]
    runs[(rule, label, seed)] = run
    if result_set is not None:
        result_set.add(CURVE, [{"rule": rule, "impl": impl, "label": label, "seed": seed, **p} for p in run.curve])
    if not run.finite:
        return [_row(config, rule, impl, label, PROBE, seed, f, count[f], math.nan, run.hebbian_s, status="error",
                     reason="the Hebbian weights became non-finite (lower --lr)") for f in fractions]
    t0 = time.perf_counter()
    probed = trainer.probe_accuracy(net, fractions, seed)
    probe_s = (time.perf_counter() - t0) / len(fractions)  # features once, then one classifier per fraction
    rows = [_row(config, rule, impl, label, PROBE, seed, f, count[f], probed[f], run.hebbian_s, probe_s)
            for f in fractions]
    run.probe = {r["fraction"]: r["accuracy"] for r in rows}
    if label in config.finetune_impls and result_set is not None:
        for f in fractions:
            t0 = time.perf_counter()
            accuracy = trainer.backprop_accuracy(net, f, seed)
            rows.append(_row(config, rule, impl, label, FINETUNE, seed, f, count[f], accuracy, run.hebbian_s,
                             time.perf_counter() - t0))
    return rows


def _parity_rows(config: AccuracyConfig, trainer: Trainer, rule: str, runs: dict,
                 result_set: AccuracySet) -> list[dict]:
    """Every implementation of ``rule`` against fh from the first seed's starting weights (module docstring)."""
    seed = config.seeds[0]
    reference = runs.get((rule, REFERENCE, seed))
    if reference is None:
        _hebbian_rows(config, trainer, rule, REFERENCE, REFERENCE, {}, seed, runs, None)
        reference = runs.get((rule, REFERENCE, seed))
    rows = []
    for impl in parity_impls(rule, config.device, config.parity_impls):
        kind = "approximate" if approximate(rule, impl) else "exact"
        base = {"rule": rule, "impl": impl, "label": impl, "kind": kind, "seed": seed,
                "weight_rtol": None if kind == "approximate" else WEIGHT_RTOL,
                "accuracy_tol_pp": APPROX_PP if kind == "approximate" else EXACT_PP}
        if reference is None or not reference.finite:
            rows.append({**base, "verdict": "", "status": "error", "reason": "fh's Hebbian phase did not finish"})
            continue
        if impl == REFERENCE:
            rows.append({**base, "steps": reference.steps, "weight_rel_diff": 0.0, "accuracy_diff_pp": 0.0,
                         "verdict": "reference", "status": "ok", "reason": ""})
            continue
        if (rule, impl, seed) not in runs:
            failed = _hebbian_rows(config, trainer, rule, impl, impl, {}, seed, runs, None)
            if (rule, impl, seed) not in runs or not runs[(rule, impl, seed)].finite:
                rows.append({**base, "verdict": "", "status": failed[0]["status"], "reason": failed[0]["reason"]})
                continue
        run = runs[(rule, impl, seed)]
        if not run.finite:
            rows.append({**base, "verdict": "flagged", "status": "error", "reason": "non-finite weights"})
            continue
        diff = weight_difference(run.weights, reference.weights)
        pp = max(abs(run.probe[f] - reference.probe[f]) * 100 for f in config.fractions)
        within = pp <= base["accuracy_tol_pp"] + 1e-9 and (kind == "approximate" or diff <= WEIGHT_RTOL)
        reasons = []
        if kind == "exact" and diff > WEIGHT_RTOL:
            reasons.append(f"weights differ by {diff:.2g} > {WEIGHT_RTOL:g}")
        if pp > base["accuracy_tol_pp"] + 1e-9:
            reasons.append(f"accuracy differs by {pp:.2f} > {base['accuracy_tol_pp']:g} points")
        rows.append({**base, "steps": run.steps, "weight_rel_diff": diff, "accuracy_diff_pp": pp,
                     "verdict": "pass" if within else "flagged", "status": "ok", "reason": "; ".join(reasons)})
    return rows

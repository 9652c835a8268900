"""Benchmark grids as data: presets and users' TOML files expanded into cases.

A *case* is rule × layer × batch size × dtype × device × what (``update`` or ``step``);
the implementation variants of a case (e.g. fh, naive with G = 8, naive with G = 128)
are timed together, interleaved. A grid file is a list of sweeps::

    description = "..."
    rules = ["swta", "hpca"]          # defaults for every sweep; a sweep may override them
    impls = ["*", "!loop", "naive:group_size=8", "naive:group_size=128"]
    what = ["update", "step"]
    dtypes = ["float32"]
    devices = ["auto"]                # auto: every GPU, else the CPU; all: the CPU and every GPU
    batch_sizes = [8]
    baseline = "naive"                # speedup = median(baseline) / median(impl)

    [timing]                          # TimingPolicy fields
    case_seconds = 2.0

    [[sweep]]
    name = "small"
    layers = [
      { name = "conv1", kind = "conv", in_channels = 3, out_channels = 32, kernel_size = 5, input_size = 16 },
      { name = "fc", kind = "linear", in_features = 1024, out_features = 256 },
    ]

``rules`` and ``impls`` items are fnmatch patterns ("!pattern" excludes) or a name with options
(``naive:group_size=8``, ``swta:temperature=0.05``: :mod:`hebbbench.rules.specs`), each such item
one variant; a rule or implementation that no item gives options is run with its defaults.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from hebbbench import rules
from hebbbench.rules.conv import ConvGeometry
from hebbbench.rules.specs import parse_spec
from hebbbench.errors import UserError
from hebbbench.measure.numerics import DTYPES
from hebbbench.measure.timing import TimingPolicy

WHATS = ("update", "step")
SWEEP_KEYS = {"name", "layers", "rules", "impls", "what", "dtypes", "devices", "batch_sizes", "baseline"}
TOP_KEYS = (SWEEP_KEYS - {"name", "layers"}) | {"description", "timing", "sweep"}
#: short names of options in labels: naive(G=8)
OPTION_ALIASES = {"group_size": "G", "block_size": "b", "temperature": "T"}


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("hebbbench.presets").iterdir()
                  if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    if name not in preset_names():
        raise UserError(f"unknown preset {name!r}; allowed: {', '.join(preset_names())}")
    return resources.files("hebbbench.presets").joinpath(f"{name}.toml").read_text()


# -- layers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepLayer:
    """A conv layer (C_in, C_out, kernel, input H×W, stride, padding, dilation) or a linear one (D, M)."""

    name: str
    kind: str
    in_channels: int = 0
    out_channels: int = 0
    kernel_size: int = 0
    input_size: tuple[int, int] = (0, 0)
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    in_features: int = 0
    out_features: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> "SweepLayer":
        if not isinstance(raw, dict):
            raise UserError(f"{where}: a layer must be a table, got {raw!r}")
        kind = raw.get("kind")
        keys = {"conv": {"name", "kind", "in_channels", "out_channels", "kernel_size", "input_size",
                         "stride", "padding", "dilation"},
                "linear": {"name", "kind", "in_features", "out_features"}}
        if kind not in keys:
            raise UserError(f"{where}: layer kind must be 'conv' or 'linear', got {kind!r}")
        unknown = sorted(set(raw) - keys[kind])
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} for a {kind} layer; "
                            f"allowed: {', '.join(sorted(keys[kind]))}")
        values = dict(raw)
        if kind == "conv":
            size = values.get("input_size")
            values["input_size"] = (size, size) if isinstance(size, int) else tuple(size or ())
        spec = cls(**{"name": "", **values})
        spec.validate(where)
        if not spec.name:
            spec = dataclasses.replace(spec, name=spec.describe())
        return spec

    def validate(self, where: str) -> None:
        def positive(name: str, value: Any, low: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{where}: {name} must be an integer >= {low}, got {value!r}")

        if self.kind == "linear":
            positive("in_features", self.in_features)
            positive("out_features", self.out_features)
            return
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "dilation"):
            positive(name, getattr(self, name))
        positive("padding", self.padding, 0)
        if len(self.input_size) != 2:
            raise UserError(f"{where}: input_size must be an integer or [H, W], got {self.input_size!r}")
        for value in self.input_size:
            positive("input_size", value)
        if min(self.output_size) < 1:
            raise UserError(f"{where}: input {self.input_size} is smaller than the kernel's span")

    @property
    def geometry(self) -> ConvGeometry:
        return ConvGeometry(self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def output_size(self) -> tuple[int, int]:
        g = self.geometry
        return g.output_size(self.input_size[0]), g.output_size(self.input_size[1])

    @property
    def d(self) -> int:
        return self.in_features if self.kind == "linear" else self.in_channels * self.kernel_size ** 2

    @property
    def m(self) -> int:
        return self.out_features if self.kind == "linear" else self.out_channels

    def rows(self, batch: int) -> int:
        """N, the number of update rows for a mini-batch of ``batch`` inputs."""
        return batch if self.kind == "linear" else batch * math.prod(self.output_size)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.in_features) if self.kind == "linear" else (batch, self.in_channels, *self.input_size)

    def describe(self) -> str:
        if self.kind == "linear":
            return f"fc {self.in_features}->{self.out_features}"
        h, w = self.input_size
        extra = "".join(f" {k[0]}{v}" for k, v in (("stride", self.stride), ("padding", self.padding),
                                                   ("dilation", self.dilation)) if v != (0 if k == "padding" else 1))
        return f"conv {self.in_channels}->{self.out_channels} k{self.kernel_size}{extra} @{h}x{w}"

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "linear":
            return {"name": self.name, "kind": "linear", "in_features": self.in_features,
                    "out_features": self.out_features}
        return {"name": self.name, "kind": "conv", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                "input_size": list(self.input_size), "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation}


# -- cases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One implementation with its options, e.g. naive with group_size = 8."""

    impl: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if not self.options:
            return self.impl
        return f"{self.impl}(" + ",".join(f"{OPTION_ALIASES.get(k, k)}={v}" for k, v in self.options) + ")"


@dataclass(frozen=True)
class Case:
    sweep: str
    rule: str
    rule_options: tuple[tuple[str, Any], ...]
    layer: SweepLayer
    batch: int
    dtype: str
    device: str
    what: str
    variants: tuple[Variant, ...]
    baseline: str | None

    @property
    def rule_label(self) -> str:
        """The rule with its options, e.g. swta(T=0.1); the name alone with default options."""
        return Variant(self.rule, self.rule_options).label

    @property
    def case_id(self) -> str:
        return f"{self.sweep}/{self.rule_label}/{self.layer.name}/b{self.batch}/{self.dtype}/{self.device}/{self.what}"

    @property
    def n(self) -> int:
        return self.layer.rows(self.batch)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def baseline_variant(self) -> Variant | None:
        """The first variant of the baseline implementation (naive with its first group size)."""
        return next((v for v in self.variants if v.impl == self.baseline), None)


@dataclass(frozen=True)
class Sweep:
    name: str
    layers: tuple[SweepLayer, ...]
    rules: tuple[str, ...]
    impls: tuple[str, ...]
    what: tuple[str, ...]
    dtypes: tuple[str, ...]
    devices: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    baseline: str | None


@dataclass
class Grid:
    """A parsed grid: sweeps (with their rules' and implementations' options), the timing policy."""

    name: str
    description: str
    sweeps: list[Sweep]
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> TimingPolicy:
        return TimingPolicy(**self.timing)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def from_toml(cls, text: str, name: str, where: str) -> "Grid":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{where}: malformed TOML: {exc}") from None
        return cls.from_dict(raw, name, where)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], name: str, where: str) -> "Grid":
        if "options" in raw:
            raise UserError(f"{where}: [options.*] tables are replaced by options in the rules and impls lists, "
                            'e.g. impls = ["naive:group_size=8", "fh"]')
        unknown = sorted(set(raw) - TOP_KEYS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
        sweeps_raw = raw.get("sweep")
        if not isinstance(sweeps_raw, list) or not sweeps_raw:
            raise UserError(f"{where}: a grid needs at least one [[sweep]] with layers")
        defaults = {k: raw[k] for k in SWEEP_KEYS - {"name", "layers"} if k in raw}
        timing = raw.get("timing", {})
        fields = {f.name for f in dataclasses.fields(TimingPolicy)}
        if not isinstance(timing, dict) or set(timing) - fields:
            raise UserError(f"{where}: [timing] keys must be among {', '.join(sorted(fields))}")
        try:
            TimingPolicy(**timing)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: [timing]: {exc}") from None
        sweeps = [cls._sweep(s, defaults, f"{where}: sweep {i + 1}") for i, s in enumerate(sweeps_raw)]
        names = [s.name for s in sweeps]
        if len(set(names)) != len(names):
            raise UserError(f"{where}: sweep names must be unique, got {names}")
        grid = cls(name=name, description=str(raw.get("description", "")), sweeps=sweeps, timing=dict(timing))
        grid.validate(where)
        return grid

    @staticmethod
    def _sweep(raw: Any, defaults: dict[str, Any], where: str) -> Sweep:
        if not isinstance(raw, dict):
            raise UserError(f"{where}: must be a table")
        unknown = sorted(set(raw) - SWEEP_KEYS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SWEEP_KEYS))}")
        merged = {"rules": ["*"], "impls": ["*"], "what": list(WHATS), "dtypes": ["float32"],
                  "devices": ["auto"], "batch_sizes": [8], "baseline": "naive", **defaults, **raw}
        layers_raw = merged.get("layers")
        if not isinstance(layers_raw, list) or not layers_raw:
            raise UserError(f"{where}: needs a non-empty list of layers")
        layers = tuple(SweepLayer.from_dict(layer, f"{where}, layer {j + 1}") for j, layer in enumerate(layers_raw))

        def strings(key: str) -> tuple[str, ...]:
            value = merged[key]
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise UserError(f"{where}: {key} must be a non-empty list of strings, got {merged[key]!r}")
            return tuple(value)

        batches = merged["batch_sizes"]
        batches = [batches] if isinstance(batches, int) else batches
        if not isinstance(batches, list) or not batches or not all(
                isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batches):
            raise UserError(f"{where}: batch_sizes must be positive integers, got {merged['batch_sizes']!r}")
        return Sweep(name=str(merged.get("name") or f"sweep{where.rsplit(' ', 1)[-1]}"), layers=layers,
                     rules=strings("rules"), impls=strings("impls"), what=strings("what"),
                     dtypes=strings("dtypes"), devices=strings("devices"), batch_sizes=tuple(batches),
                     baseline=merged["baseline"] or None)

    def validate(self, where: str) -> None:
        for sweep in self.sweeps:
            for what in sweep.what:
                if what not in WHATS:
                    raise UserError(f"{where}: unknown what {what!r}; allowed: {', '.join(WHATS)}")
            for dtype in sweep.dtypes:
                if dtype not in DTYPES:
                    raise UserError(f"{where}: unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
            for pattern in names(sweep.rules, "rule", where):
                if not fnmatch.filter(rules.rules(), pattern):
                    raise UserError(f"{where}: unknown rule {pattern!r}; allowed: {', '.join(rules.rules())}")
            for pattern in names(sweep.impls, "impl", where):
                if not fnmatch.filter(rules.impls(), pattern.removeprefix("!")):
                    raise UserError(f"{where}: unknown impl {pattern!r}; allowed: {', '.join(rules.impls())}")
            if not self.pairs(sweep):
                raise UserError(f"{where}: sweep {sweep.name!r}: no registered implementation of rules "
                                f"{list(sweep.rules)} matches impls {list(sweep.impls)}")
        for case in self.expand(devices_resolved=False):  # option names and values checked once
            for variant in case.variants:
                try:
                    rules.get(case.rule, variant.impl, **dict(case.rule_options), **dict(variant.options))
                except ValueError as exc:
                    raise UserError(f"{where}: {exc}") from None

    def pairs(self, sweep: Sweep) -> list[tuple[str, str]]:
        rule_names, impl_names = names(sweep.rules, "rule"), names(sweep.impls, "impl")
        return [(r, i) for r, i in rules.available() if matches(r, rule_names) and matches(i, impl_names)]

    # -- overrides --------------------------------------------------------------------
    def override(self, **changes: Any) -> "Grid":
        """Replace a sweep field (rules, impls, what, dtypes, devices, batch_sizes) in every sweep;
        ``sweeps`` keeps the sweeps whose names match."""
        sweeps = list(self.sweeps)
        for key, value in changes.items():
            if value is None:
                continue
            if key == "sweeps":
                kept = [s for s in sweeps if matches(s.name, tuple(value))]
                if not kept:
                    raise UserError(f"no sweep matches {list(value)}; sweeps: {', '.join(s.name for s in sweeps)}")
                sweeps = kept
                continue
            if key not in {"rules", "impls", "what", "dtypes", "devices", "batch_sizes"}:
                raise ValueError(f"cannot override {key!r}")
            sweeps = [dataclasses.replace(s, **{key: tuple(value)}) for s in sweeps]
        grid = Grid(self.name, self.description, sweeps, dict(self.timing))
        grid.validate("command line")
        return grid

    def with_timing(self, **changes: Any) -> "Grid":
        timing = {**self.timing, **{k: v for k, v in changes.items() if v is not None}}
        try:
            TimingPolicy(**timing)
        except (TypeError, ValueError) as exc:
            raise UserError(f"timing: {exc}") from None
        return Grid(self.name, self.description, self.sweeps, timing)

    # -- expansion --------------------------------------------------------------------
    @staticmethod
    def variants(sweep: Sweep, rule: str, impl: str) -> list[Variant]:
        """The sweep's items with options for ``impl`` (those this rule's ``impl`` accepts), in order; else its defaults."""
        accepted = rules.lookup(rule, impl).default_options()
        given = [s.options for s in map(parse_spec, sweep.impls) if s.name == impl and s.options]
        return [Variant(impl, tuple((k, v) for k, v in opts if k in accepted))
                for opts in given] or [Variant(impl)]

    @staticmethod
    def rule_options(sweep: Sweep, rule: str) -> list[tuple[tuple[str, Any], ...]]:
        """The sweep's items with options for ``rule``, in order; else its defaults."""
        given = [s.options for s in (parse_spec(t, "rule") for t in sweep.rules) if s.name == rule and s.options]
        return list(dict.fromkeys(given)) or [()]

    def expand(self, devices_resolved: bool = True, resolve=None) -> list[Case]:
        """Every case of the grid, in a stable order. ``resolve`` maps device names (auto, all) to devices."""
        cases = []
        for sweep in self.sweeps:
            pairs = self.pairs(sweep)
            devices = list(sweep.devices)
            if devices_resolved:
                devices = resolve(devices) if resolve else devices
            for rule in sorted({r for r, _ in pairs}):
                variants = tuple(dict.fromkeys(v for r, i in pairs if r == rule for v in self.variants(sweep, r, i)))
                for rule_opts, layer, batch, dtype, device, what in itertools.product(
                        self.rule_options(sweep, rule), sweep.layers, sweep.batch_sizes, sweep.dtypes, devices, sweep.what):
                    cases.append(Case(sweep.name, rule, rule_opts, layer, batch, dtype, device, what,
                                      variants, sweep.baseline))
        ids = [c.case_id for c in cases]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise UserError(f"grid {self.name!r}: case {dup} appears twice (layer names must be unique in a sweep)")
        return cases

    def fingerprint(self) -> str:
        """A hash of the grid as declared: shards of one grid share it."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        """The resolved grid, as written to env.json (and read back by --resume)."""
        return {"name": self.name, "description": self.description, "timing": self.timing,
                "sweep": [{"name": s.name, "layers": [layer.as_dict() for layer in s.layers],
                           "rules": list(s.rules), "impls": list(s.impls), "what": list(s.what),
                           "dtypes": list(s.dtypes), "devices": list(s.devices),
                           "batch_sizes": list(s.batch_sizes), "baseline": s.baseline or ""}
                          for s in self.sweeps]}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' (1-based: 1/2 and 2/2 are the two halves) -> (i, n)."""
    if text is None:
        return None
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 1/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise UserError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
    return i, n


def shard_cases(cases: list[Case], shard: tuple[int, int] | None) -> list[Case]:
    """The i-th of n disjoint parts of the cases (every n-th case, so each part mixes the sweeps)."""
    if shard is None:
        return cases
    i, n = shard
    return cases[i - 1::n]


def names(items: tuple[str, ...], kind: str, where: str = "") -> tuple[str, ...]:
    """The rule or impl names (patterns) of ``items``, their options checked and left out."""
    return tuple(parse_spec(item, kind, where).name for item in items)


def without_options_tables(raw: dict[str, Any]) -> dict[str, Any]:
    """A resolved grid as env.json recorded it before options were items: ``options`` (``{impl: {key:
    [values]}}``, each value one variant of every selected impl) turned into ``impl:key=value`` items
    of each sweep that selects the impl. The cases and their ids are those the set was run with."""
    if "options" not in raw:
        return raw
    options, raw = raw["options"] or {}, {k: v for k, v in raw.items() if k != "options"}
    sweeps = []
    for sweep in raw.get("sweep") or []:
        impls = list(sweep.get("impls") or raw.get("impls") or ["*"])
        selected = names(tuple(impls), "impl")
        for impl, values in options.items():
            if not matches(impl, selected):
                continue
            keys = sorted(values)
            for combo in itertools.product(*(values[k] if isinstance(values[k], list) else [values[k]] for k in keys)):
                impls.append(f"{impl}:" + ";".join(f"{k}={v}" for k, v in zip(keys, combo)))
        sweeps.append({**sweep, "impls": impls})
    return {**raw, "sweep": sweeps}


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``name`` matches one of the fnmatch patterns and none of the "!pattern" exclusions."""
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    return (any(fnmatch.fnmatchcase(name, p) for p in include or ["*"])
            and not any(fnmatch.fnmatchcase(name, p) for p in exclude))


def load_grid(preset: str | None = None, config: str | Path | None = None) -> Grid:
    """A preset by name, or a user's TOML file; ``quick`` when neither is given."""
    if preset and config:
        raise UserError("give either --preset or --config, not both")
    if config:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"config file {path} not found")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"config file {path} is not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
        except OSError as exc:
            raise UserError(f"config file {path} cannot be read: {exc.strerror}") from None
        return Grid.from_toml(text, path.stem, str(path))
    name = preset or "quick"
    return Grid.from_toml(preset_text(name), name, f"preset {name}")

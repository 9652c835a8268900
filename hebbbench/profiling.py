"""One case under a profiler (``hebbbench profile``): the exact call ``hebbbench run`` times.

The case is built with the harness's own workload (``CaseWorkload.prepare``): same seeded
inputs, same closure, same reset before each call (the layer's weights for ``step``).

- ``torch``: ``torch.profiler`` around a few calls after a warm-up; writes ``trace.json``
  (Chrome trace: chrome://tracing or https://ui.perfetto.dev) and ``key_averages.txt``
  (the operator table, also printed);
- ``py-spy``: the case run in a child process (``python -m hebbbench.profiling CASE_JSON``)
  for some seconds under ``py-spy record``, once per format: ``profile.speedscope.json``
  (https://www.speedscope.app) and ``flamegraph.svg``. py-spy is the optional ``profile``
  extra (``pip install 'hebbbench[profile]'``).

Layers are given compactly (``parse_layer``): ``conv:C_in,C_out,kernel,input[,stride,padding]``,
``linear:D,M``, or a layer of a preset, ``paper:6layer/conv2``.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hebbbench.measure import conditions
from hebbbench.measure import devices as dev
from hebbbench import rules
from hebbbench.errors import UserError
from hebbbench.suites.grid import Case, SweepLayer, Variant, load_grid, preset_names
from hebbbench.measure.numerics import DTYPES
from hebbbench.measure.variants import Prepared
from hebbbench.suites.workload import CaseWorkload, predict

TOOLS = ("torch", "py-spy")
PROFILES = Path("profiles")
PY_SPY_MISSING = ("py-spy is not installed: install the profile extra, pip install 'hebbbench[profile]' "
                  "(or use --tool torch)")


# -- the case --------------------------------------------------------------------------------
def parse_layer(text: str) -> tuple[SweepLayer, int | None]:
    """A layer from ``conv:96,128,3,14[,stride,padding]``, ``linear:2304,4096`` or ``PRESET:SWEEP/LAYER``.

    Returns the layer and, for a preset's layer, the batch size of its sweep (else None).
    """
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not rest.strip():
        raise UserError(f"--layer {text!r}: expected conv:C_in,C_out,kernel,input[,stride,padding], "
                        "linear:D,M or PRESET:SWEEP/LAYER (e.g. paper:6layer/conv2)")
    if kind in preset_names():
        return _preset_layer(kind, rest.strip(), text)
    if kind not in ("conv", "linear", "fc"):
        raise UserError(f"--layer {text!r}: unknown kind {kind!r}; allowed: conv, linear, "
                        + ", ".join(f"{p} (a layer of that preset)" for p in preset_names()))
    parts = [p.strip() for p in rest.split(",")]
    if kind == "conv":
        if not 4 <= len(parts) <= 6:
            raise UserError(f"--layer {text!r}: conv takes C_in,C_out,kernel,input[,stride,padding] "
                            f"(input: H or HxW), got {len(parts)} values")
        size = parts[3].lower().split("x")
        raw = {"kind": "conv", "in_channels": _int(parts[0], text), "out_channels": _int(parts[1], text),
               "kernel_size": _int(parts[2], text),
               "input_size": [_int(s, text) for s in size] if len(size) == 2 else _int(size[0], text)}
        if len(parts) > 4:
            raw["stride"] = _int(parts[4], text)
        if len(parts) > 5:
            raw["padding"] = _int(parts[5], text)
    else:
        if len(parts) != 2:
            raise UserError(f"--layer {text!r}: linear takes D,M (in_features,out_features), got {len(parts)} values")
        raw = {"kind": "linear", "in_features": _int(parts[0], text), "out_features": _int(parts[1], text)}
    return SweepLayer.from_dict(raw, f"--layer {text!r}"), None


def _int(value: str, text: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--layer {text!r}: {value!r} is not an integer") from None


def _preset_layer(preset: str, path: str, text: str) -> tuple[SweepLayer, int]:
    grid = load_grid(preset)
    sweep_name, sep, layer_name = path.partition("/")
    sweeps = {s.name: s for s in grid.sweeps}
    if not sep or sweep_name not in sweeps:
        raise UserError(f"--layer {text!r}: give {preset}:SWEEP/LAYER; sweeps of {preset}: {', '.join(sweeps)}")
    sweep = sweeps[sweep_name]
    layers = {layer.name: layer for layer in sweep.layers}
    if layer_name not in layers:
        raise UserError(f"--layer {text!r}: no layer {layer_name!r} in sweep {sweep_name!r}; "
                        f"allowed: {', '.join(layers)}")
    return layers[layer_name], sweep.batch_sizes[0]


@dataclass
class Target:
    """What to profile: one implementation on one layer, batch, dtype, device and ``what``."""

    rule: str
    impl: str
    layer: SweepLayer
    batch: int
    device: str = "cpu"
    dtype: str = "float32"
    what: str = "update"
    options: dict[str, Any] = field(default_factory=dict)  # rule and implementation options
    seed: int = 0
    threads: int | None = None

    def case(self) -> Case:
        rule_keys = set(rules.rule_class(self.rule).default_options())
        rule_opts = tuple(sorted((k, v) for k, v in self.options.items() if k in rule_keys))
        impl_opts = tuple(sorted((k, v) for k, v in self.options.items() if k not in rule_keys))
        return Case("profile", self.rule, rule_opts, self.layer, self.batch, self.dtype, self.device, self.what,
                    (Variant(self.impl, impl_opts),), None)

    @property
    def slug(self) -> str:
        case = self.case()
        parts = (case.rule_label, case.variants[0].label, self.layer.name, f"b{self.batch}", self.device, self.dtype,
                 self.what)
        text = "-".join(parts)
        return re.sub(r"[^\w.=+-]+", "_", text.replace("->", "-")).strip("_")

    def as_json(self) -> str:
        return json.dumps({"rule": self.rule, "impl": self.impl, "layer": self.layer.as_dict(), "batch": self.batch,
                           "device": self.device, "dtype": self.dtype, "what": self.what, "options": self.options,
                           "seed": self.seed, "threads": self.threads})

    @classmethod
    def from_json(cls, text: str) -> "Target":
        raw = json.loads(text)
        raw["layer"] = SweepLayer.from_dict(raw["layer"], "profile case")
        return cls(**raw)


def check(target: Target) -> None:
    """UserError for an unknown rule, impl, option, dtype, what or device, or a case too big for the device."""
    if target.dtype not in DTYPES:
        raise UserError(f"unknown dtype {target.dtype!r}; allowed: {', '.join(DTYPES)}")
    if target.what not in ("update", "step"):
        raise UserError(f"unknown what {target.what!r}; allowed: update, step")
    if target.batch < 1:
        raise UserError(f"batch size must be a positive integer, got {target.batch}")
    try:
        cls = rules.lookup(target.rule, target.impl)
        rules.get(target.rule, target.impl, **target.options)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not cls.supports(target.device):
        raise UserError(f"{target.rule}/{target.impl} runs on {', '.join(cls.device_types)} only, "
                        f"not on {target.device}")
    case = target.case()
    need, have = predict(case, case.variants[0]).memory, dev.budget_memory(target.device)
    if need > have:
        raise UserError(f"predicted memory {need / 2**30:.2f} GiB exceeds 80 % of {target.device}'s memory "
                        f"({have / 2**30:.2f} GiB); profile a smaller batch or layer")


def resolve_device(name: str) -> str:
    """auto -> the first GPU, else the CPU; cpu, cuda, cuda:N as in ``hebbbench run``."""
    found = dev.resolve_devices([name])
    if len(found) != 1:
        raise UserError(f"--device {name!r} names {len(found)} devices; give one (cpu, cuda or cuda:N)")
    return found[0]


def prepare(target: Target) -> tuple[Case, Prepared]:
    """The case and its timed call, built exactly as ``hebbbench run`` builds them."""
    if target.threads:
        torch.set_num_threads(target.threads)
    if target.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(target.device))
    case = target.case()
    workload = CaseWorkload(case, target.seed)
    return case, workload.prepare(case.variants[0])


def call_once(prepared: Prepared, device: str) -> None:
    if prepared.reset:
        prepared.reset()
    prepared.call()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


# -- torch.profiler ----------------------------------------------------------------------------
@conditions.measuring
def profile_torch(target: Target, out: Path, repeat: int = 5, warmup: int = 2) -> tuple[list[Path], str]:
    """Profile ``repeat`` calls after ``warmup``; write the Chrome trace and the key-averages table."""
    from torch.profiler import ProfilerActivity, profile, record_function

    case, prepared = prepare(target)
    for _ in range(warmup):
        call_once(prepared, target.device)
    cuda = target.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    label = f"{case.rule_label}/{case.variants[0].label}"
    with profile(activities=activities, record_shapes=True, profile_memory=True) as prof:
        for _ in range(repeat):
            if prepared.reset:
                with record_function("hebbbench.reset (outside the timed region)"):
                    prepared.reset()
            with record_function(f"hebbbench.call {label}"):
                prepared.call()
                if cuda:
                    torch.cuda.synchronize(target.device)
    out.mkdir(parents=True, exist_ok=True)
    trace, table_path = out / "trace.json", out / "key_averages.txt"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30)
    header = (f"{case.case_id} {case.variants[0].label}: {repeat} calls profiled after {warmup} warm-up "
              f"(torch {torch.__version__}, {dev.device_name(target.device)}, {torch.get_num_threads()} threads); "
              f"sorted by {sort}\n")
    table_path.write_text(header + table + "\n")
    return [trace, table_path], header + table


# -- py-spy ------------------------------------------------------------------------------------
def find_py_spy() -> str | None:
    """The py-spy executable: on PATH, beside this Python, or where pip installed the py-spy package."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    try:
        dist = importlib.metadata.distribution("py-spy")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name in ("py-spy", "py-spy.exe"):
            path = Path(dist.locate_file(file)).resolve()
            if path.is_file():
                return str(path)
    return None


@conditions.measuring
def profile_py_spy(target: Target, out: Path, seconds: float = 5.0, rate: int = 200,
                   executable: str | None = None) -> list[Path]:
    """Record the case run in a child process for ``seconds``: a speedscope file and an SVG flame graph."""
    py_spy = executable or find_py_spy()
    if py_spy is None:
        raise UserError(PY_SPY_MISSING)
    out.mkdir(parents=True, exist_ok=True)
    child = [sys.executable, "-m", "hebbbench.profiling", target.as_json(), str(seconds)]
    files = []
    for fmt, name in (("speedscope", "profile.speedscope.json"), ("flamegraph", "flamegraph.svg")):
        path = out / name
        command = [py_spy, "record", "--rate", str(rate), "--format", fmt, "-o", str(path), "--", *child]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not path.is_file():
            raise UserError(_py_spy_failure(result))
        files.append(path)
    return files


def _py_spy_failure(result: subprocess.CompletedProcess) -> str:
    text = " ".join((result.stderr or result.stdout or "").split())
    hint = ""
    if re.search(r"permission|ptrace|operation not permitted", text, re.IGNORECASE):
        hint = (" — py-spy needs permission to read another process's memory (ptrace): run as root, set "
                "kernel.yama.ptrace_scope = 0, or give a container --cap-add SYS_PTRACE")
    return f"py-spy failed (exit {result.returncode}): {text[-400:] or 'no output'}{hint}"


def child(target: Target, seconds: float) -> int:
    """The process py-spy records: warm up, then call the case for ``seconds``; returns the calls made."""
    _, prepared = prepare(target)
    call_once(prepared, target.device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls == 0:
        call_once(prepared, target.device)
        calls += 1
    return calls


def main(argv: list[str] | None = None) -> None:
    """``python -m hebbbench.profiling CASE_JSON SECONDS`` (run by ``hebbbench profile --tool py-spy``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m hebbbench.profiling CASE_JSON SECONDS (see hebbbench profile --help)")
    calls = child(Target.from_json(args[0]), float(args[1]))
    print(f"{calls} calls", file=sys.stderr)


if __name__ == "__main__":
    main()

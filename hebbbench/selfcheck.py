"""``hebbbench selfcheck``: one command that validates a machine end to end, into one folder.

On one device (``--devices cuda`` or ``cpu``) it runs, each step a result set of its own under
``results/selfcheck-<device>-<time>/``:

1. ``equivalence``: every registered rule × implementation that runs on the device, on a fully
   connected and a convolutional layer, ΔW in float32 against the rule's per-sample reference in
   float64 (docs/design.md §2), within the tolerance the harness uses (``equivalence.csv``);
   implementations that cannot run here (no Triton, a GPU-only form on the CPU) are listed as
   skipped, with the reason;
2. ``quick``: the ``quick`` preset (every rule and implementation on small layers, each checked
   against fh in float64 before it is timed, update and whole layer step);
3. ``ci``: the ``ci`` preset, gated by ``hebbbench compare`` against the device's baseline
   ``<baselines>/ci-<device>`` (``ci-cpu``, ``ci-h200``, ...); where none exists this run is
   recorded as it (to be committed), and the step says so;
4. ``reproduce``: the paper's networks trained for a few mini-batches, naive (G = 8) measured
   where it fits the time budget and estimated elsewhere, against fh: the "up to 70x" verdict;
5. ``beyond``: the implementations past the paper on its largest layers.

Steps run in this order within a time budget (6 minutes on a GPU, 5 on the CPU, where the
settings are CPU-sized: one worker process, VGG-11 left to the GPU); a step that would not fit
is not run and fails the check. It prints a short verdict (what passed, the headline speedups),
writes it to ``verdict.md`` and ``selfcheck.json``, and fails (exit 1) if anything is wrong: an
implementation outside its tolerance, a row that errored, a slowdown the gate finds, a step not
run. Reports of the quick, reproduce and beyond sets are written beside them.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hebbbench import rules
from hebbbench.errors import UserError
from hebbbench.measure import devices as dev
from hebbbench.rules import fp32_precision
from hebbbench.measure.numerics import relative_error, tolerance
from hebbbench.measure.variants import one_line
from hebbbench.nn.layers import HebbianConv2d
from hebbbench.store import fresh_folder

#: the rules whose speedups the verdict quotes (the paper's)
HEADLINE_RULES = ("swta", "hpca")
#: the paper's claim that the reproduce step is read against
PAPER_SPEEDUP = 70.0


@dataclass(frozen=True)
class Profile:
    """How big each step is on a device type."""

    budget_s: float  # the whole check
    quick: dict[str, Any]  # options of api.run for the quick preset
    ci: dict[str, Any]
    reproduce: dict[str, Any]  # fields of api.ReproduceConfig
    beyond: dict[str, Any]


PROFILES = {
    "cuda": Profile(
        budget_s=360.0,
        quick={},
        ci={},
        reproduce={"networks": ["6layer", "vgg11"], "batches": 3, "max_naive_seconds": 10.0, "time_budget": 40.0},
        beyond={"sweeps": ["fc4096", "vgg11"], "case_seconds": 1.0, "processes": 1},
    ),
    # CPU-sized: one worker process and shorter cases; VGG-11 (seconds per fh step here) left to a GPU;
    # past the paper: the update on the 4096-unit layer only
    "cpu": Profile(
        budget_s=300.0,
        quick={"processes": 1},
        ci={},
        reproduce={"networks": ["6layer"], "batches": 1, "max_naive_seconds": 1.0, "time_budget": 5.0},
        # past the paper against fh (naive on the 4096-unit layer takes seconds per call here)
        beyond={"sweeps": ["fc4096"], "case_seconds": 0.5, "processes": 1, "what": ["update"],
                "impls": ["fh", "fh-auto", "fh-blocked", "fh-compiled"]},
    ),
}

#: the share of the budget each step is predicted to need (the check stops before a step that would not fit)
SHARE = {"equivalence": 0.1, "quick": 0.3, "ci": 0.2, "reproduce": 0.25, "beyond": 0.15}
STEPS = tuple(SHARE)


@dataclass
class Step:
    """One step's outcome."""

    name: str
    passed: bool | None = None  # None: not run
    detail: str = ""
    seconds: float = 0.0
    path: str = ""
    headline: list[str] = field(default_factory=list)


@dataclass
class Selfcheck:
    """The whole check: its folder, device, steps and verdict."""

    path: Path
    device: str
    device_name: str
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.passed for s in self.steps)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def device_tag(device: str) -> str:
    """``cpu``, or the GPU's short name (``h200``): names the baseline and the folder."""
    if device == "cpu":
        return "cpu"
    name = dev.device_name(device).lower().replace("nvidia", "").strip()
    return (name.split()[-1] if name else "cuda").replace("/", "-")


# -- step 1: equivalence ---------------------------------------------------------------------------
def equivalence_inputs(device: str, seed: int = 0) -> dict[str, Any]:
    """Seeded inputs of the two layers: x (N,D), y (N,M), w (M,D) of a fully connected layer, and the
    images of a conv layer (3→16 channels, 3×3, 10×10 images, batch 4: N = 256, D = 27)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 48, generator=g, dtype=torch.float64)  # (N,D)
    w = torch.randn(32, 48, generator=g, dtype=torch.float64)  # (M,D)
    y = x @ w.T  # (N,M)
    y /= y.abs().max()  # |y| <= 1: SWTA's realistic range at T = 0.02
    images = torch.randn(4, 3, 10, 10, generator=g, dtype=torch.float64)  # (B,C,H,W)
    conv_w = torch.randn(16, 27, generator=g, dtype=torch.float64) / 27**0.5  # (M,D)
    return {"fc": (x, y, w), "conv": (images, conv_w), "device": device}


def check_pair(rule: str, impl: str, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """One implementation's rows: ΔW on each layer against the per-sample float64 reference."""
    cls = rules.lookup(rule, impl)
    device = inputs["device"]
    limit = tolerance(torch.float32, cls.rtol)
    rows = []
    for layer in ("fc", "conv"):
        row = {"rule": rule, "impl": impl, "layer": layer, "device": device, "tolerance": limit,
               "error": math.nan, "status": "ok", "reason": ""}
        if not cls.supports(device):
            row.update(status="skipped", reason=f"runs on {', '.join(cls.device_types)} only")
            rows.append(row)
            continue
        try:
            with fp32_precision.fp32(fp32_precision.mode_of(cls)):
                dw, reference = _delta_and_reference(rule, impl, layer, inputs)
            row["error"] = relative_error(dw.cpu(), reference)
            if not row["error"] <= limit:
                row.update(status="wrong", reason=f"relative error {row['error']:.2e} exceeds {limit:.0e}")
        except rules.Unavailable as exc:
            row.update(status="skipped", reason=one_line(exc))
        except Exception as exc:  # noqa: BLE001 - a failure is this row's outcome
            row.update(status="error", reason=one_line(exc))
        rows.append(row)
    return rows


def _delta_and_reference(rule: str, impl: str, layer: str, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    device = inputs["device"]
    reference_rule = rules.get(rule)
    if layer == "fc":
        x, y, w = inputs["fc"]
        r = rules.get(rule, impl)
        args = [t.to(device=device, dtype=torch.float32) for t in (x, y, w)]
        if r.compiles:
            r.prepare(*args)
        dw = r.update(*args)  # (M,D)
        return dw, reference_rule.reference(*(t.double().cpu() for t in args))  # the float32 inputs, in float64
    images, w = inputs["conv"]
    conv = HebbianConv2d(3, 16, 3, rule=rule, impl=impl, device=device, dtype=torch.float32)
    with torch.no_grad():
        conv.weight.copy_(w.view_as(conv.weight))
        batch = images.to(device=device, dtype=torch.float32)
        maps = conv(batch)  # (B,M,Ho,Wo)
        if conv.rule.compiles:
            conv.rule.prepare(conv.rows(batch), maps.permute(0, 2, 3, 1).reshape(-1, 16), conv.weight_rows)
        dw = conv.delta(batch, maps)  # (M,D)
        # the reference from the same float32 forward pass, in float64: only the update is under test
        rows64 = conv.rows(batch).double()  # (N,D)
        responses64 = maps.permute(0, 2, 3, 1).reshape(-1, 16).double()  # (N,M)
        return dw, reference_rule.reference(rows64.cpu(), responses64.cpu(), conv.weight_rows.double().cpu())


def equivalence(device: str, folder: Path) -> Step:
    inputs = equivalence_inputs(device)
    rows = [row for rule, impl in rules.available() for row in check_pair(rule, impl, inputs)]
    frame = pd.DataFrame(rows)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "equivalence.csv", index=False)
    bad = frame[frame["status"].isin(["wrong", "error"])]
    checked = frame[frame["status"] == "ok"]
    skipped = frame[frame["status"] == "skipped"]
    pairs = len(frame[["rule", "impl"]].drop_duplicates())
    detail = (f"{len(checked)} of {len(frame)} layer checks of {pairs} implementations within tolerance "
              f"(largest error {checked['error'].max():.1e})" if len(checked) else "nothing checked")
    if len(skipped):
        detail += "; skipped here: " + ", ".join(sorted({f"{r}/{i}" for r, i in zip(skipped['rule'], skipped['impl'])}))
    if len(bad):
        detail = (f"{len(bad)} FAILED: " + "; ".join(f"{r.rule}/{r.impl} {r.layer}: {r.status} ({r.reason})"
                                                     for r in bad.head(4).itertuples()) + "; " + detail)
    return Step("equivalence", passed=bool(len(checked)) and not len(bad), detail=detail, path=str(folder))


# -- steps 2, 3, 5: grid runs -----------------------------------------------------------------------
def failed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].isin(["wrong", "error", "oom"])]


def grid_step(name: str, frame: pd.DataFrame, headline: list[str]) -> Step:
    bad = failed_rows(frame)
    skipped = frame[frame["status"] == "skipped"]
    ok = frame[frame["status"] == "ok"]
    detail = f"{len(ok)} rows ok, {len(skipped)} skipped (device or budget), {len(bad)} failed"
    if len(bad):
        detail += ": " + "; ".join(f"{r.case_id} [{r.label}] {r.status}" for r in bad.head(3).itertuples())
    return Step(name, passed=len(ok) > 0 and not len(bad), detail=detail, path=frame.attrs.get("path", ""),
                headline=headline)


def fh_speedups(frame: pd.DataFrame) -> list[str]:
    """fh's speedup over the baseline per rule and what (the median over the layers of the run)."""
    ok = frame[(frame["status"] == "ok") & (frame["impl"] == "fh") & frame["speedup"].notna()
               & frame["rule"].isin(HEADLINE_RULES)]
    lines = []
    for (rule, what), part in ok.groupby(["rule", "what"]):
        lines.append(f"{rule} {what}: fh {part['speedup'].median():.1f}x faster than {part['baseline'].iloc[0]} "
                     f"(median of {len(part)} layer(s), {part['speedup'].min():.2g}–{part['speedup'].max():.3g}x)")
    return lines


def best_beyond(frame: pd.DataFrame) -> list[str]:
    """Per rule, layer and what: the fastest implementation and its time against fh's."""
    ok = frame[frame["status"] == "ok"]
    lines = []
    for (rule, layer, what), part in ok.groupby(["rule", "layer", "what"]):
        fh = part[part["impl"] == "fh"]
        best = part.loc[part["median_s"].idxmin()]
        if len(fh) and best["impl"] != "fh":
            lines.append(f"{rule} {layer} {what}: {best['label']} {fh['median_s'].iloc[0] / best['median_s']:.2f}x "
                         "faster than fh")
    return lines


def gate(device: str, frame: pd.DataFrame, baselines: Path) -> Step:
    from hebbbench.gate import compare as compare_mod

    baseline = baselines / f"ci-{device_tag(device)}"
    path = Path(frame.attrs["path"])
    bad = failed_rows(frame)
    if len(bad):
        return grid_step("ci", frame, [])
    if not (baseline / "env.json").exists():
        if baseline.exists():
            raise UserError(f"{baseline} exists but holds no result set; move it away or give --baselines")
        baseline.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, baseline)
        return Step("ci", passed=True, path=str(path),
                    detail=f"no baseline for this device: this run recorded as {baseline} (commit it; nothing "
                           "compared)")
    result = compare_mod.compare(baseline, path)
    (path / "compare.md").write_text(compare_mod.markdown(result))
    return Step("ci", passed=result.exit_code == 0, path=str(path),
                detail=f"against {baseline}: {compare_mod.headline(result)}")


# -- step 4: the paper's networks ------------------------------------------------------------------
def reproduce_step(path: Path) -> Step:
    from hebbbench.reports import reproduction

    _, frames = reproduction.load(path)
    steps, layers = frames["steps"], frames["layers"]
    heads = reproduction.headline_rows(steps)
    lines = []
    for row in heads.itertuples():
        verdict = "reaches" if row.speedup >= PAPER_SPEEDUP else "below"
        lines.append(f"{row.network} {row.rule}: fh {row.speedup:.1f}x faster than naive(G=8) per Hebbian step "
                     f"({'estimated' if row.estimated else 'measured'}; {verdict} the paper's 'up to "
                     f"{PAPER_SPEEDUP:.0f}x')")
    bad = pd.concat([layers[layers["status"].isin(["wrong", "error"])], steps[steps["status"].isin(["wrong", "error"])]])
    detail = f"{len(heads)} network × rule case(s); {len(bad)} failed"
    if len(bad):
        detail += ": " + "; ".join(f"{r.network} {r.rule} [{r.label}] {r.status}" for r in bad.head(3).itertuples())
    return Step("reproduce", passed=len(heads) > 0 and not len(bad), detail=detail, path=str(path), headline=lines)


# -- the whole check ---------------------------------------------------------------------------------
def run(device: str, out: Path | None = None, baselines: Path = Path("results/baselines"),
        budget_s: float | None = None, reports: bool = True,
        say: Callable[[str], None] = lambda text: None) -> Selfcheck:
    """Run every step on ``device`` within the budget; returns the check (its verdict is written)."""
    from hebbbench import api

    resolved = dev.resolve_devices([device])
    if len(resolved) != 1:
        raise UserError(f"selfcheck checks one device; {device!r} is {len(resolved)}: give cpu, cuda or cuda:N")
    device = resolved[0]
    profile = PROFILES["cuda" if device.startswith("cuda") else "cpu"]
    budget = profile.budget_s if budget_s is None else budget_s
    if not (math.isfinite(budget) and budget > 0):
        raise UserError(f"--budget must be a finite number of seconds > 0, got {budget}")
    folder = Path(out) if out is not None else fresh_folder(
        Path("results") / f"selfcheck-{device_tag(device)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if out is not None:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UserError(f"{folder} exists and is not empty; choose another --out")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot make the result folder {folder}: {exc.strerror}") from None
    check = Selfcheck(folder, device, dev.device_name(device))
    started = time.perf_counter()

    def runs(name: str, fn: Callable[[], Step]) -> None:
        left = budget - (time.perf_counter() - started)
        # every step must be left its share of the budget, except the first (it always runs)
        if check.steps and left < SHARE[name] * budget * 0.5:
            check.steps.append(Step(name, passed=None, detail=f"not run: {left:.0f} s of the {budget:.0f} s budget left"))
            say(f"{name}: not run (time budget spent)")
            return
        say(f"{name} ...")
        t0 = time.perf_counter()
        try:
            step = fn()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a step that breaks is a failed step, said in one line
            step = Step(name, passed=False, detail=f"failed: {one_line(exc)}")
        step.seconds = time.perf_counter() - t0
        check.steps.append(step)
        say(f"{name}: {'passed' if step.passed else 'FAILED'} in {step.seconds:.0f} s")

    def write_report(path: str) -> None:
        if reports and path:
            from hebbbench import reports as reports_mod

            reports_mod.write([path], out=Path(path) / "report")

    def quick() -> Step:
        frame = api.run("quick", out=folder / "quick", devices=[device], **profile.quick)
        write_report(frame.attrs["path"])
        return grid_step("quick", frame, fh_speedups(frame))

    def ci() -> Step:
        frame = api.run("ci", out=folder / "ci", devices=[device], **profile.ci)
        return gate(device, frame, Path(baselines))

    def reproduce() -> Step:
        config = api.ReproduceConfig(devices=[device], impls=["naive:group_size=8", "fh"], **profile.reproduce)
        (path,) = api.reproduce(config, out=folder / "reproduce")
        write_report(str(path))
        return reproduce_step(path)

    def beyond() -> Step:
        frame = api.run("beyond", out=folder / "beyond", devices=[device], **profile.beyond)
        write_report(frame.attrs["path"])
        return grid_step("beyond", frame, best_beyond(frame))

    runs("equivalence", lambda: equivalence(device, folder / "equivalence"))
    for name, fn in (("quick", quick), ("ci", ci), ("reproduce", reproduce), ("beyond", beyond)):
        runs(name, fn)
    write_verdict(check, time.perf_counter() - started, budget)
    return check


def verdict_lines(check: Selfcheck) -> list[str]:
    lines = []
    for step in check.steps:
        state = "passed" if step.passed else ("not run" if step.passed is None else "FAILED")
        lines.append(f"{step.name}: {state} ({step.seconds:.0f} s) — {step.detail}")
        lines.extend(f"    {line}" for line in step.headline)
    return lines


def write_verdict(check: Selfcheck, seconds: float, budget: float) -> None:
    head = (f"selfcheck of {check.device} ({check.device_name}): {'PASSED' if check.passed else 'FAILED'} in "
            f"{seconds:.0f} s (budget {budget:.0f} s)")
    body = "\n".join(f"- {line.strip()}" if not line.startswith("    ") else f"  - {line.strip()}"
                     for line in verdict_lines(check))
    (check.path / "verdict.md").write_text(f"# hebbbench selfcheck\n\n{head}\n\n{body}\n")
    (check.path / "selfcheck.json").write_text(json.dumps(
        {"device": check.device, "device_name": check.device_name, "passed": check.passed, "seconds": seconds,
         "budget_s": budget, "steps": [asdict(s) for s in check.steps]}, indent=2))

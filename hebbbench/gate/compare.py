"""``hebbbench compare``: did a run get slower than a baseline? (docs/design.md §4: ratios, a test, an effect size.)

Two result sets are compared case by case, matching on (case_id, label); never on raw seconds.

**Normalisation.** Every sample of an implementation is divided by the sample of the case's
calibration product timed in the same round (workload.py: a matrix product of the case's
size, (M,K)@(K,D) with K = max(N, M), repeated to about 1e8 FLOP, interleaved with the
implementations by the harness). What is
compared is this unitless time, so a baseline recorded on one machine can gate a run on
another, and load that differs between two runs on one machine largely cancels. Measured on
a shared 2-core CPU while this was written (8 to 10 runs of identical code, worst pair per case):

- raw fh medians moved by up to 2.9x between runs: seconds cannot be gated on;
- fh divided by the naive variant of its case moved by up to 1.8x, and naive itself by up
  to 2.2x: naive is memory- and allocation-bound and reacts to other processes unlike fh.
  The calibration is a matrix product, like fh's own work, and it lets every variant be
  judged, naive included;
- dividing by the calibration's median moved by up to 2.3x, round by round by up to 1.4x:
  load changes within a run cancel only round by round;
- a single small product (0.1 ms) as calibration was itself too noisy to divide by; about a
  millisecond of work is steady, hence the repeats;
- with more neurons than rows (a fully connected layer at batch 8), Yᵀ X is a thin product
  bound by memory: fh/(Yᵀ X) moved by up to 1.31x in 8 runs, fh/((M,M)@(M,D)) by 1.14x,
  hence K = max(N, M).

**Decision** for one (case_id, label), with normalised samples b (baseline) and n (new),
factor F (default 1.25), significance level α (default 0.01), floor (default by device: 50 µs
on a CPU, 5 µs on a GPU, where CUDA events resolve about 0.5 µs and the device time is measured
without the host's dispatch, timing.py):

- ``inconclusive`` if the median raw time of the implementation or of the calibration is
  below the floor in either run: at that size timer jitter, a scheduler tick or an
  interrupt is a large share of the time; likewise with fewer than 10 samples in either
  run: a whole run can be disturbed at once (seen: a second thread waiting milliseconds for
  its core on every call), and 5 samples against 5 already reach p < 0.01;
- ratio R = median(n) / median(b), each the median of its run's samples pooled over the
  run's worker processes;
- its uncertainty comes from the two runs' hierarchical bootstraps (pooling.py: each run's
  processes resampled, then the rounds within each; the two runs independently), so it
  includes the variation between processes, which on a shared CPU is larger than the
  variation between rounds of one process (measured up to 1.7x against 2-4 %). The p-value
  is the share of bootstrap ratios on the other side of the factor (few processes widened for
  the one-sided level α, pooling.py);
- ``slower`` if R ≥ F and fewer than α of the bootstrap ratios lie below F: the data show a
  slowdown *beyond the factor*, not merely some slowdown (between two runs some shift is
  always significant);
- ``faster`` likewise if R ≤ 1/F and fewer than α of them lie above 1/F;
- ``inconclusive`` if R is beyond the factor (either way) without that evidence;
- ``same`` otherwise: any change is smaller than the factor.

Only ``slower`` fails the gate (exit status 1). Result sets that cannot be compared —
unreadable, unfinished, different cases, a case that did not run (status other than ok) in
either, no calibration samples — are an error (UserError: exit status 2), never a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from hebbbench.errors import UserError
from hebbbench.store import CALIBRATION, ResultSet
from hebbbench.measure.units import format_seconds
from hebbbench.measure import pooling
from hebbbench.measure.timing import Timing

FACTOR = 1.25
ALPHA = 0.01
#: the default floor by device type (``--floor`` sets one for every device)
FLOOR_S = {"cpu": 50e-6, "cuda": 5e-6}
#: fewer samples than this in either run: not judged.
MIN_SAMPLES = 10
VERDICTS = ("slower", "faster", "same", "inconclusive")
#: listing order: what needs a look first.
ORDER = {"slower": 0, "inconclusive": 1, "faster": 2, "same": 3}


@dataclass(frozen=True)
class Verdict:
    """One implementation in one case, baseline against new."""

    case_id: str
    label: str
    status: str
    ratio: float  # median normalised time, new / baseline
    ratio_lo: float  # bootstrap 95 % interval of the ratio
    ratio_hi: float
    p_value: float  # one-sided, against the factor-scaled baseline; NaN when the ratio is within the factor
    base_s: float  # raw median seconds, for reading only
    new_s: float
    n_base: int
    n_new: int
    note: str = ""


@dataclass
class Comparison:
    baseline: Path
    new: Path
    factor: float
    alpha: float
    floor_s: float | None  # None: by device (FLOOR_S)
    verdicts: list[Verdict] = field(default_factory=list)
    baseline_env: dict = field(default_factory=dict)
    new_env: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.verdicts)

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == "slower"]

    @property
    def exit_code(self) -> int:
        """0: no regression; 1: at least one case slower (errors never get this far: they raise)."""
        return 1 if self.regressions else 0

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([v.__dict__ for v in self.verdicts])


# -- the decision ------------------------------------------------------------------------
def normalise(samples: Timing, calibration: Timing) -> Timing:
    """Each sample divided by the calibration sample of the same round (same process, same position)."""
    s, c = np.asarray(samples.samples, dtype=float), np.asarray(calibration.samples, dtype=float)
    if len(s) != len(c) or samples.process != calibration.process:
        raise ValueError(f"{len(s)} samples but {len(c)} calibration samples (or other processes): "
                         "rounds cannot be paired")
    return Timing(list(s / c), list(samples.process))


def judge(base: Timing, base_cal: Timing, new: Timing, new_cal: Timing,
          factor: float = FACTOR, alpha: float = ALPHA, floor_s: float = FLOOR_S["cpu"]) -> dict:
    """The verdict's fields for one implementation: status, ratio and interval, p-value, raw medians."""
    b, n = normalise(base, base_cal), normalise(new, new_cal)
    out = {"base_s": base.median, "new_s": new.median, "n_base": len(b.samples), "n_new": len(n.samples)}
    ratio, lo, hi = pooling.ratio(n.groups(), b.groups(), paired=False)  # median(n) / median(b), 95 % interval
    out.update(ratio=ratio, ratio_lo=lo, ratio_hi=hi)
    smallest = min(out["base_s"], out["new_s"], base_cal.median, new_cal.median)
    if smallest < floor_s:
        return {**out, "status": "inconclusive", "p_value": math.nan,
                "note": f"below the floor: {format_seconds(smallest)} < {format_seconds(floor_s)}"}
    if min(len(b.samples), len(n.samples)) < MIN_SAMPLES:
        return {**out, "status": "inconclusive", "p_value": math.nan,
                "note": f"{min(len(b.samples), len(n.samples))} samples, fewer than {MIN_SAMPLES}"}
    if ratio >= factor or ratio <= 1 / factor:
        ratios = pooling.ratio_distribution(n.groups(), b.groups(), paired=False, confidence=1 - 2 * alpha)
        slower = ratio >= factor
        p = float(np.mean(ratios < factor) if slower else np.mean(ratios > 1 / factor))
        if p < alpha:
            return {**out, "status": "slower" if slower else "faster", "p_value": p, "note": ""}
        beyond = f"{factor:g}x" if slower else f"1/{factor:g}"
        return {**out, "status": "inconclusive", "p_value": p, "note": f"not significantly beyond {beyond}"}
    return {**out, "status": "same", "p_value": math.nan, "note": ""}


# -- two result sets -----------------------------------------------------------------------
def _load(path: Path, role: str) -> tuple[ResultSet, pd.DataFrame, dict]:
    if not Path(path).exists():
        raise UserError(f"{role} {path} does not exist")
    rs = ResultSet.open(path, "hebbbench compare")
    env = rs.env()
    if env.get("status") != "complete":
        raise UserError(f"{role} {path} is not a finished run (status {env.get('status')!r}); "
                        f"finish it with hebbbench run --resume {path}")
    if not env.get("calibration"):
        raise UserError(f"{role} {path} has no calibration samples (recorded by an older hebbbench); "
                        "record it again")
    frame = rs.frame()
    problem = rs.doubled(frame) or rs.missing(frame, env)
    if problem:
        raise UserError(f"{role}: {problem}")
    return rs, frame, env


def _listing(keys: list[tuple[str, str]], limit: int = 4) -> str:
    shown = ", ".join(f"{case} [{label}]" for case, label in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def floor_for(device: str, floor_s: float | None) -> float:
    """The floor of a case on ``device``: the one given, else its device type's default."""
    return floor_s if floor_s is not None else FLOOR_S["cuda" if str(device).startswith("cuda") else "cpu"]


def compare(baseline: str | Path, new: str | Path, factor: float = FACTOR, alpha: float = ALPHA,
            floor_s: float | None = None) -> Comparison:
    """Judge every (case_id, label) of ``new`` against ``baseline``; raises UserError when they cannot be compared."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 1):
        raise UserError(f"--factor must be a finite number > 1, got {factor}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {alpha}")
    if floor_s is not None and not (math.isfinite(floor_s) and floor_s >= 0):
        raise UserError(f"--floor must be a finite number of seconds >= 0, got {floor_s}")
    base_rs, base_frame, base_env = _load(Path(baseline), "baseline")
    new_rs, new_frame, new_env = _load(Path(new), "new run")
    if Path(baseline).resolve() == Path(new).resolve():
        raise UserError(f"{new} is compared with itself: give the baseline and a new run")
    if base_env["calibration"] != new_env["calibration"]:
        raise UserError(f"the runs used different calibrations: {base_env['calibration']!r} (baseline) and "
                        f"{new_env['calibration']!r} (new run); record the baseline again")

    base_keys = list(zip(base_frame["case_id"], base_frame["label"]))
    new_keys = list(zip(new_frame["case_id"], new_frame["label"]))
    base_set, new_set = set(base_keys), set(new_keys)
    only_base = [k for k in base_keys if k not in new_set]
    only_new = [k for k in new_keys if k not in base_set]
    if only_base or only_new:
        parts = ([f"only in the baseline: {_listing(only_base)}"] if only_base else []) + (
            [f"only in the new run: {_listing(only_new)}"] if only_new else [])
        raise UserError(f"the runs have different grids ({'; '.join(parts)}); "
                        "compare runs of the same preset, or record the baseline again")
    failed = []
    for role, frame in (("baseline", base_frame), ("new run", new_frame)):
        for _, row in frame[frame["status"] != "ok"].iterrows():
            failed.append(f"{role}: {row['case_id']} [{row['label']}] {row['status']}"
                          + (f" ({row['reason']})" if isinstance(row["reason"], str) and row["reason"] else ""))
    if failed:
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise UserError(f"{len(failed)} case(s) did not run (status other than ok), so nothing is judged: "
                        f"{'; '.join(failed[:3])}{more}")

    base_samples = {k: Timing.from_record(r) for k, r in base_rs.sample_records(calibration=True).items()}
    new_samples = {k: Timing.from_record(r) for k, r in new_rs.sample_records(calibration=True).items()}
    result = Comparison(Path(baseline), Path(new), factor, alpha, floor_s, baseline_env=base_env, new_env=new_env)
    devices = dict(zip(zip(new_frame["case_id"], new_frame["label"]), new_frame["device"]))
    for case_id, label in new_keys:
        inputs = []
        for role, samples in (("baseline", base_samples), ("new run", new_samples)):
            for key in ((case_id, label), (case_id, CALIBRATION)):
                if key not in samples or not samples[key].samples:
                    raise UserError(f"{role}: samples.jsonl has no samples for {key[0]} [{key[1]}]")
                inputs.append(samples[key])
        try:
            fields = judge(*inputs, factor=factor, alpha=alpha, floor_s=floor_for(devices[(case_id, label)], floor_s))
        except ValueError as exc:
            raise UserError(f"{case_id} [{label}]: {exc}") from None
        result.verdicts.append(Verdict(case_id=case_id, label=label, **fields))
    result.verdicts.sort(key=lambda v: ORDER[v.status])
    return result


# -- reports -------------------------------------------------------------------------------
def headline(c: Comparison) -> str:
    counts = ", ".join(f"{c.count(s)} {s}" for s in VERDICTS)
    verdict = f"REGRESSION: {len(c.regressions)} slower" if c.regressions else "no regression"
    return f"{verdict} ({counts})"


def method(c: Comparison) -> str:
    return (f"times normalised by each case's calibration product, round by round; slower/faster: ratio beyond "
            f"{c.factor:g}x and fewer than α = {c.alpha:g} of the ratios of a hierarchical bootstrap (worker processes, "
            f"then rounds) on the other side of {c.factor:g}x; "
            f"medians below {floor_text(c.floor_s)} are not judged")


def floor_text(floor_s: float | None) -> str:
    if floor_s is not None:
        return format_seconds(floor_s)
    return f"{format_seconds(FLOOR_S['cpu'])} (CPU) or {format_seconds(FLOOR_S['cuda'])} (GPU)"


def _ratio(v: Verdict) -> str:
    return f"{v.ratio:.2f}x" if math.isfinite(v.ratio) else "-"


def _interval(v: Verdict) -> str:
    return f"{v.ratio_lo:.2f}–{v.ratio_hi:.2f}" if math.isfinite(v.ratio_lo) else "-"


def _p(v: Verdict) -> str:
    return f"{v.p_value:.1g}" if math.isfinite(v.p_value) else "-"


def _run(env: dict) -> str:
    git = env.get("env", {}).get("git", {}) or {}
    commit = (git.get("commit") or "")[:10] or "no commit"
    return f"{commit}{' (dirty)' if git.get('dirty') else ''}, {env.get('env', {}).get('cpu_model') or '?'}"


NUMERIC = ("ratio", "95 % CI", "p", "baseline", "new")
COLOURS = {"slower": "bold red", "faster": "green", "same": "", "inconclusive": "yellow"}


def short_case_ids(case_ids: list[str]) -> tuple[list[str], list[str]]:
    """Case ids without the fields every one of them shares, and those shared fields.

    ["hpca/hpca/fc/b8/float32/cpu/update", "swta/swta/fc/b8/float32/cpu/step"] ->
    (["hpca/hpca/update", "swta/swta/step"], ["fc", "b8", "float32", "cpu"])
    """
    parts = [case_id.split("/") for case_id in case_ids]
    if len(parts) < 2 or len({len(p) for p in parts}) != 1:
        return list(case_ids), []
    shared = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) == 1]
    return (["/".join(f for i, f in enumerate(p) if i not in shared) for p in parts],
            [parts[0][i] for i in shared])


def table(c: Comparison) -> Table:
    """The terminal table, narrow enough for an 80-column CI log.

    Case ids keep only the fields that differ, an implementation shared by every case leaves
    its column, and notes go under the table: what every case shares is in the caption.
    Numbers never wrap; a case id wraps (never cropped) when the terminal is too narrow.
    """
    cases, shared = short_case_ids([v.case_id for v in c.verdicts])
    labels = list(dict.fromkeys(v.label for v in c.verdicts))
    columns = ["status", "case", "impl", "ratio", "95 % CI", "p", "baseline", "new"]
    rows = [[v.status, case, v.label, _ratio(v), _interval(v), _p(v), format_seconds(v.base_s),
             format_seconds(v.new_s)] for v, case in zip(c.verdicts, cases)]
    if len(labels) == 1:
        shared, columns, rows = [*shared, labels[0]], columns[:2] + columns[3:], [r[:2] + r[3:] for r in rows]
    notes = [f"{case}: {v.note}" for v, case in zip(c.verdicts, cases) if v.note]
    caption = "\n".join([method(c) + (f"; every case: {' · '.join(shared)}" if shared else ""), *notes])
    t = Table(title=escape(f"hebbbench compare: {headline(c)}"), caption=escape(caption), box=box.SIMPLE_HEAD,
              show_edge=False, padding=(0, 1, 0, 0))
    for i, column in enumerate(columns):
        width = max([len(column)] + [len(row[i]) for row in rows])
        if column == "case":  # folds rather than vanishing on a narrow terminal
            t.add_column(column, overflow="fold", min_width=min(width, 12))
        else:
            t.add_column(column, justify="right" if column in NUMERIC else "left", no_wrap=True, min_width=width)
    for row in rows:
        style = COLOURS[row[0]]
        t.add_row(*([f"[{style}]{row[0]}[/]"] if style else [row[0]]), *map(escape, row[1:]))  # data: text
    return t


def markdown(c: Comparison) -> str:
    """A summary for a pull-request comment."""
    lines = [f"### hebbbench compare: {headline(c)}", "",
             f"Baseline `{c.baseline}` ({_run(c.baseline_env)}) against `{c.new}` ({_run(c.new_env)}).", "",
             f"Ratio: normalised time new / baseline. Method: {method(c)}.", "",
             "| status | case | impl | ratio | 95 % CI | p | baseline | new | note |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for v in c.verdicts:
        status = f"**{v.status}**" if v.status == "slower" else v.status
        lines.append(f"| {status} | `{v.case_id}` | `{v.label}` | {_ratio(v)} | {_interval(v)} | {_p(v)} | "
                     f"{format_seconds(v.base_s)} | {format_seconds(v.new_s)} | {v.note} |")
    return "\n".join(lines) + "\n"

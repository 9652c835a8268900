"""The reproduction of the paper's claim as a result set and a report (``hebbbench reproduce``).

A reproduction result set is a folder with ``steps.csv`` (one row per network × rule ×
implementation variant: step time, epoch and 20-epoch extrapolations, speedup over the
baseline), ``layers.csv`` (the same per Hebbian layer), ``samples.csv`` (raw samples, keyed by
case and label), ``claims.csv`` (the published claims) and ``env.json`` (``kind = "network"``,
parameters, environment). Rows have the store's key columns (:data:`hebbbench.store.KEY_COLUMNS`):
fh's row carries fh's speedup over the baseline (median(baseline)/median(fh)), as in a grid set.
Sets written before the key columns (``variant``, ``options``, ``note``, and ``fh_speedup`` on
the naive rows) are read into them (:func:`from_older_columns`).

The report sets the measured speedups beside the published ones ("up to 70x",
Neurocomputing 2024; "up to 50x", SISAP 2022; "more than 20x", the authors' repository)
and says, per device, whether "up to 70x" is reproduced, exceeded or missed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from hebbbench.measure import environment
from hebbbench import store
from hebbbench.errors import UserError
from hebbbench.reports import render
from hebbbench.reports.markup import code, text
from hebbbench.measure.units import format_bytes, format_seconds

KIND = store.Kind.NETWORK
FILES = store.NETWORK_FILES
#: the headline claim checked by the verdict.
HEADLINE_CLAIM = 70.0
#: the baseline of the headline speedups when a set names none: the authors' original grouping.
BASELINE = "naive(G=8)"
MARKERS = {"swta": "o", "hpca": "s"}


def save(result, out: str | Path, seed: int, argv: list[str] | None, started_at: str, finished_at: str) -> Path:
    """Write a :class:`~hebbbench.suites.reproduce.Reproduction` as a result set; refuses to overwrite one."""
    frames = {"samples": result.samples, "layers": result.layers, "steps": result.steps}
    ns = store.NetworkSet.create(out, {name: list(frame.columns) for name, frame in frames.items()}, result.claims,
                                 {"started_at": started_at, "meta": result.meta,
                                  "env": environment.collect(seed, argv)})
    ns.append(frames)
    ns.finish(finished_at=finished_at)
    return ns.path


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    path = Path(path)
    env = store.require(path, "hebbbench report", (KIND,)).env
    frames = {}
    for name, file in FILES.items():
        if not (path / file).is_file():
            raise UserError(f"{path} is incomplete: {file} is missing")
        frames[name] = pd.read_csv(path / file)
    if "fh_speedup" in frames["steps"].columns:
        frames = from_older_columns(env, frames)
    for name in ("steps", "layers"):
        for column in ("reason", "baseline"):  # text, "" where empty (an all-empty column reads as floats)
            frames[name][column] = frames[name][column].astype(object).fillna("").astype(str)
    return env, frames


#: statuses of older network sets that are one word now (the reason says which budget).
OLDER_STATUSES = {"skipped_memory": "skipped", "skipped_time": "skipped"}


def from_older_columns(env: dict[str, Any], frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A network set written before the key columns, in them (nothing re-measured).

    Then rows named the variant ``variant``, its options ``options``, the reason ``note``, said
    ``skipped_memory``/``skipped_time`` where every set now says ``skipped``, and put
    "fh over this variant" (median(variant)/median(fh), ``fh_speedup``) on each variant's row. Now
    each row carries median(baseline)/median(row): fh's row takes the baseline row's old value and
    interval unchanged; the baseline's own row is 1; another variant's is the ratio of the two old
    points (no interval: the samples were not paired that way).
    """
    meta = env.get("meta") or {}
    device, dtype, run_id = str(meta.get("device", "")), str(meta.get("dtype", "")), env.get("run_id", "")
    out = dict(frames)
    for name, what in (("steps", "step"), ("layers", "update")):
        old = frames[name].rename(columns={"variant": "label", "options": "impl_options", "note": "reason"})
        old["status"] = old["status"].replace(OLDER_STATUSES)
        part = old["layer"] if name == "layers" else pd.Series("step", index=old.index)
        batch = old["batch_size"] if name == "steps" else old["network"].map(_batch_size(frames["steps"]))
        old["case_id"] = [f"{n}/{r}/{p}/b{b}/{dtype}/{device}/{what}"
                          for n, r, p, b in zip(old["network"], old["rule"], part, batch)]
        old["schema"], old["run_id"], old["device"], old["dtype"], old["what"] = 1, run_id, device, dtype, what
        old["speedup"] = old["speedup_lo"] = old["speedup_hi"] = math.nan
        old["baseline"] = ""
        for _, rows in old.groupby("case_id", sort=False):
            naive = rows[rows["impl"] == "naive"]
            if naive.empty:
                continue
            base = naive.iloc[0]
            old.loc[rows.index, "baseline"] = base["label"]
            for i, row in rows.iterrows():
                if row["label"] == base["label"]:
                    old.loc[i, ["speedup", "speedup_lo", "speedup_hi"]] = [1.0, math.nan, math.nan]
                elif row["label"] == "fh":
                    old.loc[i, ["speedup", "speedup_lo", "speedup_hi"]] = [
                        base["fh_speedup"], base["fh_speedup_low"], base["fh_speedup_high"]]
                else:
                    old.loc[i, "speedup"] = base["fh_speedup"] / row["fh_speedup"]
        old = old.drop(columns=["fh_speedup", "fh_speedup_low", "fh_speedup_high"])
        out[name] = old[[*store.KEY_COLUMNS, *(c for c in old.columns if c not in store.KEY_COLUMNS)]]
    samples = frames["samples"]
    if "variant" in samples.columns:
        batches = _batch_size(frames["steps"])
        out["samples"] = pd.DataFrame({
            "case_id": [f"{n}/{r}/{layer}/b{batches.get(n)}/{dtype}/{device}/{'step' if layer == 'step' else 'update'}"
                        for n, r, layer in zip(samples["network"], samples["rule"], samples["layer"])],
            "label": samples["variant"], "index": samples["index"], "seconds": samples["seconds"]})
    return out


def _batch_size(steps: pd.DataFrame) -> dict[str, int]:
    return {n: int(b) for n, b in zip(steps["network"], steps["batch_size"])}


def verdict(best: float) -> str:
    """'up to 70x' against the best measured speedup of a device."""
    if not math.isfinite(best):
        return "not measured"
    if best >= 1.1 * HEADLINE_CLAIM:
        return f"exceeded ({best:.0f}x > 70x)"
    if best >= 0.9 * HEADLINE_CLAIM:
        return f"reproduced ({best:.0f}x ≈ 70x)"
    return f"missed ({best:.0f}x < 70x)"


def headline_rows(steps: pd.DataFrame) -> pd.DataFrame:
    """Per network and rule: naive(G=8) and fh epoch and 20-epoch times, and the speedup."""
    rows = []
    for (network, rule), part in steps.groupby(["network", "rule"], sort=False):
        by = {r["label"]: r for _, r in part.iterrows()}
        fh = by.get("fh")
        base = by.get(fh["baseline"]) if fh is not None else None
        if fh is None or base is None:
            continue
        rows.append({"network": network, "dataset": fh["dataset"], "rule": rule, "batch": fh["batch_size"],
                     "naive_epoch_s": base["epoch_s"], "fh_epoch_s": fh["epoch_s"],
                     "naive_total_s": base["total_s"], "fh_total_s": fh["total_s"],
                     "speedup": fh["speedup"], "low": fh["speedup_lo"], "high": fh["speedup_hi"],
                     "estimated": bool(base["estimated"] or fh["estimated"]), "naive_status": base["status"],
                     "naive_method": base["method"], "fh_peak": fh["peak_bytes"], "naive_peak": base["peak_bytes"]})
    return pd.DataFrame(rows)


def _layer_time_text(r) -> str:
    """A layer's time as the run used it (median_s): measured, one cold run, or the calibrated estimate."""
    if r["status"] == "ok":
        return format_seconds(r["median_s"])
    if not math.isfinite(r["median_s"]):
        return render.DASH
    return format_seconds(r["median_s"]) + (" (one cold run)" if r["status"] == "over_budget" else " (est.)")


def _speedup_text(row: pd.Series) -> str:
    if not math.isfinite(row["speedup"]):
        return render.DASH
    interval = (f" [{row['low']:.3g}, {row['high']:.3g}]"
                if math.isfinite(row["low"]) and math.isfinite(row["high"]) else "")
    return f"{row['speedup']:.3g}×{interval}" + (" (estimated)" if row["estimated"] else "")


def baseline_label(steps: pd.DataFrame) -> str:
    """The label the set's speedups are measured against (the first one named; the default if none)."""
    named = [b for b in steps.get("baseline", pd.Series(dtype=object)) if isinstance(b, str) and b]
    return named[0] if named else BASELINE


def _figure_speedup(head: pd.DataFrame, title: str, baseline: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
    labels = [f"{n}\n{r}" for n, r in zip(head["network"], head["rule"])]
    x = np.arange(len(head))
    for i, row in head.iterrows():
        low = row["speedup"] - row["low"] if math.isfinite(row["low"]) else 0
        high = row["high"] - row["speedup"] if math.isfinite(row["high"]) else 0
        ax.errorbar([x[i]], [row["speedup"]], yerr=[[low], [high]], fmt=MARKERS.get(row["rule"], "D"),
                    color="tab:gray" if row["estimated"] else "tab:blue", capsize=4, ms=7)
        ax.annotate(f"{row['speedup']:.3g}×" + (" est." if row["estimated"] else ""), (x[i], row["speedup"]),
                    textcoords="offset points", xytext=(8, 0), va="center", fontsize=8)
    for value, claim, style in ((70, "up to 70× (Neurocomputing 2024)", "--"), (50, "up to 50× (SISAP 2022)", ":"),
                                (20, "more than 20× (authors' code)", "-.")):
        ax.axhline(value, color="tab:red", ls=style, lw=1)
        ax.text(len(head) - 0.5, value, claim, color="tab:red", fontsize=7, ha="right", va="bottom")
    ax.axhline(1, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.6, len(head) - 0.4)
    ax.set_ylabel(f"speedup of fh over {baseline} (×), whole step")
    ax.set_title(title)
    values = [v for v in list(head["speedup"]) + list(head["high"]) if math.isfinite(v)] + [80, 1]
    ax.set_ylim(0.8, max(values) * 1.8)
    return fig


def _figure_layers(layers: pd.DataFrame, title: str, baseline: str):
    import matplotlib.pyplot as plt

    panels = list(layers.groupby(["network", "rule"], sort=False))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.5, 2.6 * len(panels)), layout="constrained", squeeze=False)
    for ax, ((network, rule), part) in zip(axes[:, 0], panels):
        names = list(dict.fromkeys(part["layer"]))
        x = np.arange(len(names))
        for offset, variant, color in ((-0.2, baseline, "tab:orange"), (0.2, "fh", "tab:blue")):
            rows = part[part["label"] == variant].set_index("layer").reindex(names)
            times = rows["median_s"].astype(float)  # measured, one cold run, or the calibrated estimate
            estimated = rows["status"] != "ok"
            ax.bar(x + offset, times, width=0.4, color=color, label=variant,
                   hatch=None, edgecolor=color)
            ax.bar((x + offset)[estimated.values], times[estimated.values], width=0.4, color="white",
                   edgecolor=color, hatch="//", label=f"{variant} (estimated)" if estimated.any() else None)
        fh = part[part["label"] == "fh"].set_index("layer").reindex(names)
        for i, name in enumerate(names):
            s = fh["speedup"].iloc[i]
            if math.isfinite(s):
                ax.annotate(f"{s:.3g}×", (x[i], ax.get_ylim()[1]), xytext=(0, -10), textcoords="offset points",
                            ha="center", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(x, names)
        ax.set_ylabel("update time (s)")
        ax.set_title(f"{network}, {rule}: per-layer update time, speedup above", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title, fontsize=10)
    return fig


def build(path: str | Path, out: str | Path | None = None, argv: list[str] | None = None) -> Path:
    """Write report.md, report.html and figures of a reproduction result set."""
    env, frames = load(path)
    run_id = env.get("run_id") or Path(path).name
    target = Path(out) if out is not None else Path("reports") / run_id
    if target.is_dir() and any(target.iterdir()) and not (target / "report.md").exists():
        raise UserError(f"{target} is not empty and holds no earlier report; choose another --out")
    target.mkdir(parents=True, exist_ok=True)
    meta, steps, layers, claims = env.get("meta", {}), frames["steps"], frames["layers"], frames["claims"]
    device = f"{meta.get('device_name', '?')} ({meta.get('device', '?')})"
    title = f"{device}, {meta.get('dtype', '?')}, torch {meta.get('torch', '?')}"
    head = headline_rows(steps)
    baseline = baseline_label(steps)

    doc = render.Document(f"hebbbench reproduce: {run_id}")
    if env.get("status") != "complete":
        doc.add(render.Paragraph(
            f"*Not complete* (status {text(env.get('status'))}): only the finished (network, rule) "
            f"cases are shown; {code(f'hebbbench reproduce --resume {path}')} finishes it."))
    best = float(head["speedup"].max()) if len(head) else math.nan
    doc.add(render.Heading("Verdict"), render.Paragraph(
        f"On {text(device)}, the best whole-step speedup of fh over the original formulation ({text(baseline)}) is "
        f"**{best:.3g}×**: the paper's \"up to 70×\" is **{verdict(best)}** here."
        if math.isfinite(best) else "No fh-over-naive speedup was measured."))
    doc.add(render.Heading("Epoch time, naive against FastHebb"), render.Table(
        ["network", "dataset", "rule", "batch", f"{text(baseline)} epoch", "fh epoch", f"{text(baseline)} 20 epochs",
         "fh 20 epochs", "speedup [95 % CI]", "peak memory naive / fh"],
        [[*map(text, (r["network"], r["dataset"], r["rule"], r["batch"])), format_seconds(r["naive_epoch_s"]),
          format_seconds(r["fh_epoch_s"]), format_seconds(r["naive_total_s"]), format_seconds(r["fh_total_s"]),
          _speedup_text(r), f"{_peak(r['naive_peak'])} / {_peak(r['fh_peak'])}"]
         for _, r in head.iterrows()], align="lllrrrrrrl"))
    estimated = head[head["estimated"]] if len(head) else head
    if len(estimated):
        doc.add(render.Paragraph(
            "**Estimated** rows: the naive step could not be timed whole (out of memory, or over the time "
            "budget on some layers); its time is composed from the layers it ran and the calibrated cost "
            "model for the rest: " + "; ".join(text(f"{r['network']}/{r['rule']}: {r['naive_method']}")
                                              for _, r in estimated.iterrows())))
    doc.add(render.Heading("Published claims"), render.Table(
        ["claim", "source"], [[text(c["claim"]), text(c["source"])] for _, c in claims.iterrows()]))

    with matplotlib.rc_context({"font.size": 9, "svg.hashsalt": "hebbbench", "svg.fonttype": "none"}):
        import matplotlib.pyplot as plt

        for stem, heading, make in (("speedup", "Whole-step speedup beside the published claims",
                                     lambda: _figure_speedup(head, title, baseline)),
                                    ("layers", "Per-layer breakdown: where the speedup comes from",
                                     lambda: _figure_layers(layers, title, baseline))):
            if (stem == "speedup" and head.empty) or (stem == "layers" and layers.empty):
                doc.add(render.Heading(heading, 3), render.Paragraph("*Not drawn:* no data."))
                continue
            fig = make()
            png, svg = target / f"{stem}.png", target / f"{stem}.svg"
            fig.savefig(png, dpi=110, metadata={"Software": None})
            fig.savefig(svg, metadata={"Date": None})
            plt.close(fig)
            doc.add(render.Heading(heading, 3), render.FigureBlock(stem, heading, png, svg))

    doc.add(render.Heading("Every variant"), render.Table(
        ["network", "rule", "variant", "status", "step median", "IQR", "samples", f"speedup over {text(baseline)}",
         "epoch", "note"],
        [[*map(text, (r["network"], r["rule"], r["label"], r["status"])), format_seconds(r["median_s"]),
          format_seconds(r["iqr_s"]), str(r["n_samples"]), _speedup_text(
              {"speedup": r["speedup"], "low": r["speedup_lo"], "high": r["speedup_hi"],
               "estimated": bool(r["estimated"])}), format_seconds(r["epoch_s"]),
          text(r["reason"] if isinstance(r["reason"], str) else "")]
         for _, r in steps.iterrows()]))
    doc.add(render.Heading("Per layer"), render.Table(
        ["network", "rule", "layer", "N", "M", "D", "variant", "status", "median", f"speedup over {text(baseline)}"],
        [[*map(text, (r["network"], r["rule"], r["layer"])), str(r["n"]), str(r["m"]), str(r["d"]), text(r["label"]),
          text(r["status"]), _layer_time_text(r),
          f"{r['speedup']:.3g}×" if math.isfinite(r["speedup"]) else render.DASH]
         for _, r in layers.iterrows()]))
    info = env.get("env", {})
    doc.add(render.Heading("Environment"), render.Table(["item", "value"], [[item, text(value)] for item, value in [
        ["device", device], ["dtype", str(meta.get("dtype"))], ["threads", str(meta.get("threads"))],
        ["torch / Python", f"{info.get('torch')} / {info.get('python')}"],
        ["hebbbench", f"{info.get('hebbbench_version')}, commit {(info.get('git') or {}).get('commit')}"],
        ["mini-batches timed", str(meta.get("batches"))], ["Hebbian epochs", str(meta.get("epochs"))],
        ["budgets", f"naive call {meta.get('max_naive_seconds')} s, per network {meta.get('time_budget_s')} s, "
                    f"memory {format_bytes(meta.get('memory_budget_bytes') or 0)}"],
        ["data", "; ".join(f"{k}: {v.get('source')}" for k, v in (meta.get("data") or {}).items())],
        ["wall time", format_seconds(meta.get("wall_seconds", math.nan))],
        ["conditions", render.conditions_text(env)],
    ]]), render.Paragraph("The command that produced the data:"), render.Code(" ".join(info.get("command") or [])),
        render.Heading("Regenerating this report", 3),
        render.Code(" ".join(argv or ["hebbbench", "report", str(path)] + (["--out", str(out)] if out else []))))
    (target / "report.md").write_text(render.to_markdown(doc))
    (target / "report.html").write_text(render.to_html(doc))
    return target


def _peak(value: Any) -> str:
    return format_bytes(value) if isinstance(value, (int, float)) and math.isfinite(value) else render.DASH

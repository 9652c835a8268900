"""The report of a ``hebbbench accuracy`` set: speed and quality side by side.

``accuracy.png``/``accuracy.svg`` has one panel per rule — held-out accuracy against the label
fraction (log scale) for each implementation's probe and fine-tuning and for the two baselines,
the line the mean over seeds, the band their min–max — and one panel of the probe's accuracy
against Hebbian wall time (the time-to-accuracy curves, one line per seed, the target dotted).
report.md and report.html hold the tables: accuracy per fraction (mean ± standard deviation over
seeds), the Hebbian phase's wall time per implementation, the time to the target accuracy, what
Hebbian pre-training gives over backprop alone at the smallest fraction, and the parity gate
(:mod:`hebbbench.suites.accuracy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from hebbbench import store
from hebbbench.errors import UserError
from hebbbench.measure.units import format_seconds
from hebbbench.reports import render
from hebbbench.reports.markup import code, text

STEM = "accuracy"
DPI = 100
PANEL_W, PANEL_H = 4.8, 3.8
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7, "svg.hashsalt": "hebbbench",
      "svg.fonttype": "none"}
METHOD_TEXT = {"probe": "Hebbian + classifier", "finetune": "Hebbian + backprop fine-tuning",
               "backprop": "backprop only (baseline)", "random": "random features (baseline)"}
FILES = ("results.csv", "curve.csv", "parity.csv")


@dataclass
class AccuracyData:
    env: dict
    results: pd.DataFrame
    curve: pd.DataFrame
    parity: pd.DataFrame


@dataclass
class AccuracyReport:
    path: Path
    markdown: Path
    html: Path
    png: Path | None


def read(path: str | Path) -> AccuracyData:
    """env.json and the three tables of an accuracy set; one line for a set that is not one."""
    path = Path(path)
    env = store.require(path, "hebbbench report", (store.Kind.ACCURACY,)).env
    frames = []
    for name in FILES:
        if not (path / name).is_file():
            raise UserError(f"{path} is incomplete: {name} is missing")
        try:
            frames.append(pd.read_csv(path / name, keep_default_na=False, na_values=[""]))
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path / name} is damaged: {' '.join(str(exc).split())[:200]}") from None
    results, curve, parity = frames
    for frame, column in ((results, "accuracy"), (curve, "accuracy"), (parity, "accuracy_diff_pp")):
        if column not in frame.columns:
            raise UserError(f"{path} is damaged: a table has no {column} column")
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for frame in (results, curve, parity):
        for column in ("rule", "impl", "label"):
            if column in frame.columns:
                frame[column] = frame[column].fillna("").astype(str)
    return AccuracyData(env, results, curve, parity)


def series(results: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(method, rule, label) of every series, Hebbian ones first, in the order they ran."""
    ok = results[results["status"] == "ok"]
    keys = list(dict.fromkeys(zip(ok["method"], ok["rule"], ok["label"])))
    order = {"probe": 0, "finetune": 1, "backprop": 2, "random": 3}
    return sorted(keys, key=lambda k: order.get(k[0], 9))


def series_name(method: str, rule: str, label: str) -> str:
    if method in ("backprop", "random"):
        return METHOD_TEXT[method]
    return f"{rule} {label}: {METHOD_TEXT[method]}"


def stats(results: pd.DataFrame, method: str, rule: str, label: str) -> pd.DataFrame:
    """Per fraction: mean, standard deviation, min, max of the accuracy over seeds, and the seeds counted."""
    part = results[(results["method"] == method) & (results["rule"] == rule) & (results["label"] == label)
                   & (results["status"] == "ok")]
    grouped = part.groupby("fraction")["accuracy"]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0), "min": grouped.min(),
                         "max": grouped.max(), "n": grouped.count(),
                         "labels": part.groupby("fraction")["labels"].median()})


def pct(value: float) -> str:
    return render.DASH if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def accuracy_table(data: AccuracyData) -> render.Table:
    fractions = sorted(data.results["fraction"].unique())
    labels_at = data.results.groupby("fraction")["labels"].median()
    columns = ["method", "rule", "impl"] + [f"f = {f:g} ({int(labels_at[f])} labels)" for f in fractions]
    rows = []
    for method, rule, label in series(data.results):
        s = stats(data.results, method, rule, label)
        cells = [f"{pct(s.loc[f, 'mean'])} ± {pct(s.loc[f, 'std'])} (n={int(s.loc[f, 'n'])})" if f in s.index
                 else render.DASH for f in fractions]
        rows.append([text(METHOD_TEXT.get(method, method)), text(rule) or render.DASH, text(label) or render.DASH,
                     *cells])
    bad = data.results[data.results["status"] != "ok"]
    for (method, rule, label, status), part in bad.groupby(["method", "rule", "label", "status"]):
        rows.append([text(METHOD_TEXT.get(method, method)), text(rule), text(label),
                     f"**{text(status)}**: {text(part['reason'].iloc[0])}", *[""] * (len(fractions) - 1)])
    return render.Table(columns, rows, align="lll" + "r" * len(fractions))


def timing_table(data: AccuracyData) -> render.Table:
    """Hebbian phase wall time per (rule, impl): median over seeds, range, and fh's speedup over each."""
    hebb = data.results[(data.results["method"] == "probe") & data.results["hebbian_s"].notna()]
    per_run = hebb.groupby(["rule", "label", "seed"], sort=False)["hebbian_s"].first().reset_index()
    rows = []
    for (rule, label), part in per_run.groupby(["rule", "label"], sort=False):
        median = float(part["hebbian_s"].median())
        fh = per_run[(per_run["rule"] == rule) & (per_run["label"] == "fh")]["hebbian_s"]
        ratio = median / float(fh.median()) if len(fh) and label != "fh" else math.nan
        rows.append([text(rule), text(label), format_seconds(median),
                     f"{format_seconds(part['hebbian_s'].min())} – {format_seconds(part['hebbian_s'].max())}",
                     str(len(part)), render.DASH if not math.isfinite(ratio) else f"{ratio:.2f}×"])
    return render.Table(["rule", "impl", "Hebbian phase, median", "range over seeds", "seeds",
                         "time / fh's (fh's speedup)"], rows, align="llrrrr")


def time_to_accuracy(curve: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per (rule, label, seed): the Hebbian seconds at the first curve point reaching ``target`` (NaN: never)."""
    rows = []
    for (rule, label, seed), part in curve.groupby(["rule", "label", "seed"], sort=False):
        part = part.sort_values("step")
        hit = part[part["accuracy"] >= target]
        rows.append({"rule": rule, "label": label, "seed": seed,
                     "seconds": float(hit["hebbian_s"].iloc[0]) if len(hit) else math.nan,
                     "step": int(hit["step"].iloc[0]) if len(hit) else -1,
                     "final": float(part["accuracy"].iloc[-1])})
    return pd.DataFrame(rows, columns=["rule", "label", "seed", "seconds", "step", "final"])


def tta_table(data: AccuracyData) -> tuple[render.Table, str]:
    config = data.env.get("config", {})
    target = float(config.get("target", math.nan))
    fraction = data.curve["fraction"].iloc[0] if len(data.curve) else math.nan
    tta = time_to_accuracy(data.curve, target)
    rows = []
    for (rule, label), part in tta.groupby(["rule", "label"], sort=False):
        reached = part["seconds"].dropna()
        cell = (f"{format_seconds(reached.median())} (step {int(part.loc[reached.index, 'step'].median())})"
                if len(reached) else "not reached")
        rows.append([text(rule), text(label), cell, f"{len(reached)} of {len(part)}",
                     f"{pct(part['final'].mean())} %"])
    note = (f"Time to accuracy: Hebbian wall time until the probe, trained on a label fraction of {fraction:g} and "
            f"checked every {text(config.get('probe_every'))} Hebbian steps (outside the timed steps), first "
            f"reaches {100 * target:.1f} % held-out accuracy; median over the seeds that reach it.")
    return render.Table(["rule", "impl", "time to target, median", "seeds that reach it",
                         "final curve accuracy, mean"], rows, align="llrrr"), note


def finding(data: AccuracyData) -> str:
    """What Hebbian pre-training gives over backprop alone at the smallest fraction, in numbers."""
    results = data.results[data.results["status"] == "ok"]
    if results.empty:
        return "No run finished."
    smallest = float(results["fraction"].min())
    at = results[results["fraction"] == smallest]
    base = at[at["method"] == "backprop"]["accuracy"]
    if base.empty:
        return "No backprop-only baseline ran."
    parts = []
    for (method, rule, label), part in at[at["method"].isin(["probe", "finetune"])].groupby(
            ["method", "rule", "label"], sort=False):
        diff = 100 * (part["accuracy"].mean() - base.mean())
        parts.append(f"{text(rule)} {text(label)} {METHOD_TEXT[method]} {pct(part['accuracy'].mean())} % "
                     f"({'+' if diff >= 0 else ''}{diff:.1f} points)")
    labels = int(at["labels"].median())
    return (f"At the smallest label fraction, {smallest:g} ({labels} labelled images), backprop alone reaches "
            f"{pct(base.mean())} ± {pct(base.std(ddof=1) if len(base) > 1 else 0.0)} % (mean ± sd over "
            f"{len(base)} seeds); " + "; ".join(parts) + ". Random features: "
            f"{pct(at[at['method'] == 'random']['accuracy'].mean())} %.")


def parity_table(data: AccuracyData) -> render.Table:
    rows = []
    for _, r in data.parity.iterrows():
        diff = r.get("weight_rel_diff")
        tol = r.get("weight_rtol")
        verdict = str(r["verdict"]) if isinstance(r["verdict"], str) and r["verdict"] else render.DASH
        rows.append([text(r["rule"]), text(r["impl"]), text(r["kind"]),
                     render.DASH if pd.isna(diff) else f"{float(diff):.2e}",
                     "reported" if pd.isna(tol) else f"≤ {float(tol):g}",
                     render.DASH if pd.isna(r["accuracy_diff_pp"]) else f"{float(r['accuracy_diff_pp']):.2f}",
                     f"≤ {float(r['accuracy_tol_pp']):g}",
                     f"**{text(verdict)}**" if verdict == "flagged" else text(verdict),
                     text(r["status"]) + (f": {text(r['reason'])}" if isinstance(r["reason"], str) and r["reason"]
                                          else "")])
    return render.Table(["rule", "impl", "kind", "weights vs fh (relative)", "tolerance",
                         "accuracy vs fh, max over fractions (points)", "tolerance (points)", "verdict", "status"],
                        rows, align="lllrrrrll")


def draw(data: AccuracyData) -> Figure | None:
    ok = data.results[data.results["status"] == "ok"]
    if ok.empty:
        return None
    rules = [r for r in dict.fromkeys(ok["rule"]) if r]
    panels = max(1, len(rules)) + (1 if len(data.curve) else 0)
    fig = Figure(figsize=(panels * PANEL_W, PANEL_H + 0.5), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, panels, squeeze=False)[0])
    config = data.env.get("config", {})
    fig.suptitle(f"hebbbench accuracy: {config.get('dataset')} on {data.env.get('network', {}).get('trained', '')}; "
                 "mean over seeds, band min–max", fontsize=10)
    fractions = sorted(ok["fraction"].unique())
    keys = series(data.results)
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    styles = {"probe": "-", "finetune": "--", "backprop": ":", "random": "-."}
    for ax, rule in zip(axes, rules or [""]):
        for key in keys:
            method, r, label = key
            if r not in (rule, ""):
                continue
            s = stats(data.results, *key)
            ax.plot(s.index, 100 * s["mean"], styles.get(method, "-"), marker="o", markersize=3,
                    color=colours[key], label=series_name(*key))
            ax.fill_between(s.index, 100 * s["min"], 100 * s["max"], color=colours[key], alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(fractions))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("label fraction f")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title(f"{rule}: accuracy against label fraction" if rule else "accuracy against label fraction")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    if len(data.curve):
        ax = axes[-1]
        target = float(config.get("target", math.nan))
        for i, ((rule, label), part) in enumerate(data.curve.groupby(["rule", "label"], sort=False)):
            for j, (_, seed_part) in enumerate(part.groupby("seed")):
                seed_part = seed_part.sort_values("step")
                ax.plot(seed_part["hebbian_s"], 100 * seed_part["accuracy"], color=f"C{i % 10}", marker=".",
                        linewidth=1, label=f"{rule} {label}" if j == 0 else None)
        if math.isfinite(target):
            ax.axhline(100 * target, color="0.4", linestyle=":", linewidth=1, label=f"target {100 * target:g} %")
        ax.set_xlabel("Hebbian wall time (s)")
        ax.set_ylabel("probe accuracy (%)")
        ax.set_title(f"time to accuracy (probe at f = {data.curve['fraction'].iloc[0]:g}; one line per seed)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    return fig


def method_text(data: AccuracyData) -> str:
    config, env = data.env.get("config", {}), data.env
    d = env.get("data", {})
    return (f"Dataset {code(d.get('dataset'))} ({text(d.get('source'))}): {d.get('train_images')} training and "
            f"{d.get('test_images')} held-out images (stratified split, seed {d.get('split_seed')}), at "
            f"{d.get('image_size')}×{d.get('image_size')}. Network trained: "
            f"{text(env.get('network', {}).get('trained'))} (width ×{config.get('width')} of the full network's "
            f"channels). Hebbian phase: "
            f"{config.get('epochs')} epoch(s) of {config.get('hebbian_images') or 'all'} images in batches of "
            f"{config.get('batch')}, η = {config.get('lr')} (HPCA: over each layer's mean ‖x‖²). Probe: a linear "
            f"classifier, {config.get('probe_steps')} SGD steps; fine-tuning and backprop only: "
            f"{config.get('backprop_steps')} SGD steps of the whole net. "
            f"Seeds {', '.join(map(str, config.get('seeds', [])))}: "
            "each fixes the starting weights (the same for every rule, implementation and baseline), the order of "
            "the Hebbian batches, the labelled subset and the classifier's training.")


def environment_table(env: dict) -> render.Table:
    e = env.get("env", {})
    git = e.get("git") or {}
    commit = git.get("commit")
    commit_text = f"{commit[:12]} ({'dirty' if git.get('dirty') else 'clean'})" if commit else "not a git checkout"
    rows = [["run id", str(env.get("run_id"))],
            ["status", f"{env.get('status')} (started {env.get('started_at')}, finished {env.get('finished_at')}, "
                       f"wall {format_seconds(env['wall_s']) if env.get('wall_s') else '?'})"],
            ["hebbbench", f"{e.get('hebbbench_version', '?')}, commit {commit_text}"],
            ["torch", str(e.get("torch", "?"))], ["Python", str(e.get("python", "?"))],
            ["device", f"{env.get('config', {}).get('device')} ({env.get('device_name')}), {env.get('threads')} "
                       "thread(s)"],
            ["CPU", f"{e.get('cpu_model', '?')}, {e.get('cpu_count', '?')} logical cores"],
            ["host", str(e.get("hostname", "?"))], ["conditions", render.conditions_text(env)]]
    return render.Table(["item", "value"], [[item, text(value)] for item, value in rows])


def write_report(path: str | Path, out: str | Path | None = None) -> AccuracyReport:
    """Write report.md, report.html and the figure of the accuracy set in ``path`` (default ./reports/<run-id>/)."""
    data = read(path)
    target = Path(out) if out is not None else Path("reports") / str(data.env.get("run_id") or Path(path).name)
    target.mkdir(parents=True, exist_ok=True)
    doc = render.Document(f"hebbbench accuracy: {text(data.env.get('run_id'))}")
    doc.add(render.Paragraph(method_text(data)))
    if data.env.get("status") != "complete":
        doc.add(render.Paragraph(f"*Not complete* (status {text(data.env.get('status'))}): only the finished runs "
                                 "are shown."))
    doc.add(render.Heading("Accuracy against label fraction"), render.Paragraph(finding(data)),
            render.Paragraph("Held-out accuracy in %, mean ± standard deviation over seeds:"), accuracy_table(data))
    png = None
    with matplotlib.rc_context(RC):
        fig = draw(data)
        if fig is not None:
            png, svg = target / f"{STEM}.png", target / f"{STEM}.svg"
            fig.savefig(png, dpi=DPI, metadata={"Software": None})
            fig.set_layout_engine("none")
            fig.savefig(svg, metadata={"Date": None})
            doc.add(render.FigureBlock(STEM, "accuracy against label fraction, and against Hebbian time", png, svg))
        else:
            doc.add(render.Paragraph("*Not drawn:* no run finished."))
    table, note = tta_table(data)
    doc.add(render.Heading("Speed: the Hebbian phase, and time to accuracy"), timing_table(data),
            render.Paragraph(note), table)
    doc.add(render.Heading("Parity gate"), render.Paragraph(
        "Every implementation trained through the same Hebbian phase from the first seed's starting weights, "
        "against fh: exact reformulations must end within the weight tolerance and within "
        f"{data.env.get('tolerances', {}).get('exact_pp')} points of fh's probe accuracy at every fraction; "
        f"approximate ones within {data.env.get('tolerances', {}).get('approx_pp')} points, or they are flagged."),
            parity_table(data))
    doc.add(render.Heading("Environment"), environment_table(data.env))
    command = (data.env.get("env") or {}).get("command") or []
    doc.add(render.Paragraph("The command that produced the data:"), render.Code(render._command_text(command)))
    markdown, html = target / "report.md", target / "report.html"
    markdown.write_text(render.to_markdown(doc))
    html.write_text(render.to_html(doc))
    return AccuracyReport(target, markdown, html, png)

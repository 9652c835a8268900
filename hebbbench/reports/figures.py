"""The report's figures, one function each: ``fn(data) -> Made`` or ``raise Omitted(why)``.

Every figure has one column of panels per (device/run, dtype) and is drawn on a
``matplotlib.figure.Figure`` of its own (the Agg canvas; pyplot's global state is never
touched, so notebooks keep their backend). Sizes are fixed per panel (``figure_size``),
so a PNG's pixel size is known from its layout.

- ``speedup``: the headline, speedup of fh over the baseline per layer (95 % interval);
- ``speedup_vs_batch``: the same against batch size, one line per layer;
- ``time_vs_work``: time against work N·M·D with a fitted power law per implementation;
- ``scaling``: time against N, D and M in the sweeps of those names (the scaling preset);
- ``memory``: peak memory against work, out-of-memory cases at their predicted memory;
- ``ceilings``: achieved FLOP/s and bytes/s as fractions of the run's own ceilings;
- ``heatmap``: speedup over layer × batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.colors import TwoSlopeNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from hebbbench.reports.load import Data
from hebbbench.measure.units import format_seconds

DPI = 100
PANEL_W, PANEL_H = 5.6, 3.8  # inches per panel
TITLE_H = 0.5  # inches for the figure's title
WHAT_ORDER = ("update", "step")
RULE_MARKERS = {"swta": "o", "hpca": "s"}
SWEEP_AXES = {"N": ("n", "N, rows per update (batch × output positions)"),
              "D": ("d", "D, inputs per neuron"),
              "M": ("m", "M, neurons")}


class Omitted(Exception):
    """A figure with no data for these result sets; the message says why, as a sentence."""


@dataclass
class Made:
    fig: Figure
    caption: str


def figure_size(rows: int, cols: int, panel_w: float = PANEL_W, panel_h: float = PANEL_H) -> tuple[float, float]:
    """Inches of a figure of rows × cols panels (and its title)."""
    return cols * panel_w, rows * panel_h + TITLE_H


def new_figure(rows: int, cols: int, title: str, panel_w: float = PANEL_W, panel_h: float = PANEL_H,
               **kwargs) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=figure_size(rows, cols, panel_w, panel_h), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    fig.suptitle(title, fontsize=12)
    return fig, axes


# -- shared helpers -----------------------------------------------------------------------
def colors(data: Data) -> dict[str, str]:
    """One colour per implementation label across every figure (fh first)."""
    labels = sorted(dict.fromkeys(data.frame["label"]), key=lambda s: (not s.startswith("fh"), s))
    palette = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"]
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def rule_marker(rule: str) -> str:
    """The marker of a rule, e.g. swta(T=0.1) -> swta's."""
    return RULE_MARKERS.get(rule.split("(")[0], "D")


def ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["status"] == "ok") & frame["median_s"].notna() & (frame["median_s"] > 0)]


def cost_rows(data: Data) -> tuple[pd.DataFrame, str]:
    """The rows of the cost figures: the ``update`` cases (the rule's own cost), else ``step``."""
    whats = set(data.frame["what"])
    what = "update" if "update" in whats else sorted(whats)[0]
    return data.frame[data.frame["what"] == what], what


def speedup_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """fh rows (not the baseline) with a speedup."""
    rows = frame[(frame["impl"] == "fh") & (frame["label"] != frame["baseline"])]
    return rows[rows["speedup"].notna() & (rows["speedup"] > 0)]


def fit_power(x: np.ndarray, y: np.ndarray) -> float | None:
    """k of y ∝ x^k fitted by least squares on log-log axes (None with under 2 distinct x)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def log_ticks(ax, axis: str = "y", decades: float | None = None) -> None:
    """Decade ticks on a log axis; 1-2-5 ticks when it spans under three decades (never a bare axis)."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    if decades is None:
        lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
        decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 10
    target.set_major_locator(LogLocator(base=10, subs=(1.0,) if decades >= 3 else (1.0, 2.0, 5.0)))
    target.set_minor_locator(LogLocator(base=10, subs="auto"))
    target.set_minor_formatter(NullFormatter())


def seconds_axis(ax, axis: str = "y") -> None:
    """A log time axis with ticks in s/ms/µs."""
    log_ticks(ax, axis)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: format_seconds(v) if v > 0 else ""))


def si_axis(ax, unit: str, axis: str = "y", decades: float | None = None) -> None:
    """A log axis labelled with an SI prefix (1 MB, 10 GFLOP/s, ...)."""
    log_ticks(ax, axis, decades)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: si(v, unit)))


def si(value: float, unit: str) -> str:
    if not value or not math.isfinite(value):
        return ""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def percent(fraction: float, _=None) -> str:
    value = 100 * fraction
    return f"{value:,.0f} %" if value >= 1 else f"{value:.2g} %"


def times_label(value: float) -> str:
    return f"{value:.3g}×" if value < 100 else f"{value:.0f}×"


def speedup_axis(ax) -> None:
    """Log speedup axis with ticks like 0.5×, 1×, 2×, 10×, and the 1× reference line."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    series = ((0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000) if hi / lo > 10**3 else
              (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
    ticks = [t for t in series if lo <= t <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: times_label(v)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.axhline(1.0, color="0.35", linestyle="--", linewidth=1, zorder=0)


def ylim_with(ax, values: list[float], must: tuple[float, ...] = (1.0,), pad: float = 1.6,
              top_pad: float | None = None) -> None:
    """Log y limits around ``values`` (and ``must``), with room above for labels when ``top_pad``."""
    values = [v for v in values if v and math.isfinite(v) and v > 0] + list(must)
    ax.set_ylim(min(values) / pad, max(values) * (top_pad or pad))


def legend_outside(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                  frameon=False, borderaxespad=0.0, **kwargs)


def panel_title(ax, data: Data, origin: str, dtype: str, extra: str = "") -> None:
    ax.set_title(data.title(origin, dtype) + (f"\n{extra}" if extra else ""), fontsize=9)


def baseline_text(frame: pd.DataFrame) -> str:
    names = sorted(set(frame["baseline"]) - {""})
    return " / ".join(names) or "the baseline"


def whats(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["what"]))
    return sorted(present, key=lambda w: WHAT_ORDER.index(w) if w in WHAT_ORDER else len(WHAT_ORDER))


def no_speedup_reason(frame: pd.DataFrame) -> str:
    """Why the cases of ``frame`` have no fh speedup, e.g. 'naive(G=8) skipped: predicted ...'."""
    base = frame[frame["label"] == frame["baseline"]]
    fh = frame[frame["impl"] == "fh"]
    for part, name in ((base, "baseline"), (fh, "fh")):
        bad = part[part["status"] != "ok"]
        if len(bad):
            row = bad.iloc[0]
            return f"{row['label']} {row['status']}: {row['reason']}"
    if frame["baseline"].fillna("").eq("").all():
        return "the grid names no baseline"
    return "no timing"


# -- the figures ----------------------------------------------------------------------------
def speedup(data: Data) -> Made:
    """Headline: fh speedup per layer (at the layer's largest batch with one), per rule, device, what."""
    frame = data.frame
    rows = speedup_rows(frame)
    if rows.empty:
        raise Omitted("No fh speedup in these results: " + no_speedup_reason(frame) + ".")
    panels = data.panels(rows)
    what_list = whats(rows)
    layers_all = list(dict.fromkeys(rows["layer_key"]))
    width = max(PANEL_W, 2.2 + 0.3 * len(layers_all) * max(2, rows["rule"].nunique()))
    fig, axes = new_figure(len(what_list), len(panels), f"Speedup of fh over {baseline_text(rows)} per layer",
                           panel_w=width, panel_h=PANEL_H + 0.3)
    rules_all = sorted(set(rows["rule"]))
    spacing = min(0.3, 0.75 / len(rules_all))
    offsets = {r: (i - (len(rules_all) - 1) / 2) * spacing for i, r in enumerate(rules_all)}
    missing = []
    for j, (origin, dtype) in enumerate(panels):
        for i, what in enumerate(what_list):
            ax = axes[i, j]
            part = rows[(rows["origin"] == origin) & (rows["dtype"] == dtype) & (rows["what"] == what)]
            chosen = []
            for layer in layers_all:
                at = part[part["layer_key"] == layer]
                if at.empty:
                    continue
                full = at.groupby("batch")["rule"].nunique()
                batches = full[full == at["rule"].nunique()].index
                batch = max(batches) if len(batches) else at["batch"].max()
                chosen.append((layer, batch, at[at["batch"] == batch]))
            values = []
            for x, (layer, batch, at) in enumerate(chosen):
                for _, r in at.iterrows():
                    s, lo, hi = r["speedup"], r["speedup_lo"], r["speedup_hi"]
                    err = None
                    if pd.notna(lo) and pd.notna(hi):
                        err = [[max(s - lo, 0)], [max(hi - s, 0)]]
                        values += [lo, hi]
                    values.append(s)
                    xi = x + offsets[r["rule"]]
                    ax.errorbar([xi], [s], yerr=err, fmt=rule_marker(r["rule"]), color=f"C{rules_all.index(r['rule'])}",
                                capsize=3, markersize=6)
                    top = hi if pd.notna(hi) else s  # the value above its interval: clear of its neighbours
                    ax.annotate(times_label(s), (xi, top), xytext=(0, 3), textcoords="offset points",
                                fontsize=7, ha="center", va="bottom")
            ax.set_xticks(range(len(chosen)), [f"{layer}\nB={batch}" for layer, batch, _ in chosen], fontsize=8,
                          rotation=30 if len(chosen) > 6 else 0, ha="right" if len(chosen) > 6 else "center")
            ax.set_xlim(-0.6, max(len(chosen) - 0.4, 0.6))
            ylim_with(ax, values, top_pad=2.8)
            speedup_axis(ax)
            ax.set_ylabel(f"speedup (×), {what}")
            ax.grid(axis="y", alpha=0.3)
            panel_title(ax, data, origin, dtype, what)
            ax.legend([Line2D([], [], marker=rule_marker(r), color=f"C{rules_all.index(r)}", linestyle="")
                       for r in rules_all if r in set(part["rule"])],
                      [r for r in rules_all if r in set(part["rule"])], fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0, title="rule",
                      title_fontsize=8)
            everything = frame[(frame["origin"] == origin) & (frame["dtype"] == dtype) & (frame["what"] == what)]
            for layer in dict.fromkeys(everything["layer_key"]):
                if layer not in {c[0] for c in chosen}:
                    where = what if len(panels) == 1 else f"{what}, {origin}"
                    missing.append(f"{layer} ({where}): "
                                   + no_speedup_reason(everything[everything["layer_key"] == layer]))
    caption = ("Speedup = median time of the baseline / median time of fh, measured interleaved round by round "
               "(in each of the run's worker processes, pooled); error bars: 95 % interval of the hierarchical "
               "bootstrap (processes, then rounds). Each layer at its largest batch size B with a speedup for "
               "every rule. Log scale; the dashed line is 1× (no speedup).")
    if missing:
        caption += " No speedup for " + "; ".join(missing) + "."
    return Made(fig, caption)


def speedup_vs_batch(data: Data) -> Made:
    rows = speedup_rows(data.frame)
    if rows.empty:
        raise Omitted("No fh speedup in these results, so no speedup against batch size: "
                      + no_speedup_reason(data.frame) + ".")
    counts = rows.groupby(["origin", "dtype", "rule", "what", "layer_key"])["batch"].nunique()
    if counts.max() < 2:
        raise Omitted("Every layer has a speedup at one batch size only: no speedup-against-batch curve to draw.")
    columns = [(p, rule) for p in data.panels(rows) for rule in sorted(set(rows["rule"]))]
    what_list = whats(rows)
    fig, axes = new_figure(len(what_list), len(columns),
                           f"Speedup of fh over {baseline_text(rows)} against batch size", panel_w=PANEL_W + 1.4)
    layers = list(dict.fromkeys(rows["layer_key"]))
    layer_color = {layer: f"C{i % 10}" for i, layer in enumerate(layers)}
    # layers' points at one batch size are spread a little sideways, so their error bars stay apart
    step = 0.08 / max(1, len(layers) / 4)  # in octaves of batch size
    dodge = {layer: 2 ** (step * (i - (len(layers) - 1) / 2)) for i, layer in enumerate(layers)}
    for j, ((origin, dtype), rule) in enumerate(columns):
        for i, what in enumerate(what_list):
            ax = axes[i, j]
            part = rows[(rows["origin"] == origin) & (rows["dtype"] == dtype) & (rows["rule"] == rule)
                        & (rows["what"] == what)]
            values = []
            for layer in layers:
                line = part[part["layer_key"] == layer].sort_values("batch")
                if line.empty:
                    continue
                s = line["speedup"].to_numpy(float)
                lo = line["speedup_lo"].to_numpy(float)
                hi = line["speedup_hi"].to_numpy(float)
                err = np.vstack([np.where(np.isnan(lo), 0, s - lo), np.where(np.isnan(hi), 0, hi - s)]).clip(0)
                ax.errorbar(line["batch"] * dodge[layer], s, yerr=err, marker="o", markersize=4, capsize=2,
                            color=layer_color[layer], label=layer)
                values += list(s) + list(lo) + list(hi)
            ax.set_xscale("log", base=2)
            batches = sorted(set(rows["batch"]))
            ax.xaxis.set_major_locator(FixedLocator(batches))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlim(batches[0] / 1.5, batches[-1] * 1.5)
            ylim_with(ax, values)
            speedup_axis(ax)
            ax.set_xlabel("batch size B (inputs per mini-batch)")
            ax.set_ylabel("speedup (×)")
            ax.grid(alpha=0.3)
            panel_title(ax, data, origin, dtype, f"{rule}, {what}")
            legend_outside(ax, title="layer", title_fontsize=8)
    caption = ("One line per layer: speedup of fh over the baseline at each batch size (bootstrap 95 % "
               "interval as error bars; the points of different layers at one batch size are spread slightly "
               "sideways); log axes, the dashed line is 1×.")
    return Made(fig, caption)


def _power_lines(ax, part: pd.DataFrame, x_column: str, color_of: dict[str, str], connect: bool = True,
                 split_at: float | None = None) -> None:
    """Per label: the points (IQR bars), joined or with the fitted power law drawn; the exponent in the legend.

    ``split_at``: also fit the points up to and beyond this x separately (HPCA-fh's M = N).
    """
    for label in sorted(dict.fromkeys(part["label"]), key=lambda s: (not s.startswith("fh"), s)):
        pts = part[part["label"] == label].sort_values(x_column)
        x, y = pts[x_column].to_numpy(float), pts["median_s"].to_numpy(float)
        err = np.vstack([(y - pts["q1_s"].to_numpy(float)).clip(0), (pts["q3_s"].to_numpy(float) - y).clip(0)])
        err = np.nan_to_num(err)
        k = fit_power(x, y)
        text = label if k is None else f"{label}: k = {k:.2f}"
        if split_at is not None and k is not None:
            below, above = x <= split_at, x >= split_at
            k_lo = fit_power(x[below], y[below]) if below.sum() >= 2 else None
            k_hi = fit_power(x[above], y[above]) if above.sum() >= 2 else None
            if k_lo is not None and k_hi is not None:
                text += f"\n  ({k_lo:.2f} up to M = N, {k_hi:.2f} beyond)"
        ax.errorbar(x, y, yerr=err, marker="o", markersize=4, linestyle="-" if connect else "",
                    linewidth=1, capsize=2, color=color_of[label], label=text)
        if not connect and k is not None:
            xs = np.geomspace(x.min(), x.max(), 20)
            b = np.polyfit(np.log(x), np.log(y), 1)[1]
            ax.plot(xs, np.exp(b) * xs**k, color=color_of[label], linewidth=1, alpha=0.6)


def time_vs_work(data: Data) -> Made:
    frame, what = cost_rows(data)
    rows = ok(frame)
    if rows.empty:
        raise Omitted("No case was timed (every variant skipped, wrong, out of memory or failed): no cost curve.")
    panels = data.panels(rows)
    rules_all = sorted(set(rows["rule"]))
    color_of = colors(data)
    fig, axes = new_figure(len(rules_all), len(panels), f"Time against work ({what})", panel_w=PANEL_W + 1.6)
    for j, (origin, dtype) in enumerate(panels):
        for i, rule in enumerate(rules_all):
            ax = axes[i, j]
            part = rows[(rows["origin"] == origin) & (rows["dtype"] == dtype) & (rows["rule"] == rule)]
            _power_lines(ax, part, "work", color_of, connect=False)
            ax.set_xscale("log")
            ax.set_yscale("log")
            seconds_axis(ax)
            ax.set_xlabel("work N·M·D (multiply–adds of the per-sample form)")
            ax.set_ylabel("median time per call")
            ax.grid(alpha=0.3, which="major")
            panel_title(ax, data, origin, dtype, f"{rule}, {what}")
            legend_outside(ax, title="time ∝ work$^k$", title_fontsize=8)
    caption = (f"Every timed `{what}` case (status ok): median time per call against its work N·M·D, log-log, "
               "IQR as error bars; k is the least-squares slope over all cases of the panel (k = 1: time grows "
               "like the work). Cases of different shapes with equal work are separate points; see the scaling "
               "figure for clean sweeps of N, D and M.")
    return Made(fig, caption)


def scaling(data: Data) -> Made:
    frame, what = cost_rows(data)
    sweeps = [s for s in SWEEP_AXES if s in set(frame["sweep"])]
    if not sweeps:
        raise Omitted("No scaling sweeps in these results (sweeps named N, D and M, as in "
                      "`hebbbench run --preset scaling`): no cost curves against N, D and M.")
    rows = ok(frame[frame["sweep"].isin(sweeps)])
    if rows.empty:
        raise Omitted("The scaling sweeps have no timed case (every variant skipped, wrong or failed).")
    panels = data.panels(rows)
    rules_all = sorted(set(rows["rule"]))
    color_of = colors(data)
    columns = [(p, s) for p in panels for s in sweeps]
    fig, axes = new_figure(len(rules_all), len(columns), "Cost curves: time against N, D and M (separate sweeps)",
                           panel_w=PANEL_W + 0.6)
    notes = []
    for j, ((origin, dtype), sweep) in enumerate(columns):
        x_column, x_label = SWEEP_AXES[sweep]
        for i, rule in enumerate(rules_all):
            ax = axes[i, j]
            part = rows[(rows["origin"] == origin) & (rows["dtype"] == dtype) & (rows["rule"] == rule)
                        & (rows["sweep"] == sweep)]
            everything = frame[(frame["origin"] == origin) & (frame["dtype"] == dtype) & (frame["rule"] == rule)
                               & (frame["sweep"] == sweep)]
            fixed = {c: sorted(set(everything[c])) for c in ("n", "m", "d") if c != x_column}
            fixed_text = ", ".join(f"{c.upper()} = {v[0]}" for c, v in fixed.items() if len(v) == 1)
            split = None
            if sweep == "M" and len(fixed.get("n", [])) == 1:
                n = fixed["n"][0]
                if rule == "hpca":
                    split = n
                ax.axvline(n, color="0.5", linestyle=":", linewidth=1)
                ax.annotate(f"M = N = {n}", (n, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                            textcoords="offset points", fontsize=7, color="0.3")
            _power_lines(ax, part, x_column, color_of, split_at=split)
            # the cost model of the run (predicted_s: FLOPs and bytes over the run's ceilings), dotted
            for label in dict.fromkeys(part["label"]):
                model = everything[everything["label"] == label].sort_values(x_column)
                ax.plot(model[x_column], model["predicted_s"], linestyle=":", linewidth=1, color=color_of[label])
            ax.plot([], [], linestyle=":", color="0.4", label="cost model (dotted)")
            skipped = everything[everything["status"] == "skipped"]
            if len(skipped):
                notes.append(f"{rule} {sweep} sweep ({origin}): {len(skipped)} variant(s) skipped "
                             f"({skipped.iloc[0]['label']} at {x_column.upper()} = {skipped[x_column].min()}: "
                             f"{skipped.iloc[0]['reason']})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            seconds_axis(ax)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel(x_label)
            ax.set_ylabel("median time per call")
            ax.grid(alpha=0.3)
            panel_title(ax, data, origin, dtype, f"{rule}: sweep {sweep}" + (f" ({fixed_text})" if fixed_text else ""))
            legend_outside(ax, title=f"time ∝ {sweep}$^k$", title_fontsize=8)
    caption = (f"Median time per `{what}` call against the swept size, one sweep per column, the other two sizes "
               "fixed; solid: measured (IQR bars) with the fitted exponent k in the legend, dotted: the run's cost "
               "model (FLOPs and bytes over the measured ceilings). Both forms do O(N·M·D) work, so k ≈ 1 in "
               "each sweep; HPCA-fh adds tril(YᵀY)·W, O(M²·D), which exceeds the N·M·D term beyond M = N "
               "(dotted vertical line): its k rises towards 2 there.")
    if notes:
        caption += " Missing points: " + "; ".join(notes) + "."
    return Made(fig, caption)


def memory(data: Data) -> Made:
    frame, what = cost_rows(data)
    measured = frame[frame["peak_memory_bytes"].notna() & (frame["peak_memory_bytes"] > 0)]
    oom = frame[frame["status"] == "oom"]
    over_budget = frame[(frame["status"] == "skipped") & frame["reason"].str.contains("memory")]
    if measured.empty and oom.empty:
        raise Omitted("No peak memory was measured in these results (no variant ran) and none ran out of memory.")
    panels = data.panels(pd.concat([measured, oom, over_budget]))
    rules_all = sorted(set(pd.concat([measured, oom])["rule"]))
    color_of = colors(data)
    fig, axes = new_figure(len(rules_all), len(panels), f"Peak memory against work ({what})", panel_w=PANEL_W + 1.6)
    methods = set()
    for j, (origin, dtype) in enumerate(panels):
        for i, rule in enumerate(rules_all):
            ax = axes[i, j]
            sel = lambda f: f[(f["origin"] == origin) & (f["dtype"] == dtype) & (f["rule"] == rule)]  # noqa: E731
            part, part_oom, part_budget = sel(measured), sel(oom), sel(over_budget)
            methods |= set(part["memory_method"].dropna())
            labels = sorted(dict.fromkeys(pd.concat([part, part_oom, part_budget])["label"]),
                            key=lambda s: (not s.startswith("fh"), s))
            values = []
            for label in labels:
                pts = part[part["label"] == label].sort_values("work")
                if len(pts):
                    ax.plot(pts["work"], pts["peak_memory_bytes"], marker="o", markersize=4, linestyle="",
                            color=color_of[label], label=label)
                    values += list(pts["peak_memory_bytes"])
                bad = part_oom[part_oom["label"] == label]
                if len(bad):
                    ax.plot(bad["work"], bad["predicted_memory_bytes"], marker="x", markersize=9, linestyle="",
                            markeredgewidth=2, color=color_of[label], label=f"{label}: out of memory (predicted)")
                    values += list(bad["predicted_memory_bytes"])
                skip = part_budget[part_budget["label"] == label]
                if len(skip):
                    ax.plot(skip["work"], skip["predicted_memory_bytes"], marker="o", markersize=7, linestyle="",
                            markerfacecolor="none", color=color_of[label],
                            label=f"{label}: skipped, over budget (predicted)")
                    values += list(skip["predicted_memory_bytes"])
            limit = device_memory(data, origin)
            if limit and values and limit < 50 * max(values):
                ax.axhline(limit, color="0.3", linestyle="--", linewidth=1, label=f"device memory {si(limit, 'B')}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            si_axis(ax, "B")
            ax.set_xlabel("work N·M·D (multiply–adds of the per-sample form)")
            ax.set_ylabel("peak memory of one call (bytes)")
            ax.grid(alpha=0.3)
            panel_title(ax, data, origin, dtype, f"{rule}, {what}")
            legend_outside(ax, title="implementation", title_fontsize=8)
    how = {"tensor-allocations": "on the CPU, the peak of the bytes held by tensors the call allocates "
                                 "(kernels' scratch buffers not seen)",
           "cuda-max-allocated": "on CUDA, torch.cuda.max_memory_allocated during the call minus what was "
                                 "allocated before"}
    caption = ("Peak memory allocated by one call against its work N·M·D (log-log; "
               + "; ".join(how.get(m, m) for m in sorted(methods)) + "). "
               "× marks a variant that ran out of memory, drawn at its predicted peak; an open circle one "
               "skipped because its predicted peak exceeded the memory budget. The per-sample baselines hold "
               "N×G×D tensors per group; fh holds N×M and M×D.")
    return Made(fig, caption)


def device_memory(data: Data, origin: str) -> float | None:
    part = data.frame[data.frame["origin"] == origin].iloc[0]
    device = str(part["device"])
    if not device.startswith("cuda"):
        return None
    index = int(device.split(":")[1]) if ":" in device else 0
    gpus = data.source_of(origin).env.get("env", {}).get("gpus", [])
    return next((g.get("total_memory") for g in gpus if g.get("index") == index), None)


def rows_with_ceilings(data: Data, needs: str) -> tuple[pd.DataFrame, str, list[tuple[str, str]]]:
    """Timed rows with a cost model, and the (origin, dtype) panels whose device ceilings were measured."""
    frame, what = cost_rows(data)
    rows = ok(frame)
    rows = rows[rows["flop_per_s"].notna() & (rows["bytes"] > 0)]
    panels = [p for p in data.panels(rows) if data.ceiling(*p)]
    if rows.empty or not panels:
        raise Omitted("No timed case with a measured ceiling of its device and dtype (env.json `ceilings`) "
                      f"in these results: {needs}.")
    return rows, what, panels


def ceilings(data: Data) -> Made:
    rows, what, panels = rows_with_ceilings(data, "nothing to compare with the hardware's limits")
    color_of = colors(data)
    fig, axes = new_figure(2, len(panels), f"Achieved throughput against the device's measured ceilings ({what})",
                           panel_w=PANEL_W + 1.2)
    legend: dict[str, Line2D] = {}
    for j, (origin, dtype) in enumerate(panels):
        ceiling = data.ceiling(origin, dtype)
        part = rows[(rows["origin"] == origin) & (rows["dtype"] == dtype)]
        metrics = [("flop_per_s", ceiling["matmul_flop_per_s"], "FLOP/s",
                    f"matmul ceiling {si(ceiling['matmul_flop_per_s'], 'FLOP/s')} "
                    f"({ceiling['matmul_size']}² product)", "achieved FLOP/s / matmul ceiling"),
                   ("byte_per_s", ceiling["copy_byte_per_s"], "B/s",
                    f"copy ceiling {si(ceiling['copy_byte_per_s'], 'B/s')} "
                    f"({ceiling['copy_bytes'] / 2**20:.0f} MiB copy)",
                    "achieved bytes/s / copy ceiling")]
        for i, (column, peak, unit, line_label, y_label) in enumerate(metrics):
            ax = axes[i, j]
            values = [1.0]
            for (label, rule), pts in part.groupby(["label", "rule"], sort=True):
                fraction = pts[column] / peak
                (line,) = ax.plot(pts["work"], fraction, marker=rule_marker(rule), linestyle="", markersize=5,
                                  color=color_of[label], alpha=0.85)
                legend.setdefault(f"{label}, {rule}", line)
                values += list(fraction)
            ax.axhline(1.0, color="0.2", linestyle="--", linewidth=1.2)
            ax.annotate(line_label, (0.01, 1.0), xycoords=("axes fraction", "data"), xytext=(0, 3),
                        textcoords="offset points", fontsize=8, va="bottom")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ylim_with(ax, values, pad=3.0)
            log_ticks(ax)
            ax.yaxis.set_major_formatter(FuncFormatter(percent))
            secondary = ax.secondary_yaxis("right", functions=(lambda f, p=peak: f * p, lambda a, p=peak: a / p))
            secondary.set_yscale("log")
            lo, hi = ax.get_ylim()
            si_axis(secondary, unit, decades=math.log10(hi / lo))
            ax.set_xlabel("work N·M·D (multiply–adds of the per-sample form)")
            ax.set_ylabel(y_label)
            secondary.set_ylabel(f"achieved {unit}")
            ax.grid(alpha=0.3)
            panel_title(ax, data, origin, dtype, "compute" if i == 0 else "memory traffic")
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(4, len(legend)),
               fontsize=8, frameon=False, title="implementation, rule", title_fontsize=8)
    caption = ("Achieved FLOP/s (FLOPs of the implementation's cost model / median time) and bytes/s, as a "
               "fraction of the ceilings measured in the same run (one large matrix product, one large copy; "
               "right axis: absolute). fh does its work as matrix products and can approach the matmul "
               "ceiling; the per-sample forms stream N×G×D tensors and are bounded by the copy ceiling. A "
               "fraction above 1 means the case ran faster than the probe (a small case held in cache, or a "
               "probe slowed by a loaded machine).")
    return Made(fig, caption)


def roofline(data: Data) -> Made:
    """Achieved FLOP/s against arithmetic intensity, under the roof min(peak, I × bandwidth)."""
    rows, what, panels = rows_with_ceilings(data, "no roofline to draw")
    color_of = colors(data)
    fig, axes = new_figure(1, len(panels), f"Roofline ({what}): achieved FLOP/s against arithmetic intensity",
                           panel_w=PANEL_W + 1.0)
    legend: dict[str, Line2D] = {}
    for j, (origin, dtype) in enumerate(panels):
        ceiling = data.ceiling(origin, dtype)
        peak, bandwidth = ceiling["matmul_flop_per_s"], ceiling["copy_byte_per_s"]
        part = rows[(rows["origin"] == origin) & (rows["dtype"] == dtype)]
        ax = axes[0, j]
        intensity = part["flops"] / part["bytes"]
        lo = min(float(intensity.min()), peak / bandwidth) / 4
        hi = max(float(intensity.max()), peak / bandwidth) * 4
        grid = np.geomspace(lo, hi, 200)
        ax.plot(grid, np.minimum(peak, grid * bandwidth), color="0.2", linewidth=1.5)
        ax.annotate(f"matmul {si(peak, 'FLOP/s')}", (hi, peak), xytext=(-4, 3), textcoords="offset points",
                    ha="right", fontsize=8)
        ax.annotate(f"copy {si(bandwidth, 'B/s')}", (lo * 2, lo * 2 * bandwidth), xytext=(4, 4),
                    textcoords="offset points", fontsize=8, rotation=0)
        for (label, rule), pts in part.groupby(["label", "rule"], sort=True):
            (line,) = ax.plot(pts["flops"] / pts["bytes"], pts["flop_per_s"], marker=rule_marker(rule),
                              linestyle="", markersize=5, color=color_of[label], alpha=0.85)
            legend.setdefault(f"{label}, {rule}", line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(float(part["flop_per_s"].min()) / 5, peak * 3)
        ax.set_xlim(lo, hi)
        log_ticks(ax)
        si_axis(ax, "FLOP/s")
        ax.set_xlabel("arithmetic intensity (FLOP / byte, cost model)")
        ax.set_ylabel("achieved FLOP/s")
        ax.grid(alpha=0.3)
        panel_title(ax, data, origin, dtype)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(4, len(legend)),
               fontsize=8, frameon=False, title="implementation, rule", title_fontsize=8)
    caption = ("The roofline of each device (Williams, Waterman, Patterson, CACM 2009) from its ceilings measured in "
               "the same run: attainable FLOP/s = min(matmul FLOP/s, intensity × copy bytes/s). Each point is a "
               "timed case at its cost model's intensity (FLOPs / bytes); its height against the roof is the "
               "`pct_of_attainable` column of results.csv. The per-sample forms sit at low intensity under the "
               "bandwidth slope; fh's matrix products reach toward the flat compute roof.")
    return Made(fig, caption)


def heatmap(data: Data) -> Made:
    frame = data.frame
    rows = speedup_rows(frame)
    if rows.empty:
        raise Omitted("No fh speedup in these results, so no heatmap: " + no_speedup_reason(frame) + ".")
    fh = frame[(frame["impl"] == "fh") & (frame["label"] != frame["baseline"])]
    columns = [(p, rule) for p in data.panels(fh) for rule in sorted(set(fh["rule"]))]
    what_list = whats(fh)
    layers = list(dict.fromkeys(fh["layer_key"]))
    batches = sorted(set(fh["batch"]))
    logs = np.log10(rows["speedup"].to_numpy(float))
    bound = max(0.3, float(np.abs(logs).max()))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    panel_h = 1.6 + 0.32 * len(layers)
    panel_w = max(4.6, 1.8 + 0.8 * len(batches))
    fig, axes = new_figure(len(what_list), len(columns),
                           f"Speedup of fh over {baseline_text(rows)}: layer × batch size",
                           panel_w=panel_w, panel_h=panel_h)
    image = None
    for j, ((origin, dtype), rule) in enumerate(columns):
        for i, what in enumerate(what_list):
            ax = axes[i, j]
            part = fh[(fh["origin"] == origin) & (fh["dtype"] == dtype) & (fh["rule"] == rule) & (fh["what"] == what)]
            grid = np.full((len(layers), len(batches)), np.nan)
            texts = {}
            for _, r in part.iterrows():
                y, x = layers.index(r["layer_key"]), batches.index(r["batch"])
                if pd.notna(r["speedup"]) and r["speedup"] > 0:
                    grid[y, x] = math.log10(r["speedup"])
                    texts[(y, x)] = (times_label(r["speedup"]), abs(grid[y, x]) > 0.6 * bound)
                else:
                    texts[(y, x)] = ("n/a", False)
            image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", norm=norm, aspect="auto")
            ax.set_facecolor("0.88")
            for (y, x), (text, dark) in texts.items():
                ax.text(x, y, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
            ax.set_xticks(range(len(batches)), [str(b) for b in batches], fontsize=8)
            ax.set_yticks(range(len(layers)), layers, fontsize=8)
            ax.set_xlabel("batch size B")
            ax.set_ylabel("layer")
            panel_title(ax, data, origin, dtype, f"{rule}, {what}")
    series = ((0.001, 0.01, 0.1, 1, 10, 100, 1000) if bound > 1.5 else
              (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100))
    ticks = [t for t in series if abs(math.log10(t)) <= bound]
    bar = fig.colorbar(image, ax=axes, shrink=0.9, aspect=30, ticks=[math.log10(t) for t in ticks])
    bar.ax.set_yticklabels([times_label(t) for t in ticks])
    bar.set_label("speedup of fh (×, log scale)")
    caption = ("Speedup of fh over the baseline for every layer and batch size (blue: fh faster, red: slower; "
               "white 1×). Grey cells were not run; n/a: run, but without a speedup (the baseline or fh was "
               "skipped, wrong, out of memory or failed; see the tables).")
    return Made(fig, caption)


#: the figures in report order: file stem, heading, function.
FIGURES: list[tuple[str, str, Callable[[Data], Made]]] = [
    ("speedup", "Speedup of fh per layer", speedup),
    ("speedup_vs_batch", "Speedup against batch size", speedup_vs_batch),
    ("time_vs_work", "Time against work", time_vs_work),
    ("scaling", "Cost curves: N, D and M sweeps", scaling),
    ("memory", "Peak memory", memory),
    ("ceilings", "Throughput against the device's ceilings", ceilings),
    ("roofline", "Roofline", roofline),
    ("heatmap", "Speedup over layer × batch size", heatmap),
]

"""The report of a ``hebbbench scale`` result set: ``scale.png``/``scale.svg`` and ``report.md``.

The figure has one row of three panels per device kind: throughput (images/s, with the
ideal w·throughput_1 dotted), scaling efficiency (%) and the share of the step spent
inside all-reduce calls (%), each against the world size. The text states the scaling
mode, tabulates every row of results.csv, and sets each layer's communication per step
against its compute (``hebbbench.suites.scale.communication_table``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from hebbbench import store
from hebbbench.errors import UserError
from hebbbench.reports import render
from hebbbench.reports.markup import code, text
from hebbbench.reports.load import short_device_name
from hebbbench.measure.units import format_bytes, format_seconds

STEM = "scale"
DPI = 100
PANEL_W, PANEL_H = 4.6, 3.6
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8, "svg.hashsalt": "hebbbench",
      "svg.fonttype": "none"}
MARKERS = {"swta": "o", "hpca": "s", "oja": "^", "kwta": "v", "krotov": "D", "hebb": "P"}


@dataclass
class ScaleReport:
    path: Path
    markdown: Path
    png: Path | None
    svg: Path | None


def read(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """env.json and results.csv of a scale set; rows written before the key columns are read into them."""
    from hebbbench.suites.scale import RESULTS, SAMPLES, from_older_rows

    path = Path(path)
    env = store.require(path, "hebbbench report", (store.Kind.SCALE,)).env
    if not (path / RESULTS).is_file():
        raise UserError(f"{path} is incomplete: {RESULTS} is missing")
    frame = pd.read_csv(path / RESULTS, keep_default_na=False, na_values=[""])
    if "median_step_s" in frame.columns:
        lines = (path / SAMPLES).read_text().splitlines() if (path / SAMPLES).is_file() else []
        frame = from_older_rows(env, frame, [json.loads(line) for line in lines if line.strip()])
    return env, frame


def series_label(rule: str, impl: str) -> str:
    return f"{rule}/{impl}"


def draw(frame: pd.DataFrame, env: dict) -> Figure | None:
    """The figure, or None when no case was timed."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return None
    devices = list(dict.fromkeys(ok["device"]))
    fig = Figure(figsize=(3 * PANEL_W, len(devices) * PANEL_H + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(devices), 3, squeeze=False)
    config = env.get("config", {})
    width = "" if config.get("width", 1.0) == 1.0 else f" (width × {config['width']:g})"
    batch = config.get("batch") or env.get("network", {}).get("spec", {}).get("batch_size", "?")
    per = "global batch" if config.get("scaling", "strong") == "strong" else "batch per rank"
    fig.suptitle(f"hebbbench scale: {config.get('network', '?')}{width}, {config.get('scaling', '?')} scaling "
                 f"({per} {batch}), data-parallel Hebbian step", fontsize=12)
    labels = list(dict.fromkeys(series_label(r, i) for r, i in zip(ok["rule"], ok["label"])))
    color = {label: f"C{k % 10}" for k, label in enumerate(labels)}
    sizes = sorted(set(int(w) for w in frame["world_size"]))
    for row, device in enumerate(devices):
        part = ok[ok["device"] == device]
        name = short_device_name(part["device_name"].iloc[0])
        backend = part["backend"].iloc[0]
        ax_tp, ax_eff, ax_comm = axes[row]
        for (rule, impl), s in part.groupby(["rule", "label"], sort=False):
            s = s.sort_values("world_size")
            label = series_label(rule, impl)
            style = dict(color=color[label], marker=MARKERS.get(rule, "o"), label=label)
            ax_tp.plot(s["world_size"], s["throughput_img_s"], **style)
            one = s[s["world_size"] == 1]
            if not one.empty:
                ideal = float(one["throughput_img_s"].iloc[0]) * s["world_size"]
                ax_tp.plot(s["world_size"], ideal, color=color[label], linestyle=":", linewidth=1)
            ax_eff.plot(s["world_size"], 100 * s["efficiency"], **style)
            ax_comm.plot(s["world_size"], 100 * s["comm_share"], **style)
        ax_tp.set_ylabel("throughput (images/s)")
        ax_tp.set_title(f"{name} ({device}, {backend}): throughput; dotted: ideal w × (w = 1)")
        ax_eff.set_ylabel("scaling efficiency (%)")
        ax_eff.axhline(100, color="0.6", linewidth=0.8, linestyle="--")
        ax_eff.set_title("efficiency = throughput_w / (w · throughput_1)")
        ax_comm.set_ylabel("time inside all-reduce (% of step)")
        ax_comm.set_title("communication share of the step time")
        for ax in (ax_tp, ax_eff, ax_comm):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(sizes))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("world size w (processes)")
            ax.grid(True, which="major", alpha=0.3)
            if len(sizes) == 1:
                ax.set_xlim(sizes[0] / 1.5, sizes[0] * 1.5)
        ax_eff.set_ylim(bottom=0)
        ax_comm.set_ylim(bottom=0)
        values = part["throughput_img_s"]
        if values.max() > 20 * values.min():  # fh and naive apart by more than an order of magnitude
            ax_tp.set_yscale("log")
            ax_tp.set_ylabel("throughput (images/s, log scale)")
        else:
            ax_tp.set_ylim(bottom=0)
        ax_tp.legend(loc="best")
    return fig


def _cell(value, fmt) -> str:
    return render.DASH if value is None or (isinstance(value, float) and math.isnan(value)) else fmt(value)


def results_table(frame: pd.DataFrame) -> render.Table:
    rows = []
    for _, r in frame.iterrows():
        if r["status"] == "ok":
            step = f"{format_seconds(r['median_s'])} [{format_seconds(r['q1_s'])}, " \
                   f"{format_seconds(r['q3_s'])}]"
            cells = [step, _speedup_cell(r), f"{r['throughput_img_s']:.1f}",
                     _cell(r["efficiency"], lambda v: f"{100 * v:.0f} %"),
                     f"{100 * r['comm_share']:.1f} %",
                     f"{int(r['comm_calls_per_step'])} calls, {format_bytes(r['comm_bytes_per_step'])}",
                     _cell(r["rel_diff_vs_w1"], lambda v: f"{v:.1e}"), "yes" if r["in_sync"] else "**no**", "ok"]
        else:
            cells = [render.DASH] * 8 + [f"**{text(r['status'])}**: {text(r['reason'])}"]
        rows.append([text(r["device"]), str(r["world_size"]), text(r["rule"]), text(r["label"]), str(r["global_batch"]),
                     str(r["rank_batch"]), str(r["threads_per_rank"]), *cells])
    baselines = sorted({b for b in frame["baseline"] if isinstance(b, str) and b})
    return render.Table(["device", "w", "rule", "impl", "global batch", "per rank", "threads/rank",
                         "step time, median [q1, q3]", f"speedup over {' / '.join(baselines) or 'the baseline'}",
                         "throughput (images/s)", "efficiency", "comm share",
                         "all-reduce per step (per rank)", "change vs w = 1", "ranks identical", "status"],
                        rows, align="lrllrrrrrrrrrrll")


def _speedup_cell(r: pd.Series) -> str:
    """median(baseline)/median(this) at the same device and world size, with its 95 % interval."""
    if not math.isfinite(r["speedup"]):
        return render.DASH
    interval = (f" [{r['speedup_lo']:.3g}, {r['speedup_hi']:.3g}]"
                if math.isfinite(r["speedup_lo"]) and math.isfinite(r["speedup_hi"]) else "")
    return f"{r['speedup']:.3g}×{interval}"


def layers_table(env: dict) -> tuple[render.Table, str]:
    from hebbbench.nn.networks import LayerSpec, NetworkSpec
    from hebbbench.suites.scale import ScaleConfig, communication_table, variant

    spec_dict = dict(env["network"]["spec"])
    spec_dict["layers"] = tuple(LayerSpec(**layer) for layer in spec_dict["layers"])
    spec_dict["datasets"] = tuple(spec_dict["datasets"])
    spec = NetworkSpec(**spec_dict)
    config = env.get("config", {})
    batch = config.get("batch") or spec.batch_size
    variants = ScaleConfig(rules=tuple(config.get("rules", ())), impls=tuple(config.get("impls", ()))).variants()
    sizes = sorted({1, max(config.get("world_sizes") or [1])})
    table = communication_table(spec, batch, variants, tuple(sizes))
    columns = ["layer", "N (rows, whole batch)", "M", "D", "all-reduced: M·D + 1 (float32)",
               "HPCA with YᵀX, YᵀY apart: M·D + M²", "batch norm: 2M + 1 (float64)"]
    labels = [(r, variant(i)[2]) for r, i in variants]
    columns += [f"{text(r)}/{text(label)} GFLOP per rank, w = {' → '.join(map(str, sizes))}" for r, label in labels]
    rows = []
    for _, r in table.iterrows():
        line = [text(r["layer"]), f"{r['n']:,}", f"{r['m']:,}", f"{r['d']:,}",
                f"{r['update_numbers']:,} ({format_bytes(r['update_bytes'])})", f"{r['separate_numbers']:,}",
                format_bytes(r["batchnorm_bytes"])]
        line += [" → ".join(f"{r[f'{rule}/{label} w={w} gflop']:.3g}" for w in sizes) for rule, label in labels]
        rows.append(line)
    total = int(table["update_bytes"].sum())
    summary = (f"Per step every rank all-reduces {format_bytes(total)} of partial sums and "
            f"{format_bytes(int(table['batchnorm_bytes'].sum()))} of batch statistics ({len(table)} small calls); a "
            "ring all-reduce sends and receives about 2(w−1)/w of the buffer per rank, whatever w. Strong scaling "
            "divides a rank's rows by w, not its weights: the FLOPs (registry cost model, global batch "
            f"{batch}) shrink only in the terms proportional to N; a term that does not (HPCA-fh's tril(YᵀY)W, "
            "2M²D) is done in full by every rank and bounds the speedup. Data parallelism stops paying when "
            "the compute saved per rank no longer exceeds the all-reduce time.")
    return render.Table(columns, rows, align="lrrrrrr" + "r" * len(variants)), summary


def environment_table(env: dict) -> render.Table:
    e = env.get("env", {})
    git = e.get("git") or {}
    commit = git.get("commit")
    commit_text = f"{commit[:12]} ({'dirty' if git.get('dirty') else 'clean'})" if commit else "not a git checkout"
    gpus = "; ".join(str(g.get("name")) for g in e.get("gpus") or []) or "none"
    threads = ", ".join(f"{k}: {v}" for k, v in (env.get("threads_per_rank") or {}).items()) or render.DASH
    rows = [["run id", str(env.get("run_id"))],
            ["status", f"{env.get('status')} (started {env.get('started_at')}, finished {env.get('finished_at')})"],
            ["launcher", str(env.get("launcher"))],
            ["hebbbench", f"{e.get('hebbbench_version', '?')}, commit {commit_text}"],
            ["torch", str(e.get("torch", "?"))], ["Python", str(e.get("python", "?"))],
            ["CPU", f"{e.get('cpu_model', '?')}, {e.get('cpu_count', '?')} logical cores "
                    f"({e.get('cpu_affinity', '?')} usable)"],
            ["GPUs", gpus], ["threads per rank", threads], ["host", str(e.get("hostname", "?"))],
            ["conditions", render.conditions_text(env)]]
    if env.get("failures"):
        rows.append(["failures", "; ".join(env["failures"])])
    return render.Table(["item", "value"], [[item, text(value)] for item, value in rows])


def method_text(env: dict, frame: pd.DataFrame) -> str:
    config = env.get("config", {})
    scaling = config.get("scaling", "strong")
    if scaling == "strong":
        mode = ("**Strong scaling**: the global batch is fixed and split over the w ranks — the data-parallel "
                "form of the paper's training (the same update every step as one process with the whole batch; "
                "*change vs w = 1*: ‖Δ_w − Δ_1‖ / ‖Δ_1‖ over all layers, Δ = what the last timed step changed "
                "in the weights, at w ranks and at one).")
    else:
        mode = ("**Weak scaling**: every rank gets the same batch, the global batch grows with w (more images "
                "per step than the paper's training; no weights to compare).")
    return (f"{mode} Each step: every rank trains its copy of {code(config.get('network'))} on its shard, batch "
            f"norm with the whole batch's statistics, one all-reduce of the layers' partial sums "
            f"({code('--reduce ' + str(config.get('reduce')))}). "
            f"Per case: warm-up of at least {text(config.get('warmup_s'))} s, then "
            f"{text(config.get('steps'))} timed steps, each from the starting weights (reset outside the timing); all "
            "ranks start each step together, the "
            "device is synchronised before the clock is read, and a step's time is the slowest rank's. "
            "Throughput = global batch / median step time. Comm share: time inside all-reduce calls (device "
            "synchronised first; waiting for a slower rank counts) over the step time, median over steps. "
            "On a CPU the ranks share the machine's cores (threads per rank = cores / w), so efficiency there "
            "also measures how well the kernels use more threads in one process.")


def write_report(path: str | Path, out: str | Path | None = None) -> ScaleReport:
    """Write report.md and the figure of the scale result set in ``path`` (into ``out``, default ./reports/<run-id>/)."""
    env, frame = read(path)
    target = Path(out) if out is not None else Path("reports") / str(env.get("run_id") or Path(path).name)
    target.mkdir(parents=True, exist_ok=True)
    doc = render.Document(f"hebbbench scale: {env.get('run_id')}")
    doc.add(render.Paragraph(method_text(env, frame)))
    if env.get("status") != "complete":
        doc.add(render.Paragraph(f"*Not complete* (status {text(env.get('status'))}): only the finished cases are "
                                 "shown."))
    for failure in env.get("failures") or []:
        doc.add(render.Paragraph(f"*Failed:* {text(failure)}"))
    doc.add(render.Heading("Results"), results_table(frame))
    png = svg = None
    with matplotlib.rc_context(RC):
        fig = draw(frame, env)
        if fig is not None:
            png, svg = target / f"{STEM}.png", target / f"{STEM}.svg"
            fig.savefig(png, dpi=DPI, metadata={"Software": None})
            fig.set_layout_engine("none")
            fig.savefig(svg, metadata={"Date": None})
            doc.add(render.FigureBlock(STEM, "throughput, efficiency and communication share against world size",
                                       png, svg))
        else:
            doc.add(render.Paragraph("*Not drawn:* no case was timed."))
    table, summary = layers_table(env)
    doc.add(render.Heading("Communication per step against compute, per layer"), render.Paragraph(summary), table)
    doc.add(render.Heading("Environment"), environment_table(env))
    command = (env.get("env") or {}).get("command") or []
    doc.add(render.Paragraph("The command that produced the data:"), render.Code(render._command_text(command)))
    markdown = target / "report.md"
    markdown.write_text(render.to_markdown(doc))
    return ScaleReport(target, markdown, png, svg)

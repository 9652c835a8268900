"""The report's text: one document of blocks (headings, paragraphs, tables, figures, code),
written as ``report.md`` (figures as files beside it) and as a self-contained ``report.html``
(figures embedded as base64 PNG data URIs).

Numbers in the tables are the run's own (results.csv and env.json), formatted once here:
a status other than ``ok`` is shown with its reason, never as a time or a speedup.
"""

from __future__ import annotations

import base64
import html
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hebbbench.reports.load import Data, short_device_name
from hebbbench.reports.markup import code, text
from hebbbench.measure.units import format_seconds
from hebbbench.measure.pooling import NOISY_REL_IQR, UNSTABLE_SPREAD

DASH = "—"


# -- blocks -------------------------------------------------------------------------------
@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str  # inline markdown: `code`, **bold**, *italic*, [text](url)


@dataclass
class Code:
    text: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    align: str = ""  # one of "l"/"r" per column; default: left


@dataclass
class FigureBlock:
    stem: str
    alt: str
    png: Path
    svg: Path | None


@dataclass
class Document:
    title: str
    blocks: list[Any] = field(default_factory=list)

    def add(self, *blocks: Any) -> None:
        self.blocks.extend(blocks)


# -- formatting ---------------------------------------------------------------------------
def fp32_row(env: dict) -> list[str]:
    """The environment table's row on float32 precision: set per implementation by hebbbench, or
    (sets from before) the one process-wide matmul setting recorded, as it was reported then."""
    found = env.get("fp32_precision_found")
    if found is None:
        return ["float32 matmul precision", str(env.get("float32_matmul_precision", "?"))]
    flags = ", ".join(f"{k} {v}" for k, v in found.items()) or "none"
    return ["float32 precision", "set per implementation: IEEE float32 products and convolutions unless its name "
                                 f"says otherwise (column `precision`); found before the run: {flags}"]


def times(value: float) -> str:
    return f"{value:.3g}×" if value < 100 else f"{value:.0f}×"


def speedup_cell(row: pd.Series, baseline_status: str | None = None) -> str:
    """The speedup and its interval; for a timed variant without one, why (e.g. the baseline was skipped)."""
    if row["status"] != "ok":
        return DASH
    if row["label"] == row["baseline"]:
        return "1× (baseline)"
    if pd.isna(row["speedup"]):
        if not row["baseline"]:
            return f"{DASH} (no baseline)"
        return f"{DASH} ({text(row['baseline'])} {text(baseline_status or 'absent')})"
    cell = times(row["speedup"])
    if pd.notna(row["speedup_lo"]) and pd.notna(row["speedup_hi"]):
        cell += f" [{row['speedup_lo']:.3g}, {row['speedup_hi']:.3g}]"
    return cell


def median_cell(row: pd.Series) -> str:
    return format_seconds(row["median_s"]) if row["status"] == "ok" else DASH


def iqr_cell(row: pd.Series) -> str:
    if row["status"] != "ok" or pd.isna(row["iqr_s"]):
        return DASH
    rel = f" ({100 * row['rel_iqr']:.0f} %)" if pd.notna(row["rel_iqr"]) else ""
    return format_seconds(row["iqr_s"]) + rel


def status_cell(row: pd.Series) -> str:
    if row["status"] == "ok":
        return "ok"
    reason = row["reason"] or "no reason recorded"
    return f"**{text(row['status'])}**: {text(reason)}"


def error_cell(row: pd.Series) -> str:
    return f"{row['error']:.1e}" if pd.notna(row.get("error")) else DASH


def md_escape(cell: str) -> str:
    """A table cell's text on one line, its column separators escaped (the cell may hold markup)."""
    return str(cell).replace("|", "\\|").replace("\n", " ")



# -- sections -----------------------------------------------------------------------------
def summary_blocks(data: Data) -> list[Any]:
    frame = data.frame
    counts = frame["status"].value_counts()
    status_text = ", ".join(f"{counts[s]} {s}" for s in ("ok", "wrong", "oom", "skipped", "error") if s in counts)
    runs = ", ".join(f"{code(s.run_id)} (grid {text(s.grid_name)}, {text(s.env.get('status', '?'))})"
                     for s in data.sources)
    devices = ", ".join(dict.fromkeys(f"{text(short_device_name(n))} ({text(d)})" for d, n in zip(frame["device"],
                                                                                                   frame["device_name"])))
    blocks: list[Any] = [Paragraph(f"Result set{'s' if len(data.sources) > 1 else ''}: {runs}. Devices: {devices}. "
                                   f"{frame['case_id'].nunique()} cases, {len(frame)} timed variants: {status_text}.")]
    blocks += [Paragraph(note) for note in data.notes]
    lines = []
    fh = frame[(frame["impl"] == "fh") & (frame["label"] != frame["baseline"])]
    for (origin, dtype, rule, what), part in fh.groupby(["origin", "dtype", "rule", "what"], sort=False):
        with_speedup = part[part["speedup"].notna() & (part["speedup"] > 0)]
        base = ", ".join(map(text, sorted(set(part["baseline"]) - {""}))) or DASH
        origin, dtype, rule, what = map(text, (origin, dtype, rule, what))
        if with_speedup.empty:
            lines.append([origin, dtype, rule, what, base, DASH, DASH, DASH, f"0 of {len(part)}"])
            continue
        lo = with_speedup.loc[with_speedup["speedup"].idxmin()]
        hi = with_speedup.loc[with_speedup["speedup"].idxmax()]
        geo = math.exp(float(pd.Series(with_speedup["speedup"]).map(math.log).mean()))
        lines.append([origin, dtype, rule, what, base, times(geo),
                      f"{times(lo['speedup'])} ({text(lo['layer_key'])}, B={lo['batch']})",
                      f"{times(hi['speedup'])} ({text(hi['layer_key'])}, B={hi['batch']})",
                      f"{len(with_speedup)} of {len(part)}"])
    if lines:
        blocks.append(Paragraph("Speedup of fh over the baseline (ratio of medians), over the cases where both "
                                "were timed:"))
        blocks.append(Table(["run · device", "dtype", "rule", "what", "baseline", "geometric mean", "lowest",
                             "highest", "cases with a speedup"], lines, align="lllllrrrr"))
    return blocks


def layer_table(data: Data) -> Table:
    frame = data.frame
    rows = []
    for key, part in frame.groupby("layer_key", sort=False):
        first = part.iloc[0]
        ns = ", ".join(f"{n:,} (B={b})" for b, n in sorted(set(zip(part["batch"], part["n"]))))
        rows.append([text(key), text(first["layer_spec"]), f"{first['m']:,}", f"{first['d']:,}", ns])
    return Table(["layer", "spec", "M (neurons)", "D (inputs)", "N rows per update (batch)"], rows, align="llrrl")


def results_tables(data: Data) -> list[Any]:
    blocks: list[Any] = []
    frame = data.frame
    for origin, dtype in data.panels():
        part = frame[(frame["origin"] == origin) & (frame["dtype"] == dtype)]
        part = part.sort_values(["rule", "layer_key", "batch", "what"], kind="stable")  # not the order measured
        blocks.append(Heading(text(f"{data.title(origin, dtype).splitlines()[0]} — {origin}"), 3))
        base_status = {r["case_id"]: r["status"] for _, r in part[part["label"] == part["baseline"]].iterrows()}
        rows = [[*map(text, (r["rule"], r["layer_key"], r["batch"], r["what"], r["label"])), median_cell(r), iqr_cell(r),
                 processes_cell(r), speedup_cell(r, base_status.get(r["case_id"])), status_cell(r), flags_cell(r),
                 error_cell(r)]
                for _, r in part.iterrows()]
        blocks.append(Table(["rule", "layer", "B", "what", "implementation", "median", "IQR (of median)",
                             "processes (spread)", "speedup [95 % CI]", "status", "flags", "rel. error vs fh float64"],
                            rows, align="llrllrrrrllr"))
    return blocks


def processes_cell(row: pd.Series) -> str:
    """How many processes measured the row, and max/min of their medians."""
    if row["status"] != "ok" or pd.isna(row.get("processes")):
        return DASH
    spread = row.get("process_spread")
    return f"{int(row['processes'])}" + (f" ({spread:.2f}x)" if pd.notna(spread) and row["processes"] > 1 else "")


def flags_cell(row: pd.Series) -> str:
    return ", ".join(flag for flag in ("noisy", "unstable") if row.get(flag) is True)


def conditions_text(env: dict) -> str:
    """The measuring process's conditions as env.json records them (conditions.py), in one line."""
    conditions = env.get("conditions") or {}
    if not conditions:
        return "not recorded (measured before hebbbench recorded them: allocator as found, subnormals not flushed)"
    info = conditions.get("allocator_info") or {}
    settings = ", ".join(f"{k}={v}" for k, v in (info.get("settings") or {}).items()) or "no MALLOC_* set"
    return (f"allocator {conditions.get('allocator', '?')} ({info.get('library', '?')}; {settings}); "
            f"subnormal floats {conditions.get('subnormals', '?')}")


def fault_seconds(source_env: dict) -> float:
    """The median cost of one page fault measured by a run's worker processes (NaN when not recorded)."""
    costs = [p.get("page_fault_s") for p in (source_env.get("conditions") or {}).get("processes", [])]
    costs = [c for c in costs if isinstance(c, (int, float)) and math.isfinite(c)]
    return float(sorted(costs)[len(costs) // 2]) if costs else math.nan


def faults_blocks(data: Data) -> list[Any]:
    """The rows whose calls took page faults, and the share of their time those faults cost."""
    frame = data.frame
    if "faults_per_call" not in frame:
        return []
    faulting = frame[(frame["status"] == "ok") & (frame["faults_per_call"].fillna(0) > 0)]
    if faulting.empty:
        return []
    cost = {index: fault_seconds(source.env) for index, source in enumerate(data.sources)}
    rows = []
    for _, r in faulting.sort_values("faults_per_call", ascending=False).iterrows():
        seconds = r["faults_per_call"] * cost.get(r["source"], math.nan)
        known = math.isfinite(seconds) and r["median_s"] > 0
        rows.append([*map(text, (r["rule"], r["layer_key"], r["batch"], r["what"], r["label"])),
                     f"{r['faults_per_call']:,.0f}", format_seconds(r["median_s"]),
                     format_seconds(seconds) if known else "", f"{100 * seconds / r['median_s']:.0f} %" if known else ""])
    allocators = sorted({str((s.env.get("conditions") or {}).get("allocator", "not recorded")) for s in data.sources})
    return [Heading("Page faults", 3), Paragraph(
        "Minor page faults per call (median over the samples; counted around each call, outside the clock), "
        "and those faults times the cost of one fault measured by the run's worker processes (touching fresh "
        "pages one thread at a time): an upper bound of the time they took, since a call's threads fault in "
        "parallel (so it can exceed the median). Allocator policy: "
        f"{text(', '.join(allocators))} (README, \"Reproducible numbers\", compares both policies). Faults "
        "mean the time depends on how the allocator serves large temporaries, not only on the arithmetic."),
        Table(["rule", "layer", "B", "what", "implementation", "page faults per call", "median",
               "faults × cost", "of the median"], rows, align="llrllrrrr")]


def environment_blocks(data: Data, argv_for_report: list[str]) -> list[Any]:
    blocks: list[Any] = []
    for source in data.sources:
        env = source.env.get("env", {})
        git = env.get("git") or {}
        commit = git.get("commit")
        commit_text = (f"{commit[:12]} ({'dirty: uncommitted changes' if git.get('dirty') else 'clean'})"
                       if commit else "not a git checkout")
        gpus = env.get("gpus") or []
        gpu_text = "; ".join(
            f"{g.get('name')} (cc {g.get('compute_capability')}, {g.get('total_memory', 0) / 2**30:.0f} GiB"
            + (f", driver {g['smi_driver_version']}" if g.get("smi_driver_version") else "") + ")"
            for g in gpus) or "none"
        cuda = env.get("cuda")
        available = "a device was available" if env.get("cuda_available") else "no CUDA device available"
        cuda_text = f"{cuda} (torch built with it; {available})" if cuda else "none (CPU-only torch)"
        thread_vars = ", ".join(f"{k}={v}" for k, v in (env.get("thread_variables") or {}).items()) or "none set"
        settings = source.env.get("settings", {})
        rows = [
            ["run id", source.run_id],
            ["folder", str(source.path)],
            ["status", f"{source.env.get('status', '?')} (started {source.env.get('started_at')}, "
                       f"finished {source.env.get('finished_at') or DASH})"],
            ["grid", f"{source.grid_name}: {source.env.get('grid', {}).get('description', '')}"],
            ["hebbbench", f"{env.get('hebbbench_version', '?')}, commit {commit_text}"],
            ["Python", str(env.get("python", "?"))],
            ["torch", str(env.get("torch", "?"))],
            ["CUDA", cuda_text],
            ["cuDNN", str(env.get("cudnn") or "none")],
            ["GPUs", gpu_text],
            ["CPU", f"{env.get('cpu_model', '?')}, {env.get('cpu_count', '?')} logical cores "
                    f"({env.get('cpu_affinity', '?')} usable by the process)"],
            ["threads", f"torch {env.get('torch_threads', '?')} intra-op, {env.get('torch_interop_threads', '?')} "
                        f"inter-op (--threads {settings.get('threads') or 'not given'}); variables: {thread_vars}"],
            fp32_row(env),
            ["platform", f"{env.get('platform', '?')} (host {env.get('hostname', '?')})"],
            ["seed", str(env.get("seed", "?"))],
            ["timing policy", ", ".join(f"{k}={v}" for k, v in source.env.get("grid", {}).get("timing", {}).items())
             or "defaults"],
            ["budgets", f"memory {_bytes(settings.get('memory_budget')) or '80 % of the device'}; "
                        f"max {settings.get('max_case_seconds', '?')} s per call (predicted)"],
        ]
        conditions = source.env.get("conditions") or {}
        if conditions:
            workers = conditions.get("processes") or []
            info = (workers[0].get("allocator_info") if workers else None) or {}
            settings_text = ", ".join(f"{k}={v}" for k, v in (info.get("settings") or {}).items()) or "none set"
            processes = source.env.get("grid", {}).get("timing", {}).get("processes", "?")
            rows.append(["worker processes", f"{processes} per case, each measuring every case (pooled)"])
            rows.append(["allocator", f"{conditions.get('allocator', '?')}: {conditions.get('allocator_policy', '')} "
                                      f"({info.get('library', '?')}; {settings_text})"])
            rows.append(["page fault cost", (f"{fault_seconds(source.env) * 1e6:.2f} µs (median of the workers)"
                                             if math.isfinite(fault_seconds(source.env)) else "not measured")])
            rows.append(["subnormal floats", str(conditions.get("subnormals", "?"))])
        else:
            rows.append(["worker processes", "not recorded: measured in one process, allocator as found"])
        if source.env.get("failures"):
            rows.append(["worker failures", "; ".join(map(str, source.env["failures"]))])
        blocks.append(Heading(f"Run {text(source.run_id)}", 3))
        blocks.append(Table(["item", "value"], [[k, text(v)] for k, v in rows]))
        command = env.get("command") or []
        blocks.append(Paragraph("The command that produced the data (env.json `env.command`):"))
        blocks.append(Code(_command_text(command)))
        ceilings = source.env.get("ceilings") or {}
        if ceilings:
            blocks.append(Paragraph("Ceilings measured in this run (the reference of the throughput figure):"))
            blocks.append(Table(
                ["device/dtype", "matrix product", "FLOP/s", "copy", "bytes/s"],
                [[text(key), f"{c['matmul_size']}×{c['matmul_size']} @ {c['matmul_size']}×{c['matmul_size']}",
                  f"{c['matmul_flop_per_s'] / 1e9:.1f} G", _bytes(c["copy_bytes"]),
                  f"{c['copy_byte_per_s'] / 1e9:.2f} G"]
                 for key, c in ceilings.items()], align="llrlr"))
    blocks.append(Heading("Regenerating this report", 3))
    blocks.append(Code(_command_text(argv_for_report)))
    return blocks


def _command_text(argv: list[str] | str) -> str:
    if isinstance(argv, str):
        return argv
    if argv and argv[0].endswith(("/hebbbench", "hebbbench/cli.py", "hebbbench\\cli.py")):
        argv = ["hebbbench", *argv[1:]]
    return shlex.join(str(a) for a in argv) if argv else "(not recorded)"


def _bytes(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def glossary(data: Data) -> Paragraph:
    several = any((s.env.get("conditions") or {}).get("processes") for s in data.sources)
    how = ("Every case was measured in several fresh worker processes (*processes*; the environment below says how "
           "many), implementations interleaved round by round in each (a Williams design)." if several else
           "Every case was measured in one process (the set predates measuring in several worker processes: "
           "its intervals describe the rounds of that process only), implementations interleaved round by round.")
    return Paragraph(
        how + " Times are medians of "
        "all samples of all processes; IQR: interquartile range, in brackets as a fraction of the median; "
        "*spread*: max/min of the per-process medians. Flags: *noisy*, the median within-process IQR above "
        f"{100 * NOISY_REL_IQR:.0f} % of the median; *unstable*, processes that disagree beyond their own noise "
        f"(spread above {UNSTABLE_SPREAD:g}x and the fastest and slowest processes' IQRs disjoint). Speedup = "
        "median(baseline) / median(implementation) with a 95 % hierarchical bootstrap interval (processes, then "
        "rounds within each, paired by round). Every implementation's ΔW was "
        "checked against the FastHebb form in float64 before it was timed (relative Frobenius error); *wrong*, "
        "*oom*, *skipped* and *error* variants were not timed and carry their reason.")


# -- writers ------------------------------------------------------------------------------
def to_markdown(doc: Document, figure_src=None) -> str:
    """The document as Markdown; ``figure_src(block)``, when given, is each figure's image source
    (report.html embeds them), else the PNG beside the file with links to the PNG and SVG."""
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Code):
            fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", b.text)), default=0) + 1)
            out += [fence, b.text, fence, ""]
        elif isinstance(b, Table):
            align = b.align or "l" * len(b.columns)
            out.append("| " + " | ".join(md_escape(c) or " " for c in b.columns) + " |")
            out.append("|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|")
            out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, FigureBlock):
            if figure_src is not None:
                out += [f"![{text(b.alt)}]({figure_src(b)})", ""]
                continue
            links = f"[PNG]({b.png.name})" + (f" · [SVG]({b.svg.name})" if b.svg else "")
            out += [f"![{text(b.alt)}]({b.png.name})", "", links, ""]
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th { background: #f2f2f2; }
td[style*="right"] { white-space: nowrap; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
"""

#: the one kind of data: URL a report holds, its own figures.
_FIGURE_DATA = "data:image/png;base64,"


def safe_link(url: str) -> bool:
    """Links report.html may hold: http, https, relative ones, and its embedded PNG figures."""
    scheme = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme is None:
        return True
    return scheme.group(1).lower() in ("http", "https") or url.startswith(_FIGURE_DATA)


def markdown_renderer():
    """CommonMark with tables, raw HTML off (it shows as text) and links checked by :func:`safe_link`."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.validateLink = safe_link
    return md


def to_html(doc: Document) -> str:
    """report.html: the same Markdown as report.md, figures embedded, rendered by markdown-it-py."""
    def embedded(block: FigureBlock) -> str:
        return _FIGURE_DATA + base64.b64encode(block.png.read_bytes()).decode("ascii")

    body = markdown_renderer().render(to_markdown(doc, figure_src=embedded))
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{html.escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
                      body.rstrip(), "</body>", "</html>"]) + "\n"

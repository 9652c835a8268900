"""End-of-run summary: per rule and layer, the median time of each implementation and its speedup."""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from hebbbench.measure.units import format_bytes, format_seconds  # noqa: F401  (re-exported)


def cell(row: pd.Series) -> str:
    """A variant's time, or its status when it has none."""
    if row["status"] != "ok":
        return row["status"]
    mark = "~" if str(row.get("noisy")).lower() == "true" else ""
    mark += "!" if str(row.get("unstable")).lower() == "true" else ""
    return format_seconds(row["median_s"]) + mark


#: above this many implementations the summary shows the baseline, fh and the fastest other one.
MAX_COLUMNS = 4


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (device, dtype, rule, layer, batch, what): implementation times and speedups.

    With up to MAX_COLUMNS implementations, each has a column of times and one of speedups;
    with more, the baseline's and fh's times, fh's speedup, and the implementation to use
    ("best") with its speedup: the fastest other one if its interquartile range lies wholly
    below fh's (clearly faster, not by noise), else fh (the rest is in results.csv and the report).
    """
    if frame.empty:
        return pd.DataFrame()
    keys = ["device", "dtype", "rule", "layer", "batch", "what"]
    labels = list(dict.fromkeys(frame["label"]))
    lines = []
    for key, group in frame.groupby(keys, sort=False):
        line = dict(zip(keys, key))
        by_label = {r["label"]: r for _, r in group.iterrows()}
        base = next((r["baseline"] for r in by_label.values() if isinstance(r["baseline"], str)), "")
        if len(labels) <= MAX_COLUMNS:
            timed, speedups = labels, labels
        else:
            ok = [r for r in by_label.values() if r["status"] == "ok" and r["label"] not in (base, "fh")]
            best = min(ok, key=lambda r: r["median_s"], default=None)
            fh = by_label.get("fh")
            if fh is not None and fh["status"] == "ok" and (best is None or not best["q3_s"] < fh["q1_s"]):
                best = fh
            timed, speedups = [base, "fh"], ["fh"]
            line["best"] = best["label"] if best is not None else "-"
            if best is not None:
                by_label = {**by_label, "best": best}
                speedups = ["fh", "best"]
        for label in timed:
            line[label] = cell(by_label[label]) if label in by_label else ""
        for label in speedups:
            r = by_label.get(label)
            if r is not None and r["label"] != base and pd.notna(r.get("speedup")):
                line[f"{label} x"] = f"{r['speedup']:.1f}x"
        lines.append(line)
    frame = pd.DataFrame(lines).fillna("").sort_values(keys, kind="stable", ignore_index=True)  # not run order
    if "best" in frame:  # the best implementation's label next to its speedup
        best = frame.pop("best")
        frame.insert(len(frame.columns) - 1, "best", best)
    return frame


def summary_tables(frame: pd.DataFrame, title: str = "hebbbench results") -> list[Table]:
    """One rich table per (device, dtype): median times per implementation and speedups over the baseline."""
    summary = summary_frame(frame)
    tables = []
    if summary.empty:
        return tables
    for (device, dtype), part in summary.groupby(["device", "dtype"], sort=False):
        part = part.drop(columns=["device", "dtype"]).loc[:, lambda f: (f != "").any()]
        table = Table(title=escape(f"{title} — {device}, {dtype}"),
                      caption="x: speedup = median(baseline) / median(impl); ~ noisy (IQR/median > 10 %); "
                              "! unstable (its processes disagree); "
                              "best: fh unless another implementation's IQR lies wholly below fh's; "
                              "every implementation's numbers are in results.csv",
                      box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
        for column in part.columns:
            # cells keep their whole width (a narrow terminal wraps the headers, never a number)
            table.add_column(escape(str(column)), justify="left" if column in ("rule", "layer", "what", "best")
                             else "right", min_width=max(len(str(v)) for v in [column, *part[column]]))
        for _, line in part.iterrows():
            table.add_row(*(escape(str(v)) for v in line))  # names from data are text, not rich markup
        tables.append(table)
    return tables

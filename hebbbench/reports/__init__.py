"""Reports: figures and tables that explain a run's numbers (``hebbbench report``).

    import hebbbench.reports
    report = hebbbench.reports.build(["results/quick-cpu-20250101-120000"])
    report.path        # reports/quick-cpu-20250101-120000/ (report.md, report.html, figures)

One or several result sets (e.g. a CPU run and a GPU run) are merged by concatenating
their rows (load.py); every figure (figures.py) has a panel per device/run and dtype; the
text (render.py) carries the environment, the command and the run's numbers. A figure
without data for these sets is left out, with a sentence saying why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from hebbbench.errors import UserError
from hebbbench.reports import figures as figures_mod
from hebbbench.reports import render
from hebbbench.reports import load as sets

__all__ = ["Report", "Written", "build", "default_name", "write"]

REPORTS = Path("reports")
MARKDOWN, HTML = "report.md", "report.html"
#: style of every figure (drawn with a private rc context: a notebook's settings are kept).
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8, "svg.hashsalt": "hebbbench",
      "svg.fonttype": "none"}


@dataclass
class FigureFile:
    stem: str
    heading: str
    png: Path
    svg: Path
    width_px: int
    height_px: int


@dataclass
class Report:
    """What ``build`` wrote: the folder, its figures and the figures left out (stem -> why)."""

    path: Path
    markdown: Path
    html: Path
    figures: list[FigureFile] = field(default_factory=list)
    omitted: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. shards missing from a merged grid


def default_name(data: sets.Data) -> str:
    """The run id for one set; the run ids joined by '+' for several (shortened when long)."""
    ids = list(dict.fromkeys(data.run_ids))
    name = "+".join(ids)
    if len(name) > 120:
        name = f"{ids[0]}+{len(ids) - 1}-more"
    return re.sub(r"[^\w.+-]", "_", name)


def build(run_dirs: list[str | Path] | str | Path, out: str | Path | None = None,
          argv: list[str] | None = None) -> Report:
    """Write the report of one or several result sets to ``out`` (default ``reports/<name>/``)."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    data = sets.load(list(run_dirs))
    path = Path(out) if out is not None else REPORTS / default_name(data)
    _check_target(path)
    path.mkdir(parents=True, exist_ok=True)
    report = Report(path, path / MARKDOWN, path / HTML, warnings=list(data.warnings))
    stems = {stem for stem, _, _ in figures_mod.FIGURES}
    for old in path.iterdir():  # a figure left out this time must not survive from an earlier report
        if old.suffix in (".png", ".svg") and old.stem in stems:
            old.unlink()

    doc = render.Document(f"hebbbench report: {default_name(data)}")
    doc.add(render.Heading("Summary"), *render.summary_blocks(data))
    doc.add(render.Heading("Figures"))
    with matplotlib.rc_context(RC):
        for stem, heading, draw in figures_mod.FIGURES:
            doc.add(render.Heading(heading, 3))
            try:
                made = draw(data)
            except figures_mod.Omitted as why:
                report.omitted[stem] = str(why)
                doc.add(render.Paragraph(f"*Not drawn:* {why}"))
                continue
            png, svg = path / f"{stem}.png", path / f"{stem}.svg"
            made.fig.savefig(png, dpi=figures_mod.DPI, metadata={"Software": None})
            made.fig.set_layout_engine("none")  # keep the layout just computed: the SVG is the same figure
            made.fig.savefig(svg, metadata={"Date": None})
            width, height = (round(v * figures_mod.DPI) for v in made.fig.get_size_inches())
            report.figures.append(FigureFile(stem, heading, png, svg, width, height))
            doc.add(render.Paragraph(made.caption), render.FigureBlock(stem, heading, png, svg))
    doc.add(render.Heading("Layers"), render.layer_table(data))
    doc.add(render.Heading("Results"), render.glossary(data), *render.results_tables(data), *render.faults_blocks(data))
    command = argv if argv is not None else ["hebbbench", "report", *map(str, run_dirs)] + (
        ["--out", str(out)] if out is not None else [])
    doc.add(render.Heading("Environment"), *render.environment_blocks(data, command))
    report.markdown.write_text(render.to_markdown(doc))
    report.html.write_text(render.to_html(doc))
    return report


@dataclass
class Written:
    """What :func:`write` wrote, for any kind of set: the folder, its files, what to tell the user."""

    path: Path
    files: list[str]
    warnings: list[str] = field(default_factory=list)
    omitted: dict[str, str] = field(default_factory=dict)  # figure stem -> why it was not drawn


def write(run_dirs: list[str | Path] | str | Path, out: str | Path | None = None) -> Written:
    """The report of result sets, whatever their kind (read once from each env.json): grid sets
    (``hebbbench run``) merged into one; a network, scale or accuracy set alone."""
    from hebbbench import store

    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    kinds = {d: store.open_set(d).kind for d in run_dirs}
    alone = [d for d, kind in kinds.items() if kind != store.Kind.GRID]
    if alone and len(run_dirs) > 1:
        raise UserError(f"{alone[0]} is a {kinds[alone[0]]} result set: its report is built from it alone "
                        "(only grid sets of hebbbench run merge); give it on its own")
    if alone and kinds[alone[0]] == store.Kind.ACCURACY:
        from hebbbench.reports.accuracy import write_report as write_accuracy

        made = write_accuracy(alone[0], out=out)
        return Written(made.path, [p.name for p in (made.markdown, made.html, made.png) if p])
    if alone and kinds[alone[0]] == store.Kind.SCALE:
        from hebbbench.reports.scale import write_report

        written = write_report(alone[0], out=out)
        return Written(written.path, [p.name for p in (written.markdown, written.png, written.svg) if p])
    if alone:
        from hebbbench.reports import reproduction

        target = reproduction.build(alone[0], out=out)
        return Written(target, ["report.md", "report.html"])
    report = build(run_dirs, out=out)
    return Written(report.path, [MARKDOWN, HTML, f"{len(report.figures)} figures"], report.warnings, report.omitted)


def _check_target(path: Path) -> None:
    """Refuse a folder that holds other things than an earlier report (never clobber them)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"report folder {path} is a file")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKDOWN).exists():
        raise UserError(f"{path} is not empty and holds no earlier report; choose another --out")

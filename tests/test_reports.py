"""Reports end to end: a tiny grid run for real, its report, a merge of two devices, profile, CLI errors."""

from __future__ import annotations

import base64
import html.parser as html_parser
import json
import re
import shlex
import shutil
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import torch

from conftest import run_cli
import hebbbench
from hebbbench import rules
from hebbbench.errors import UserError
from hebbbench.reports import build, figures, load
from hebbbench.measure.units import format_seconds

TINY = Path(__file__).parent / "data" / "tiny.toml"


class WrongHPCA(rules.HPCA):
    """Leaves out the tril(YᵀY)W term: a fast, wrong implementation."""

    def delta(self, x, y, w):
        return y.T @ x / x.shape[0]


class OutOfMemoryHPCA(rules.HPCA):
    def delta(self, x, y, w):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 PiB (injected)")


class GpuOnlyHPCA(rules.HPCA):
    device_types = ("cuda",)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real run of the tiny grid with a wrong, an out-of-memory and a skipped variant, and its report."""
    root = tmp_path_factory.mktemp("reports")
    run_dir = root / "results" / "tiny"
    with rules.scoped():  # the three doubles exist for this run only
        rules.register("hpca", "report-wrong")(WrongHPCA)
        rules.register("hpca", "report-oom")(OutOfMemoryHPCA)
        rules.register("hpca", "report-gpu-only")(GpuOnlyHPCA)
        frame = hebbbench.run(config=TINY, out=run_dir,
                              impls=["fh", "naive", "loop", "report-wrong", "report-oom", "report-gpu-only"])
    report = hebbbench.reports.build([run_dir], out=root / "reports" / "tiny")
    return run_dir, frame, report


def test_report_writes_every_file_and_decodable_figures(tiny):
    _, _, report = tiny
    assert report.markdown.is_file() and report.html.is_file()
    stems = [f.stem for f in report.figures]
    assert stems == ["speedup", "speedup_vs_batch", "time_vs_work", "memory", "ceilings", "roofline", "heatmap"]
    for f in report.figures:
        assert f.svg.is_file() and f.svg.read_text().lstrip().startswith("<?xml")
        image = matplotlib.image.imread(f.png)
        assert image.shape[:2] == (f.height_px, f.width_px), f.stem
        assert image.shape[1] >= 400 and image.shape[0] >= 300
    # the headline: one column (one device, one dtype), one row per what (update, step)
    headline = matplotlib.image.imread(report.path / "speedup.png")
    w, h = figures.figure_size(2, 1, panel_h=figures.PANEL_H + 0.3)
    assert headline.shape[:2] == (round(h * figures.DPI), round(w * figures.DPI))


def test_figures_without_data_are_left_out_with_a_sentence(tiny):
    _, _, report = tiny
    assert set(report.omitted) == {"scaling"}
    assert not (report.path / "scaling.png").exists()
    text = report.markdown.read_text()
    assert "*Not drawn:* No scaling sweeps in these results" in text


def table_row(text: str, *cells: str) -> str:
    """The markdown table line that starts with these cells."""
    start = "| " + " | ".join(cells) + " |"
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0]


def test_markdown_tables_carry_the_runs_numbers(tiny):
    run_dir, _, report = tiny
    text = report.markdown.read_text()
    frame = pd.read_csv(run_dir / "results.csv")
    for _, r in frame[frame["label"].isin(["fh", "naive(G=3)"])].iterrows():
        line = table_row(text, r["rule"], r["layer"], str(r["batch"]), r["what"], r["label"])
        assert f"| {format_seconds(r['median_s'])} |" in line
        if r["label"] == "fh":
            assert f"| {r['speedup']:.3g}× [{r['speedup_lo']:.3g}, {r['speedup_hi']:.3g}] |" in line
        else:
            assert "| 1× (baseline) |" in line
        assert f"| {r['error']:.1e} |" in line
    env = json.loads((run_dir / "env.json").read_text())
    assert env["env"]["torch"] in text and env["env"]["git"]["commit"][:12] in text
    command = env["env"]["command"]  # the command that produced the data (here: this pytest process)
    assert "```\n" + shlex.join(command[:1]) in text and shlex.join(command[1:]) in text
    assert f"{env['ceilings']['cpu/float32']['matmul_flop_per_s'] / 1e9:.1f} G" in text


def test_failed_statuses_are_shown_with_reasons_never_as_numbers(tiny):
    _, frame, report = tiny
    text = report.markdown.read_text()
    for label, status, reason in (("report-wrong", "wrong", "relative error"), ("report-oom", "oom", "injected"),
                                  ("report-gpu-only", "skipped", "runs on cuda only")):
        assert set(frame.loc[frame["label"] == label, "status"]) == {status}
        line = table_row(text, "hpca", "fc", "2", "update", label)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[5:9] == ["—", "—", "—", "—"], line  # median, IQR, processes, speedup
        assert cells[9].startswith(f"**{status}**: ") and reason in cells[9], line


def test_html_is_self_contained(tiny):
    _, _, report = tiny
    html = report.html.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"]*"', html)
    assert len(images) == len(report.figures)
    assert base64.b64decode(images[0]) == report.figures[0].png.read_bytes()
    assert not re.search(r'src="(?!data:)', html)
    assert "<table>" in html and "(cpu)" in html


def simulated_gpu_copy(run_dir: Path, target: Path) -> Path:
    """A copy of a CPU result set posing as a second device: the device columns rewritten.

    No GPU is needed: only the device, its name and the ceilings' key change; the numbers
    stay the CPU's. It stands for "the same grid run on another machine".
    """
    shutil.copytree(run_dir, target)
    frame = pd.read_csv(target / "results.csv", keep_default_na=False, na_values=[""])
    frame["device"] = "cuda:0"
    frame["device_name"] = "Simulated GPU"
    frame["case_id"] = frame["case_id"].str.replace("/cpu/", "/cuda:0/")
    frame.to_csv(target / "results.csv", index=False)
    env = json.loads((target / "env.json").read_text())
    env["ceilings"] = {k.replace("cpu/", "cuda:0/"): {**v, "device": "cuda:0"} for k, v in env["ceilings"].items()}
    (target / "env.json").write_text(json.dumps(env))
    return target


def test_two_devices_merge_into_one_report_side_by_side(tiny, tmp_path):
    run_dir, _, single = tiny
    gpu = simulated_gpu_copy(run_dir, tmp_path / "gpu")
    merged = hebbbench.reports.build([run_dir, gpu], out=tmp_path / "merged")
    text = merged.markdown.read_text()
    assert "Simulated GPU (cuda:0)" in text and "(cpu)" in text
    assert "different grids" not in text
    single_png = matplotlib.image.imread(single.path / "speedup.png")
    merged_png = matplotlib.image.imread(merged.path / "speedup.png")
    assert merged_png.shape[0] == single_png.shape[0] and merged_png.shape[1] == 2 * single_png.shape[1]
    assert [f.stem for f in merged.figures] == [f.stem for f in single.figures]


def test_sets_from_different_grids_are_merged_and_said_so(tiny, tmp_path):
    run_dir, _, _ = tiny
    other = simulated_gpu_copy(run_dir, tmp_path / "other")
    env = json.loads((other / "env.json").read_text())
    env["grid"]["timing"]["case_seconds"] = 9.0
    env["grid"]["name"] = "other"
    (other / "env.json").write_text(json.dumps(env))
    data = load.load([run_dir, other])
    assert any("different grids (other, tiny)" in note for note in data.notes)
    assert len(data.frame) == 2 * len(pd.read_csv(run_dir / "results.csv"))
    with pytest.raises(UserError, match="give each run once"):
        load.load([run_dir, shutil.copytree(run_dir, tmp_path / "again")])


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "nowhere is not a result set: no such folder"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "empty is not a result set: expected env.json"),
])
def test_report_of_a_folder_that_is_not_a_result_set_is_one_line_exit_2(tmp_path, monkeypatch, capsys, make, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "report", str(make(tmp_path)))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "reports").exists()


def test_report_refuses_to_write_into_a_folder_of_other_files(tiny, tmp_path, monkeypatch, capsys):
    run_dir, _, _ = tiny
    (tmp_path / "precious.txt").write_text("keep")
    code, _, err = run_cli(monkeypatch, capsys, "report", str(run_dir), "--out", str(tmp_path))
    assert code == 2 and "holds no earlier report" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_cli_run_writes_its_report_under_reports_run_id(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = ["--config", str(TINY), "--rules", "swta", "--impls", "fh,naive", "--what", "update",
             "--batch-sizes", "2", "--no-progress"]
    code, out, err = run_cli(monkeypatch, capsys, "run", *small, "--out", "a", "--no-report")
    assert code == 0, err
    assert not (tmp_path / "reports").exists()
    code, out, err = run_cli(monkeypatch, capsys, "run", *small, "--out", "b")
    assert code == 0, err
    run_id = json.loads((tmp_path / "b" / "env.json").read_text())["run_id"]
    assert (tmp_path / "reports" / run_id / "report.md").is_file()
    assert f"report in reports/{run_id}" in " ".join(out.split())


def test_layer_keys_prefix_every_layer_once_a_name_is_ambiguous():
    frame = pd.DataFrame({"sweep": ["6layer", "6layer", "10layer", "10layer"], "layer": ["conv1", "fc5", "conv1", "fc9"],
                          "layer_spec": ["a", "b", "c", "d"]})
    assert list(load.layer_keys(frame)) == ["6layer/conv1", "6layer/fc5", "10layer/conv1", "10layer/fc9"]
    frame = frame[frame["sweep"] == "6layer"]
    assert list(load.layer_keys(frame)) == ["conv1", "fc5"]  # unambiguous: the names alone


def test_a_committed_report_rebuilds_from_its_committed_set(tmp_path, monkeypatch):
    """results/ and reports/ agree: the quick set's report, rebuilt by today's code from the set as
    committed (migrated to the store's kinds), says the same, the regenerating command aside."""
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)  # the report names the set's folder as given, relative to the repository
    name = "quick-cpu-20261203-063337"
    rebuilt = build([Path("results") / name], out=tmp_path / name)

    def text(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if "hebbbench report" not in line]

    assert text(rebuilt.markdown) == text(root / "reports" / name / "report.md")


HOSTILE = {
    "label": '<script>alert("label")</script>',
    "reason": "[click me](javascript:alert('reason')) <img src=x onerror=alert(1)>",
    "layer": "x\" onmouseover=\"alert(1) [/bold] *not emphasis* `tick",
}


class _Parsed(html_parser.HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_a_report_of_hostile_names_holds_no_executable_markup(tiny, tmp_path):
    """Labels, reasons and layer names from a shared results.csv are text in report.html: no script,
    no event attribute, no link but http(s), relative ones and the embedded figures."""
    run_dir, _, _ = tiny
    hostile = Path(shutil.copytree(run_dir, tmp_path / "hostile"))
    frame = pd.read_csv(hostile / "results.csv", keep_default_na=False, na_values=[""])
    frame.loc[frame["impl"] == "report-wrong", "label"] = HOSTILE["label"]
    frame.loc[frame["status"] != "ok", "reason"] = HOSTILE["reason"]
    frame["layer"] = frame["layer"] + HOSTILE["layer"]
    frame.to_csv(hostile / "results.csv", index=False)
    report = build([hostile], out=tmp_path / "report")
    page = _Parsed()
    page.feed(report.html.read_text())
    assert "script" not in page.tags and "iframe" not in page.tags
    assert not [a for a in page.attrs if a[1].startswith("on")]
    links = [value for tag, name, value in page.attrs if name in ("href", "src")]
    assert links and all(not v.lower().startswith(("javascript:", "vbscript:", "data:text")) for v in links)
    assert all(v.startswith("data:image/png;base64,") for tag, name, v in page.attrs if (tag, name) == ("img", "src"))
    shown = "".join(page.text)
    assert HOSTILE["label"] in shown and "[click me](javascript:alert('reason'))" in shown
    assert "*not emphasis*" in shown and "x\" onmouseover=\"alert(1) [/bold]" in shown


def test_the_terminal_summary_shows_names_as_text_not_rich_markup(tiny):
    """A layer named "[/bold]" ended the run in a MarkupError after all was measured; now it is printed."""
    import io

    from rich.console import Console

    from hebbbench.reports.summary import summary_tables

    _, frame, _ = tiny
    hostile = frame.assign(layer=frame["layer"] + "[/bold][red]x")
    out = io.StringIO()
    console = Console(file=out, width=200)
    for table in summary_tables(hostile, title="[/bold] run"):
        console.print(table)
    assert "[/bold][red]x" in out.getvalue() and "[/bold] run" in out.getvalue()

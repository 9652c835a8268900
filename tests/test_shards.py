"""A grid split across machines: real ``run --shard 1/2`` and ``2/2``, merged by ``hebbbench report``.

Refusals (shards of another grid, one shard twice) are one line and exit 2; a missing
shard is a warning in the report and on stderr.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from hebbbench import cli
from hebbbench.measure.devices import resolve_devices
from hebbbench.suites.grid import load_grid
from hebbbench.reports import load

TINY = Path(__file__).parent / "data" / "tiny.toml"
QUIET = ["--no-report", "--no-progress"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The tiny grid run for real as two shards, and a shard of another grid (swta only)."""
    root = tmp_path_factory.mktemp("shards")
    mp = pytest.MonkeyPatch()
    try:
        for name, extra in (("one", ["--shard", "1/2"]), ("two", ["--shard", "2/2"]),
                            ("other", ["--shard", "1/2", "--rules", "swta", "--what", "update"])):
            mp.setattr(sys, "argv", ["hebbbench", "run", "--config", str(TINY), *extra, "--out", str(root / name),
                                     *QUIET])
            try:
                cli.main()
            except SystemExit as exc:
                assert not exc.code, f"run {name} exited with {exc.code}"
    finally:
        mp.undo()
    return root


def test_merged_shards_cover_every_case_of_the_grid_once(shards, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "report", str(shards / "one"), str(shards / "two"),
                             "--out", str(shards / "merged"))
    assert code == 0, err
    assert "warning" not in err
    grid_cases = {c.case_id for c in load_grid(config=TINY).expand(resolve=resolve_devices)}
    data = load.load([shards / "one", shards / "two"])
    assert set(data.frame["case_id"]) == grid_cases
    assert not data.frame.duplicated(["case_id", "label"]).any()
    assert data.frame["origin"].nunique() == 1  # one run, one device: one panel per figure
    text = (shards / "merged" / "report.md").read_text()
    assert "# hebbbench report: tiny-shards-1+2of2" in text
    assert f"merged as `tiny-shards-1+2of2`: {len(grid_cases)} of {len(grid_cases)} cases" in text
    # the results section has one table line per case and variant
    results = text.split("\n## Results\n")[1].split("\n## Environment\n")[0]
    rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("| rule |")]
    assert len(rows) == len(data.frame) == len(set(rows))


def test_a_missing_shard_is_a_warning_in_the_report_and_on_stderr(shards, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "report", str(shards / "two"), "--out", str(shards / "half"))
    assert code == 0, err
    half = len(load.load([shards / "two"]).frame["case_id"].unique())
    total = len(load_grid(config=TINY).expand(resolve=resolve_devices))
    warning = f"Incomplete grid tiny: shard 1/2 missing; {total - half} of its {total} cases are absent"
    assert f"warning: {warning}" in " ".join(err.split())
    assert warning in (shards / "half" / "report.md").read_text()


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


def test_a_shard_of_another_grid_is_refused(shards, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "report", str(shards / "one"), str(shards / "other"),
                           "--out", str(shards / "refused"))
    one_line_error(code, err, "other is shard 1/2 of another grid than", "merge only shards of one grid")
    assert not (shards / "refused").exists()


def test_two_copies_of_one_shard_are_refused(shards, tmp_path, monkeypatch, capsys):
    copy = shutil.copytree(shards / "one", tmp_path / "copy")
    code, _, err = run_cli(monkeypatch, capsys, "report", str(shards / "one"), str(copy), str(shards / "two"),
                           "--out", str(tmp_path / "refused"))
    one_line_error(code, err, "shard 1/2 of grid 'tiny' given twice", "give each shard once")

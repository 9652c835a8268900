"""hebbbench baseline update: the folder is replaced only by a run that succeeded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hebbbench import cli
from hebbbench.api import RunConfig
from hebbbench.gate.baseline import update
from hebbbench.errors import UserError
from hebbbench.store import ResultSet

TINY = Path(__file__).parent / "data" / "tiny.toml"
GRID = dict(config=TINY, rules=["hpca"], impls=["fh", "test-flaky"], what=["update"], batch_sizes=[2])


def test_update_replaces_the_baseline_only_after_a_successful_run(tmp_path, flaky):
    out = tmp_path / "baselines" / "tiny"
    frame = update(RunConfig(**GRID), out)
    assert set(frame["status"]) == {"ok"} and ResultSet.open(out).env()["status"] == "complete"
    first = (out / "results.csv").read_bytes()
    flaky.failing = True
    try:
        with pytest.raises(UserError, match=r"baseline .*tiny left as it was: 2 case\(s\) did not run ok"):
            update(RunConfig(**GRID), out)
    finally:
        flaky.failing = False
    assert (out / "results.csv").read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # nothing left behind
    update(RunConfig(**GRID), out)
    assert (out / "results.csv").read_bytes() != first  # new timings
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]


def test_update_refuses_a_folder_that_is_not_a_result_set(tmp_path, flaky):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="refusing to replace .* it is not a result set"):
        update(RunConfig(**GRID), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_bad_preset_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["hebbbench", "baseline", "update", "--preset", "nope",
                                      "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_cli_records_a_grid_file_as_the_baseline(tmp_path, monkeypatch, capsys):
    out = tmp_path / "baselines" / "tiny"
    monkeypatch.setattr(sys, "argv", ["hebbbench", "baseline", "update", "--config", str(TINY),
                                      "--out", str(out), "--no-progress"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    env = ResultSet.open(out).env()
    assert env["status"] == "complete" and env["grid"]["name"] == "tiny"
    assert f"baseline {out} replaced" in " ".join(capsys.readouterr().out.split())


def test_update_refuses_a_set_of_another_grid_or_kind_unless_forced(tmp_path):
    """`baseline update --out <some run>` turned a 48-row run into a 4-row one: now it says what is there."""
    import shutil

    results = Path(__file__).resolve().parent.parent / "results"
    for source, what in ((results / "quick-cpu-20261203-063337", "a grid set of grid 'quick'"),
                         (results / "reproduce-6layer-cpu-20261130-043036", "a network set")):
        target = Path(shutil.copytree(source, tmp_path / source.name))
        before = sorted(p.name for p in target.iterdir())
        with pytest.raises(UserError, match=f"refusing to replace {target}: it holds {what}, not a gate set of "
                                            "grid 'tiny'; give --force"):
            update(RunConfig(**GRID), target)
        assert sorted(p.name for p in target.iterdir()) == before


def test_an_update_killed_earlier_leaves_no_staging_folder_after_the_next(tmp_path, flaky):
    out = tmp_path / "gate"
    stale = tmp_path / ".gate.new-999999999"  # a pid that runs no process
    stale.mkdir()
    (stale / "results.csv").write_text("half a run")
    update(RunConfig(**GRID), out)
    assert not stale.exists() and (out / "results.csv").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["gate"]

"""The reproduction as a result set and a report: files, verdict, the run's numbers, the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from hebbbench import cli, store
from hebbbench.reports import reproduction
from hebbbench.suites.reproduce import reproduce
from test_reproduce import CEILINGS, QUICK, SMALL


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    result = reproduce(networks=[SMALL], rules=["hpca"], impls=[("naive", {"group_size": 8}), ("fh", {})],
                       policy=QUICK, ceilings=CEILINGS, batches=1, max_naive_seconds=60.0)
    path = reproduction.save(result, tmp_path_factory.mktemp("r") / "rep", 0, ["hebbbench", "reproduce"],
                             "start", "end")
    return path, result


def test_saved_set_round_trips(saved):
    path, result = saved
    assert store.open_set(path).kind == store.Kind.NETWORK
    env, frames = reproduction.load(path)
    assert env["kind"] == "network" and env["env"]["command"] == ["hebbbench", "reproduce"]
    assert len(frames["steps"]) == len(result.steps) and list(frames["claims"]["speedup"]) == [70.0, 50.0, 20.0]


def test_report_carries_verdict_numbers_and_figures(saved, tmp_path):
    path, result = saved
    target = reproduction.build(path, out=tmp_path / "report")
    text = (target / "report.md").read_text()
    head = reproduction.headline_rows(pd.read_csv(path / "steps.csv"))
    assert len(head) == 1
    speedup = head["speedup"].iloc[0]
    assert f"**{speedup:.3g}×**" in text and reproduction.verdict(speedup).split()[0] in text
    assert "up to 70x faster Hebbian training" in text
    for stem in ("speedup", "layers"):
        assert (target / f"{stem}.png").stat().st_size > 0 and (target / f"{stem}.svg").exists()
    assert "data:image/png;base64," in (target / "report.html").read_text()


@pytest.mark.parametrize("best, word", [(80.0, "exceeded"), (70.0, "reproduced"), (16.0, "missed"),
                                        (float("nan"), "not measured")])
def test_verdict(best, word):
    assert reproduction.verdict(best).startswith(word)


def test_report_command_dispatches_to_the_reproduction_report(saved, tmp_path, monkeypatch, capsys):
    path, _ = saved
    monkeypatch.setattr(sys, "argv", ["hebbbench", "report", str(path), "--out", str(tmp_path / "via-cli")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    assert (tmp_path / "via-cli" / "report.md").exists()


def test_unknown_network_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["hebbbench", "reproduce", "--networks", "resnet", "--devices", "cpu"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "resnet" in err[0]


def test_impls_on_the_command_line_are_variants_with_their_options(monkeypatch, capsys):
    """reproduce --impls in the one option syntax: parsed into (impl, options) pairs before anything runs."""
    import hebbbench.suites.reproduce as reproduce_module
    from hebbbench.errors import UserError

    seen = []

    def stop(**kwargs):
        seen.append(kwargs["impls"])
        raise UserError("stopped before running")

    monkeypatch.setattr(reproduce_module, "reproduce", stop)
    monkeypatch.setattr(sys, "argv", ["hebbbench", "reproduce", "--devices", "cpu", "--no-report",
                                      "--impls", "naive:group_size=8,naive:group_size=128,fh"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2 and "stopped before running" in capsys.readouterr().err
    assert seen == [[("naive", {"group_size": 8}), ("naive", {"group_size": 128}), ("fh", {})]]


@pytest.mark.parametrize("impls, message", [
    ("naive:group_size=x,fh", "--impls: naive:group_size=x: group_size must be an integer, got 'x'"),
    ("naive:nosuch=1", "--impls: naive:nosuch=1: unknown option 'nosuch' for naive; allowed: group_size"),
    ("fh:group_size=8", "--impls: fh:group_size=8: unknown option 'group_size' for fh; allowed: none"),
])
def test_bad_impl_options_are_one_line_exit_2(monkeypatch, capsys, impls, message):
    monkeypatch.setattr(sys, "argv", ["hebbbench", "reproduce", "--devices", "cpu", "--impls", impls])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err


def test_per_layer_table_shows_the_time_the_run_used_for_an_estimated_layer(saved, tmp_path):
    """An over-budget layer's time is its one cold run (median_s), not the uncalibrated prediction."""
    import shutil

    path, _ = saved
    copy = shutil.copytree(path, tmp_path / "copy")
    layers = pd.read_csv(copy / "layers.csv")
    row = layers.index[layers["label"] == "naive(G=8)"][0]
    layers.loc[row, ["status", "median_s", "predicted_s"]] = ["over_budget", 4.0, 1.0]
    layers.to_csv(copy / "layers.csv", index=False)
    text = (reproduction.build(copy, out=tmp_path / "report") / "report.md").read_text()
    line = next(ln for ln in text.splitlines() if "| over_budget |" in ln)
    assert "| 4 s (one cold run) |" in line and "1 s" not in line


def test_a_set_with_the_older_columns_reads_as_its_migrated_copy_and_reports_the_same(tmp_path):
    """tests/data/network-set-v1 is the committed reproduction as it was written before the key columns
    (variant, options, note, fh_speedup on the naive rows); results/ holds it migrated. Both load to
    the same frames, and their reports differ only in the command that regenerates them."""
    older = Path(__file__).parent / "data" / "network-set-v1"
    migrated = Path(__file__).parents[1] / "results" / "reproduce-6layer-cpu-20261130-043036"
    assert "fh_speedup" in pd.read_csv(older / "steps.csv").columns
    _, old_frames = reproduction.load(older)
    _, new_frames = reproduction.load(migrated)
    for name in ("steps", "layers", "samples"):
        pd.testing.assert_frame_equal(old_frames[name], new_frames[name], check_dtype=False)
    steps = new_frames["steps"].query("rule == 'swta'").set_index("label")
    assert steps.loc["fh", "speedup"] == pytest.approx(28.46504669625851)  # the naive row's fh_speedup, moved
    assert steps.loc["naive(G=8)", "speedup"] == 1.0
    texts = []
    for source, out in ((older, tmp_path / "a"), (migrated, tmp_path / "b")):
        report = reproduction.build(source, out=out)
        texts.append([ln for ln in (report / "report.md").read_text().splitlines() if "hebbbench report" not in ln])
        assert (report / "speedup.svg").read_bytes() == ((tmp_path / "a") / "speedup.svg").read_bytes()
    assert texts[0] == texts[1]


def test_older_budget_statuses_read_as_skipped(tmp_path):
    import shutil

    copy = Path(shutil.copytree(Path(__file__).parent / "data" / "network-set-v1", tmp_path / "older"))
    layers = pd.read_csv(copy / "layers.csv")
    layers.loc[0, "status"], layers.loc[2, "status"] = "skipped_time", "skipped_memory"
    layers.to_csv(copy / "layers.csv", index=False)
    _, frames = reproduction.load(copy)
    assert list(frames["layers"]["status"][:3]) == ["skipped", "ok", "skipped"]


def small_reproduce(monkeypatch, stop_after: int | None):
    """hebbbench reproduce's measurement on the small network, interrupted after ``stop_after`` cases."""
    import hebbbench.suites.reproduce as reproduce_module

    real, finished = reproduce_module.reproduce, []

    def small(**kwargs):
        sink = kwargs.pop("sink")

        def counting(frames):
            sink(frames)
            finished.append(frames)
            if stop_after is not None and len(finished) == stop_after:
                raise KeyboardInterrupt

        kwargs.update(networks=[SMALL], policy=QUICK, ceilings=CEILINGS, max_naive_seconds=60.0)
        return real(**kwargs, sink=counting)

    monkeypatch.setattr(reproduce_module, "reproduce", small)
    return finished


def cli_exit(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["hebbbench", "reproduce", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def test_each_case_is_saved_as_it_finishes_and_resume_finishes_the_set_without_doubling(tmp_path, monkeypatch,
                                                                                        capsys):
    folder = tmp_path / "set"
    small_reproduce(monkeypatch, stop_after=1)
    code, err = cli_exit(monkeypatch, capsys, "--rules", "swta,hpca", "--impls", "naive:group_size=8,fh",
                         "--devices", "cpu", "--batches", "1", "--out", str(folder), "--no-report")
    assert code == 130 and "--resume" in err
    assert store.read_env(folder)["status"] == "interrupted"
    first = pd.read_csv(folder / "steps.csv")
    assert list(first["rule"]) == ["swta", "swta"]  # the finished case, on disk before the interrupt
    # a second run into the same folder is refused before measuring anything
    code, err = cli_exit(monkeypatch, capsys, "--devices", "cpu", "--out", str(folder), "--no-report")
    assert code == 2 and "already holds a result set" in err and "--resume" in err
    # resume takes the set's own settings and refuses others
    code, err = cli_exit(monkeypatch, capsys, "--resume", str(folder), "--batches", "3")
    assert code == 2 and "give no other run option with it" in err
    finished = small_reproduce(monkeypatch, stop_after=None)
    code, err = cli_exit(monkeypatch, capsys, "--resume", str(folder), "--no-report")
    assert code == 0, err
    assert len(finished) == 1 and set(finished[0]["steps"]["rule"]) == {"hpca"}  # only the missing case ran
    env, frames = reproduction.load(folder)
    assert env["status"] == "complete" and env["meta"]["rules"] == ["swta", "hpca"]
    steps, layers = frames["steps"], frames["layers"]
    assert sorted(zip(steps["rule"], steps["label"])) == [("hpca", "fh"), ("hpca", "naive(G=8)"),
                                                         ("swta", "fh"), ("swta", "naive(G=8)")]
    assert not layers.duplicated(["case_id", "label"]).any() and len(layers) == 2 * 2 * len(SMALL.layers)
    pd.testing.assert_frame_equal(steps[steps["rule"] == "swta"].reset_index(drop=True),
                                  first.assign(reason=first["reason"].astype(object).fillna("").astype(str),
                                               baseline=first["baseline"].astype(str)), check_dtype=False)
    assert set(frames["samples"]["case_id"].str.split("/").str[1]) == {"swta", "hpca"}


def test_a_refused_reproduce_leaves_no_set_behind(tmp_path, monkeypatch, capsys):
    code, err = cli_exit(monkeypatch, capsys, "--networks", "resnet", "--devices", "cpu", "--out",
                         str(tmp_path / "set"))
    assert code == 2 and "resnet" in err and not (tmp_path / "set").exists()

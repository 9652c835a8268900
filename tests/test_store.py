"""One result store: every set names its kind in env.json, and each command that reads sets
takes the kinds it can use and refuses the others in one line (exit 2), by one rule.

| kind    | written by  | compare     | report            | run --resume | reproduce --resume |
|---------|-------------|-------------|-------------------|--------------|--------------------|
| grid    | run         | compared    | report of the set | resumed      | refused            |
| network | reproduce   | refused     | report of the set | refused      | resumed (1)        |
| scale   | scale       | refused     | report of the set | refused      | refused            |

(1) tests/test_reproduce_report.py interrupts a real run and resumes it; here, the repair of a set
killed mid-case, and the refusal of a set written before network sets recorded their parameters.

The sets are the committed ones that real runs wrote (copied, so nothing here changes them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from hebbbench import store
from hebbbench.errors import UserError

RESULTS = Path(__file__).resolve().parent.parent / "results"
COMMITTED = {"grid": RESULTS / "baselines" / "ci-cpu", "network": RESULTS / "reproduce-6layer-cpu-20261130-043036",
             "scale": RESULTS / "scale-6layer-cpu-20261130-040833"}
WRITER = {"grid": "hebbbench run", "network": "hebbbench reproduce", "scale": "hebbbench scale"}


@pytest.fixture
def copied(tmp_path):
    def copy(kind: str) -> Path:
        return Path(shutil.copytree(COMMITTED[kind], tmp_path / "sets" / COMMITTED[kind].name))
    return copy


def one_line(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("kind", list(COMMITTED))
def test_every_committed_set_names_its_kind_and_schema(kind):
    info = store.open_set(COMMITTED[kind])
    assert info.kind == kind and info.env["kind"] == kind and info.env["schema_version"] == store.SCHEMA_VERSION


def test_sets_written_before_the_kind_was_recorded_read_as_grid_and_network(tmp_path, copied):
    grid, network = copied("grid"), copied("network")
    for folder, old_kind in ((grid, None), (network, "reproduce")):
        env = json.loads((folder / "env.json").read_text())
        env.pop("kind") if old_kind is None else env.update(kind=old_kind)
        (folder / "env.json").write_text(json.dumps(env))
    assert store.open_set(grid).kind == store.Kind.GRID
    assert store.open_set(network).kind == store.Kind.NETWORK


@pytest.mark.parametrize("env, needle", [
    ({"kind": "nosuch", "schema_version": 1}, "unknown result set kind 'nosuch'"),
    ({"kind": "grid", "schema_version": 7}, "schema version 7 is not 1"),
    ([1, 2], "env.json: not a JSON object"),
])
def test_an_unknown_kind_schema_or_shape_is_refused_in_one_line(tmp_path, monkeypatch, capsys, env, needle):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "env.json").write_text(json.dumps(env))
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        store.open_set(tmp_path / "set")
    monkeypatch.chdir(tmp_path)
    for args in (["report", "set"], ["compare", "set", "set"], ["run", "--resume", "set"]):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        one_line(code, err, needle)


def test_write_env_is_atomic_and_leaves_no_temporary_file(tmp_path):
    store.write_env(tmp_path, {"kind": "grid", "schema_version": 1, "run_id": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["env.json"]
    assert store.read_env(tmp_path)["run_id"] == "x"


# -- compare: grid sets only -----------------------------------------------------------------
def test_compare_takes_two_grid_sets(copied, monkeypatch, capsys):
    base = copied("grid")
    new = Path(shutil.copytree(base, base.parent / "new"))
    code, out, err = run_cli(monkeypatch, capsys, "compare", str(base), str(new))
    assert code == 0, err
    assert "same" in out


@pytest.mark.parametrize("kind", ["network", "scale"])
def test_compare_refuses_a_network_or_scale_set_in_one_line(copied, monkeypatch, capsys, kind):
    grid, other = copied("grid"), copied(kind)
    for args in ((grid, other), (other, grid)):
        code, _, err = run_cli(monkeypatch, capsys, "compare", *map(str, args))
        one_line(code, err, f"is a {kind} result set ({WRITER[kind]}); hebbbench compare takes grid sets")


# -- report: every kind, each alone; grid sets merge -----------------------------------------
@pytest.mark.parametrize("kind, files", [
    ("grid", {"report.md", "report.html", "roofline.png"}),
    ("network", {"report.md", "report.html", "speedup.png"}),
    ("scale", {"report.md", "scale.png", "scale.svg"}),
])
def test_report_builds_each_kind(copied, tmp_path, monkeypatch, capsys, kind, files):
    folder = copied(kind)
    code, out, err = run_cli(monkeypatch, capsys, "report", str(folder), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert files <= {p.name for p in (tmp_path / "r").iterdir()}
    assert f"report in {tmp_path / 'r'}" in out


@pytest.mark.parametrize("kind", ["network", "scale"])
def test_report_refuses_a_network_or_scale_set_among_others(copied, tmp_path, monkeypatch, capsys, kind):
    grid, other = copied("grid"), copied(kind)
    code, _, err = run_cli(monkeypatch, capsys, "report", str(grid), str(other), "--out", str(tmp_path / "r"))
    one_line(code, err, f"is a {kind} result set: its report is built from it alone")
    assert not (tmp_path / "r").exists()


# -- run --resume: grid sets only --------------------------------------------------------------
@pytest.mark.parametrize("source", [COMMITTED["grid"], RESULTS / "scaling-cpu-20261130-034527"],
                         ids=["no-options", "options-tables"])
def test_resume_of_a_finished_grid_set_runs_nothing_and_keeps_its_rows(tmp_path, monkeypatch, capsys, source):
    """Sets recorded before the settings were one object (RunConfig), one with its options as [options]
    tables (tests/test_run.py resumes a set with today's settings)."""
    folder = Path(shutil.copytree(source, tmp_path / source.name))
    before = (folder / "results.csv").read_text()
    code, out, err = run_cli(monkeypatch, capsys, "run", "--resume", str(folder), "--no-report", "--no-progress")
    assert code == 0, err
    assert (folder / "results.csv").read_text() == before
    assert len(pd.read_csv(folder / "results.csv")) == before.count("\n") - 1
    assert store.read_env(folder)["status"] == "complete"


@pytest.mark.parametrize("kind", ["network", "scale"])
def test_resume_refuses_a_network_or_scale_set_in_one_line(copied, monkeypatch, capsys, kind):
    folder = copied(kind)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, _, err = run_cli(monkeypatch, capsys, "run", "--resume", str(folder))
    one_line(code, err, f"is a {kind} result set ({WRITER[kind]}); hebbbench run --resume takes grid sets")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("kind", ["grid", "scale"])
def test_reproduce_resume_refuses_a_grid_or_scale_set_in_one_line(copied, monkeypatch, capsys, kind):
    folder = copied(kind)
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    code, _, err = run_cli(monkeypatch, capsys, "reproduce", "--resume", str(folder))
    one_line(code, err, f"is a {kind} result set ({WRITER[kind]}); hebbbench reproduce --resume takes network sets")
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before


# -- grid sets recorded before options were items still resume as they were run ----------------
@pytest.mark.parametrize("folder", sorted(p.parent for p in RESULTS.glob("**/env.json")
                                          if json.loads(p.read_text()).get("kind") == "grid"),
                         ids=lambda p: p.name)
def test_a_recorded_grid_expands_to_exactly_the_rows_of_its_set(folder):
    """env.json's grid (with the older ``options`` tables turned into impl:key=value items) gives the
    cases and variants the set holds, so --resume finds every case done and runs none twice."""
    from hebbbench.suites.grid import Grid, without_options_tables

    env = json.loads((folder / "env.json").read_text())
    recorded = without_options_tables({k: v for k, v in env["grid"].items() if k != "name"})
    frame = pd.read_csv(folder / "results.csv")
    ran_on = sorted(set(frame["device"]))  # what "auto" resolved to on the machine that ran it
    cases = Grid.from_dict(recorded, env["grid"]["name"], str(folder)).expand(resolve=lambda _: ran_on)
    expected = {(c.case_id, v.label) for c in cases for v in c.variants}
    assert set(zip(frame["case_id"], frame["label"])) == expected


# -- network sets: appended per (network, rule) case, resumable --------------------------------
def test_a_network_set_killed_between_a_cases_files_keeps_only_finished_cases(tmp_path):
    """A kill after a case's samples and layer rows but before its step rows: opening the set to
    resume drops that case's rows and samples (it runs again), and a line cut short."""
    from hebbbench.reports import reproduction

    _, frames = reproduction.load(COMMITTED["network"])
    columns = {name: list(frames[name].columns) for name in ("samples", "layers", "steps")}
    ns = store.NetworkSet.create(tmp_path / "set", columns, frames["claims"], {"started_at": "t", "params": {}})
    case = {name: frames[name][frames[name][key].astype(str).str.contains(pattern)] for name, key, pattern in
            (("samples", "case_id", "/swta/"), ("layers", "rule", "swta"), ("steps", "rule", "swta"))}
    other = {name: frames[name][frames[name][key].astype(str).str.contains(pattern)] for name, key, pattern in
             (("samples", "case_id", "/hpca/"), ("layers", "rule", "hpca"), ("steps", "rule", "hpca"))}
    ns.append(case)
    ns.append({**other, "steps": other["steps"].iloc[:0]})  # killed before hpca's step rows
    with open(ns.path / "steps.csv", "a") as f:
        f.write("1,cut-short")  # and a line cut short
    ns.close()  # the writer is gone (killed): its lock with it
    assert store.read_env(ns.path)["status"] == "running"
    opened, env = store.NetworkSet.open(ns.path, "hebbbench reproduce --resume")
    assert opened.done() == {("6layer", "swta")} and env["params"] == {}
    kept = opened.frames()
    assert len(kept["layers"]) == len(case["layers"]) and set(kept["layers"]["rule"]) == {"swta"}
    assert len(kept["samples"]) == len(case["samples"]) and len(kept["steps"]) == 2
    assert (kept["steps"]["run_id"] == "set").all()


def test_a_network_set_without_its_parameters_cannot_be_resumed(copied):
    with pytest.raises(UserError, match="written before network sets recorded their parameters"):
        store.NetworkSet.open(copied("network"), "hebbbench reproduce --resume")


# -- one writer per set -------------------------------------------------------------------------
HOLD = """
import sys, time
from hebbbench import store
lock = store.WriterLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("command", [["run", "--resume"], ["reproduce", "--resume"]])
def test_a_second_writer_is_refused_naming_the_first_and_changes_nothing(tmp_path, monkeypatch, capsys, command):
    import subprocess
    import sys

    kind = "grid" if command[0] == "run" else "network"
    folder = Path(shutil.copytree(COMMITTED[kind], tmp_path / "set"))
    if kind == "network":  # a network set that can be resumed: its parameters recorded
        env = store.read_env(folder)
        store.write_env(folder, {**env, "status": "interrupted", "params": {"device": "cpu"}})
    def files():
        return sorted((p.name, p.read_bytes()) for p in folder.iterdir() if p.name != store.LOCK)

    before = files()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli(monkeypatch, capsys, *command, str(folder), "--no-report")
        one_line(code, err, f"{folder} is being written by another hebbbench (pid {holder.pid})")
    finally:
        holder.kill()
        holder.wait()
    assert files() == before


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    base = tmp_path / "results" / "quick-cpu-20261202-120000"
    assert [store.fresh_folder(base).name for _ in range(3)] == [base.name, f"{base.name}-2", f"{base.name}-3"]


def test_resume_imports_the_modules_a_set_names_only_when_the_user_names_them_again(tmp_path, monkeypatch, capsys):
    """env.json is data a colleague may have written: its --import list is code that runs only on request."""
    folder = Path(shutil.copytree(COMMITTED["grid"], tmp_path / "set"))
    env = store.read_env(folder)
    marker = tmp_path / "imported"
    (tmp_path / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    store.write_env(folder, {**env, "settings": {**env["settings"], "imports": ["planted_module"]}})
    code, _, err = run_cli(monkeypatch, capsys, "run", "--resume", str(folder), "--no-report", "--no-progress")
    one_line(code, err, "was run with --import planted_module; resuming it imports that code, so give the same "
                        "--import options again (got none)")
    assert not marker.exists()
    code, _, err = run_cli(monkeypatch, capsys, "run", "--resume", str(folder), "--import", "planted_module",
                           "--no-report", "--no-progress")
    assert code == 0 and marker.exists(), err


# -- readers that notice doubled or missing rows --------------------------------------------
def test_doubled_rows_are_refused_and_missing_rows_said(copied, tmp_path, monkeypatch, capsys):
    """Two writers' rows (what a second resume used to leave) are refused by report and compare; rows cut
    from a set marked complete are a warning in report (the rest is usable) and an error in compare."""
    folder = copied("grid")
    lines = (folder / "results.csv").read_text().splitlines(keepends=True)
    doubled = Path(shutil.copytree(folder, tmp_path / "doubled"))
    (doubled / "results.csv").write_text("".join(lines + lines[1:3]))
    for args in (["report", str(doubled), "--out", str(tmp_path / "r1")], ["compare", str(folder), str(doubled)]):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        one_line(code, err, "holds 2 duplicated row(s)", "two writers appended to it")
    cut = Path(shutil.copytree(folder, tmp_path / "cut"))
    (cut / "results.csv").write_text("".join(lines[:3]))  # the header and the first two cases
    code, out, err = run_cli(monkeypatch, capsys, "report", str(cut), "--out", str(tmp_path / "r2"))
    assert code == 0 and "is marked complete with 8 cases but results.csv holds 2: rows are missing" in err
    assert "rows are missing" in (tmp_path / "r2" / "report.md").read_text()
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(folder), str(cut))
    one_line(code, err, "new run: ", "is marked complete with 8 cases but results.csv holds 2")


def test_a_run_killed_before_its_first_row_is_resumed_not_stuck(tmp_path, monkeypatch, capsys):
    """env.json alone (killed before results.csv was written): a fresh run into it is refused with the
    way out, and --resume runs every case."""
    import hebbbench

    grid = dict(config=Path(__file__).parent / "data" / "tiny.toml", rules=["hpca"], impls=["fh"],
                what=["update"], batch_sizes=[2])
    full = hebbbench.run(out=tmp_path / "full", **grid)
    started = Path(shutil.copytree(tmp_path / "full", tmp_path / "started"))
    (started / "results.csv").unlink()
    (started / "samples.jsonl").unlink()
    store.write_env(started, {**store.read_env(started), "status": "running", "finished_at": None})
    code, _, err = run_cli(monkeypatch, capsys, "run", "--config", grid["config"], "--out", started, "--no-report",
                           "--no-progress")
    one_line(code, err, f"{started} already holds a result set; use --resume {started}")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--resume", started, "--no-report", "--no-progress")
    assert code == 0, err
    resumed = pd.read_csv(started / "results.csv")
    assert sorted(resumed["case_id"]) == sorted(full["case_id"]) and store.read_env(started)["status"] == "complete"


@pytest.mark.parametrize("command", [["run", "--config", "tests/data/tiny.toml", "--no-progress"],
                                     ["reproduce", "--devices", "cpu"], ["scale", "--world-sizes", "1"]])
def test_an_out_that_is_a_file_is_refused_and_left_alone(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, *command, "--out", str(target), "--no-report")
    one_line(code, err, f"{target} is a file; choose another --out")
    assert target.read_text() == "mine"


def test_two_resumes_of_one_set_at_once_one_refused_nothing_doubled(tmp_path):
    """Two real `run --resume` of one interrupted set started together: one finishes it, the other is
    refused in one line (exit 2), and every case × variant is in results.csv once."""
    import subprocess
    import sys

    import hebbbench

    out = tmp_path / "set"
    hebbbench.run(config=Path(__file__).parent / "data" / "tiny.toml", out=out, rules=["hpca"], impls=["fh"],
                  what=["update"])
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-2]))  # two cases to do again
    store.write_env(out, {**store.read_env(out), "status": "interrupted"})
    command = [sys.executable, "-m", "hebbbench.cli", "run", "--resume", str(out), "--no-progress", "--no-report"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is being written by another hebbbench" in refused and len(refused.strip().splitlines()) == 1
    frame = store.ResultSet(out).frame()
    assert len(frame) == len(lines) - 1 and not frame.duplicated(["case_id", "label"]).any()
    assert store.read_env(out)["status"] == "complete"

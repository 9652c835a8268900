"""The hardening probes: inputs a user (or an adversary) can give the CLI — bad files, bad options,
hostile names — each answered by one line and exit status 2 (or, where the data are usable, a
warning and exit 0), never a traceback, and never changing the sets it reads.

Each probe: a name, how to set it up (files under a temporary folder, from one small real run), the
command, the exit status and a piece of the message expected. A random-corruption test then
damages the files of a set at random places and checks that report, compare and resume still
answer with an exit status and no traceback.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import hebbbench
from conftest import run_cli

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.toml"
ROOT = Path(__file__).resolve().parent.parent
SCALE_SET = ROOT / "results" / "scale-6layer-cpu-20261130-040833"
NETWORK_SET = ROOT / "results" / "reproduce-6layer-cpu-20261130-043036"


@pytest.fixture(scope="module")
def grid_set(tmp_path_factory) -> Path:
    """One small complete grid set, copied by each probe that damages it."""
    out = tmp_path_factory.mktemp("probe") / "grid"
    hebbbench.run(config=TINY, out=out, rules=["hpca"], impls=["fh", "naive:group_size=3"], what=["update"],
                  batch_sizes=[2])
    return out


def copy(source: Path, tmp: Path, name: str = "set") -> Path:
    target = tmp / name
    shutil.copytree(source, target)
    return target


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def edit(name: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / name
        path.write_text(change(path.read_text()))
    return apply


def lines(name: str, keep: slice) -> Callable[[Path], None]:
    return edit(name, lambda text: "".join(text.splitlines(keepends=True)[keep]))


def mark_running(folder: Path) -> None:
    env = json.loads((folder / "env.json").read_text())
    (folder / "env.json").write_text(json.dumps({**env, "status": "interrupted"}))


# (name, prepare(tmp, grid_set) -> args, expected exit status, expected text in the message)
PROBES = [
    ("config that is not UTF-8",
     lambda tmp, g: (tmp / "bad.toml").write_bytes(b"rules = ['\xff\xfe']\n") and ["run", "--config", tmp / "bad.toml"],
     2, "not UTF-8"),
    ("--out a file", lambda tmp, g: (tmp / "f").write_text("x") and ["run", "--config", TINY, "--out", tmp / "f"],
     2, "is a file"),
    ("--out under a file",
     lambda tmp, g: (tmp / "f").write_text("x") and ["run", "--config", TINY, "--out", tmp / "f" / "sub"], 2, "f"),
    ("--out under /proc", lambda tmp, g: ["run", "--config", TINY, "--out", "/proc/hebbbench-probe"], 2, "/proc"),
    ("--resume of a scale set", lambda tmp, g: ["run", "--resume", copy(SCALE_SET, tmp)], 2, "scale result set"),
    ("--resume with --threads", lambda tmp, g: ["run", "--resume", copy(g, tmp), "--threads", "1"], 2,
     "give no other run options"),
    ("--resume with --seed", lambda tmp, g: ["run", "--resume", copy(g, tmp), "--seed", "3"], 2,
     "give no other run options"),
    ("--processes 0", lambda tmp, g: ["run", "--config", TINY, "--processes", "0", "--out", tmp / "p"], 2,
     "processes must be an integer from 1 to 100"),
    ("--case-seconds nan", lambda tmp, g: ["run", "--config", TINY, "--case-seconds", "nan", "--out", tmp / "n"], 2,
     "case_seconds"),
    ("report of a garbage results.csv",
     lambda tmp, g: edit("results.csv", lambda t: "\x00garbage;;\n,,,\n")(s := copy(g, tmp)) or ["report", s], 2,
     "results.csv"),
    ("report of an unterminated row",
     lambda tmp, g: edit("results.csv", lambda t: t + '1,run,"t/unterminated\n')(s := copy(g, tmp)) or ["report", s],
     2, "results.csv is damaged"),
    ("report of an env.json that is a list",
     lambda tmp, g: edit("env.json", lambda t: "[1, 2]")(s := copy(g, tmp)) or ["report", s], 2, "env.json"),
    ("report of a truncated results.csv marked complete",
     lambda tmp, g: lines("results.csv", slice(0, 2))(s := copy(g, tmp)) or ["report", s], 0, ""),
    ("report of a truncated scale results.csv",
     lambda tmp, g: lines("results.csv", slice(0, 3))(s := copy(SCALE_SET, tmp)) or ["report", s], 0, ""),
    ("report of a truncated reproduce steps.csv",
     lambda tmp, g: lines("steps.csv", slice(0, 2))(s := copy(NETWORK_SET, tmp)) or ["report", s], 0, ""),
    ("report of a folder that is no set", lambda tmp, g: (tmp / "empty").mkdir() or ["report", tmp / "empty"], 2,
     "env.json"),
    ("compare with a bad samples.jsonl line",
     lambda tmp, g: edit("samples.jsonl", lambda t: '{"case_id": 1, "label"\n' + t)(s := copy(g, tmp))
     or ["compare", g, s], 2, "samples.jsonl"),
    ("compare of a folder with itself", lambda tmp, g: ["compare", g, g], 2, "itself"),
    ("compare of a grid set with a scale set", lambda tmp, g: ["compare", g, SCALE_SET], 2, "scale"),
    ("report --out into a user's folder",
     lambda tmp, g: (tmp / "mine").mkdir() or (tmp / "mine" / "notes.txt").write_text("mine") and
     ["report", g, "--out", tmp / "mine"], 2, "mine"),
    ("run --out a 240-character name", lambda tmp, g: ["run", "--config", TINY, "--rules", "hpca", "--impls", "fh",
                                                       "--what", "update", "--batch-sizes", "2", "--no-report",
                                                       "--out", tmp / ("r" * 240)], 0, ""),
    ("run --out a 300-character name", lambda tmp, g: ["run", "--config", TINY, "--out", tmp / ("r" * 300)], 2,
     "name"),
    ("baseline update --out a run that is not a gate set",
     lambda tmp, g: ["baseline", "update", "--out", copy(g, tmp)], 2, "--force"),
]


@pytest.mark.parametrize("name, prepare, code, message", PROBES, ids=[p[0] for p in PROBES])
def test_probe_answers_in_one_line(name, prepare, code, message, grid_set, tmp_path, monkeypatch, capsys):
    before = digest(grid_set)
    args = prepare(tmp_path, grid_set)
    monkeypatch.chdir(tmp_path)  # reports and results of probes that run go here
    got, out, err = run_cli(monkeypatch, capsys, *args)
    assert "Traceback" not in err + out, err
    assert got == code, (got, out, err)
    if code == 2:
        said = [line for line in err.splitlines() if line.strip()]
        assert len(said) == 1 and message in said[0], err
    assert digest(grid_set) == before  # nothing read was changed


@pytest.mark.parametrize("seed", range(12))
def test_random_damage_never_ends_in_a_traceback(seed, grid_set, tmp_path, monkeypatch, capsys):
    """Bytes flipped, lines cut, files emptied or removed at random in a copy of a set: report and
    compare answer with an exit status (0 with warnings, or 2), never a traceback."""
    rng = random.Random(seed)
    damaged = copy(grid_set, tmp_path)
    for _ in range(rng.randint(1, 3)):
        path = damaged / rng.choice(["results.csv", "samples.jsonl", "env.json"])
        if not path.exists():
            continue
        data = bytearray(path.read_bytes())
        how = rng.choice(["flip", "cut", "empty", "remove", "duplicate"])
        if how == "flip" and data:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
        elif how == "cut":
            path.write_bytes(bytes(data[:rng.randrange(len(data) + 1)]))
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "remove":
            path.unlink()
        else:
            lines_ = bytes(data).splitlines(keepends=True)
            if lines_:
                path.write_bytes(bytes(data) + rng.choice(lines_))
    monkeypatch.chdir(tmp_path)
    for args in (["report", damaged, "--out", tmp_path / "report"], ["compare", grid_set, damaged]):
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert "Traceback" not in err + out and code in (0, 1, 2), (args, code, err)
        if code == 2:
            assert len([line for line in err.splitlines() if line.strip()]) == 1, err

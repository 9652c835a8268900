"""A result set on disk: ``results.csv``, ``samples.jsonl`` and ``env.json`` in one folder.

- ``results.csv``: tidy, one row per case × implementation variant (columns: COLUMNS);
- ``samples.jsonl``: the raw samples, one JSON object per case × variant, and one per case
  labelled ``CALIBRATION``: the calibration product timed in the same rounds (the i-th
  sample of every variant and of the calibration come from the same round);
- ``env.json``: the environment, the resolved grid, the run's start and end, the schema version.

The rows of a case are appended in one write and flushed (then fsync'ed) as the case
finishes, its samples first; a run killed at any point leaves every file readable, and a
line cut short by the kill is dropped when the set is read or resumed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hebbbench.errors import UserError

SCHEMA_VERSION = 1
RESULTS, SAMPLES, ENV = "results.csv", "samples.jsonl", "env.json"

#: columns of results.csv, in order.
COLUMNS = [
    "schema", "run_id", "case_id", "sweep", "rule", "rule_options", "impl", "impl_options", "label",
    "baseline", "layer", "layer_kind", "layer_spec", "batch", "n", "m", "d", "dtype", "device",
    "device_name", "threads", "what", "status", "reason", "error", "tolerance", "median_s", "q1_s",
    "q3_s", "iqr_s", "rel_iqr", "noisy", "n_samples", "speedup", "speedup_lo", "speedup_hi",
    "flops", "bytes", "flop_per_s", "byte_per_s", "pct_of_attainable", "peak_memory_bytes", "memory_method",
    "predicted_memory_bytes", "predicted_s", "compile_s", "first_call_s", "finished_at",
]
STATUSES = ("ok", "wrong", "oom", "skipped", "error")
#: pseudo-label of a case's calibration samples in samples.jsonl (no implementation is labelled so).
CALIBRATION = "@calibration"
#: what the calibration is, recorded in env.json: runs are comparable only with the same one.
CALIBRATION_KIND = ("mm (M,K)@(K,D), K = max(N,M): Y^T X on the case's rows, or a seeded (M,M) matrix times W; "
                    "repeated to 1e8 FLOP (at most 64 times), interleaved")


def _complete_lines(path: Path) -> list[str]:
    """The file's lines that end with a newline (a line cut short by a kill is dropped)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]]  # the last piece never ends with "\n"


class ResultSet:
    """One run's folder of result files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- creation and reading --------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, env: dict[str, Any]) -> "ResultSet":
        """A new result set; refuses a folder that already holds results (never overwrites them)."""
        rs = cls(path)
        if (rs.path / RESULTS).exists() or (rs.path / ENV).exists():
            raise UserError(f"{rs.path} already holds a result set; use --resume {rs.path} to finish it, "
                            "or choose another --out")
        rs.path.mkdir(parents=True, exist_ok=True)
        rs.write_env({"schema_version": SCHEMA_VERSION, **env})
        with open(rs.path / RESULTS, "w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
        (rs.path / SAMPLES).touch()
        return rs

    @classmethod
    def open(cls, path: str | Path) -> "ResultSet":
        rs = cls(path)
        if not (rs.path / ENV).is_file() or not (rs.path / RESULTS).is_file():
            raise UserError(f"{rs.path} is not a result set: expected {ENV} and {RESULTS} in it")
        env = rs.env()
        if env.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{rs.path}: schema version {env.get('schema_version')!r} is not "
                            f"{SCHEMA_VERSION}, the version this hebbbench reads")
        return rs

    def env(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / ENV).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.path / ENV}: unreadable ({exc})") from None

    def write_env(self, env: dict[str, Any]) -> None:
        tmp = self.path / (ENV + ".tmp")
        tmp.write_text(json.dumps(env, indent=2, default=str) + "\n")
        os.replace(tmp, self.path / ENV)

    def update_env(self, **changes: Any) -> None:
        self.write_env({**self.env(), **changes})

    def frame(self) -> pd.DataFrame:
        """results.csv as a DataFrame (complete lines only)."""
        lines = _complete_lines(self.path / RESULTS)
        if not lines:
            return pd.DataFrame(columns=COLUMNS)
        return pd.read_csv(io.StringIO("".join(lines)), keep_default_na=False, na_values=[""])

    def samples(self, calibration: bool = False) -> dict[tuple[str, str], list[float]]:
        """Raw samples keyed by (case_id, label); the calibration's too when ``calibration``."""
        out = {}
        for line in _complete_lines(self.path / SAMPLES):
            record = json.loads(line)
            if calibration or record["label"] != CALIBRATION:
                out[(record["case_id"], record["label"])] = record["samples"]
        return out

    def done_case_ids(self) -> set[str]:
        frame = self.frame()
        return set(frame["case_id"]) if len(frame) else set()

    def repair(self) -> None:
        """Drop lines cut short by a kill, and samples of cases whose rows were never written."""
        lines = _complete_lines(self.path / RESULTS)
        if not lines:
            lines = [",".join(COLUMNS) + "\n"]
        self._rewrite(RESULTS, lines)
        done = self.done_case_ids()
        kept = [line for line in _complete_lines(self.path / SAMPLES) if json.loads(line)["case_id"] in done]
        self._rewrite(SAMPLES, kept)

    def _rewrite(self, name: str, lines: list[str]) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text("".join(lines))
        os.replace(tmp, self.path / name)

    # -- appending -------------------------------------------------------------------
    def append_case(self, rows: list[dict[str, Any]], samples: dict[str, list[float]]) -> None:
        """Write one finished case: its samples, then its rows, each in one flushed write."""
        case_id = rows[0]["case_id"]
        text = "".join(json.dumps({"case_id": case_id, "label": label, "samples": values}) + "\n"
                       for label, values in samples.items())
        self._append(SAMPLES, text)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
        self._append(RESULTS, buf.getvalue())

    def _append(self, name: str, text: str) -> None:
        if not text:
            return
        with open(self.path / name, "a", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return value

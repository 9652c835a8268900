"""A result set on disk: ``results.csv``, ``samples.jsonl`` and ``env.json`` in one folder.

- ``results.csv``: tidy, one row per case × implementation variant (columns: COLUMNS);
- ``samples.jsonl``: the raw samples, one JSON object per case × variant, and one per case
  labelled ``CALIBRATION``: the calibration product timed in the same rounds. ``process``
  names each sample's worker process and ``faults`` its call's minor page faults (absent in
  sets measured before processes were recorded: one process); within a process the i-th
  sample of every variant and of the calibration come from the same round;
- ``processes.jsonl`` (while a grid run is unfinished): each worker process's measurement of a
  case, until all the case's processes are in and its rows are written;
- ``env.json``: the environment, the resolved grid, the run's start and end, the schema version.

The rows of a case are appended in one write and flushed (then fsync'ed) as the case
finishes, its samples first; a run killed at any point leaves every file readable, and a
line cut short by the kill is dropped when the set is read or resumed.

Every command writes one of four **kinds** of result set, named in ``env.json``
(``kind``) beside one ``schema_version``:

==========  ======================  =========================================================
kind        written by              files besides env.json
==========  ======================  =========================================================
grid        ``hebbbench run``       results.csv, samples.jsonl (this module's :class:`ResultSet`)
network     ``hebbbench reproduce`` steps.csv, layers.csv, samples.csv, claims.csv (:class:`NetworkSet`)
scale       ``hebbbench scale``     results.csv, samples.jsonl
accuracy    ``hebbbench accuracy``  results.csv, curve.csv, parity.csv (``hebbbench.suites.accuracy``)
==========  ======================  =========================================================

:func:`open_set` reads env.json once and says which kind a folder holds; every command
that reads a set (``report``, ``compare``, ``run --resume``) asks it, and refuses a kind
it does not take in one line (:func:`require`). :func:`write_env` is the one writer of
env.json, for every kind. Grid and network sets are appended per case and resumed by the
command that wrote them (``run --resume``, ``reproduce --resume``); a scale set is not
resumable (its world sizes are compared with the weights' change at world size 1, measured
in the same run), so ``--resume`` of it is refused in one line; nor is an accuracy set (one run
trains and evaluates it whole). Sets written before the kind was recorded read as ``grid`` (no
``kind``) and ``network`` (``kind = "reproduce"``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from hebbbench.errors import UserError

SCHEMA_VERSION = 1
RESULTS, SAMPLES, ENV = "results.csv", "samples.jsonl", "env.json"
#: a grid run's per-process measurements of cases not finished yet (rows and samples of one
#: worker process per line); a case's rows go to results.csv once all its processes are in.
MEASURED = "processes.jsonl"


class Kind(StrEnum):
    """What a result set holds, by the command that wrote it."""

    GRID = "grid"  # hebbbench run: layer × batch × dtype × device cases
    NETWORK = "network"  # hebbbench reproduce: Hebbian training of the paper's networks
    SCALE = "scale"  # hebbbench scale: data-parallel training at several world sizes
    ACCURACY = "accuracy"  # hebbbench accuracy: accuracy against label fraction, and the parity gate


#: what each kind is, in the words of a refusal.
KIND_WRITER = {Kind.GRID: "hebbbench run", Kind.NETWORK: "hebbbench reproduce", Kind.SCALE: "hebbbench scale",
               Kind.ACCURACY: "hebbbench accuracy"}
#: kind names of sets written before the kind was recorded under these names.
LEGACY_KINDS = {None: Kind.GRID, "reproduce": Kind.NETWORK}


@dataclass(frozen=True)
class SetInfo:
    """A result set's folder, its kind and its env.json, read once."""

    path: Path
    kind: Kind
    env: dict[str, Any]


def read_env(path: str | Path) -> dict[str, Any]:
    """env.json of the set in ``path`` as a dict; one-line UserError when it is missing or unreadable."""
    file = Path(path) / ENV
    if not Path(path).is_dir():
        raise UserError(f"{path} is not a result set: no such folder")
    if not file.is_file():
        raise UserError(f"{path} is not a result set: expected {ENV} in it")
    try:
        env = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: unreadable ({' '.join(str(exc).split())})") from None
    if not isinstance(env, dict):
        raise UserError(f"{file}: not a JSON object")
    return env


def write_env(path: str | Path, env: dict[str, Any]) -> None:
    """Write env.json atomically (a temporary file of this process, then a rename): the one writer of every kind."""
    folder = Path(path)
    tmp = folder / f".{ENV}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(_strict(env), indent=2, default=str, allow_nan=False) + "\n")
    os.replace(tmp, folder / ENV)


#: the advisory lock file a set's writer holds (hidden; nothing reads it but the next writer).
LOCK = ".lock"


class WriterLock:
    """The one writer of a result set: an advisory lock (``flock``) on ``<set>/.lock`` held while
    it writes, released when it ends, however it ends (the system drops it with the process).
    A second writer (a second ``--resume``, a run into the same ``--out``) is refused in one line
    naming the holder's pid; the set is left as it was."""

    def __init__(self, folder: str | Path) -> None:
        self.folder, self.fd = Path(folder), None

    def acquire(self) -> "WriterLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no advisory locks, writers are not checked
            return self
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.folder} is being written by another hebbbench (pid {holder}); wait until it "
                            "ends, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    @classmethod
    def claim(cls, folder: str | Path, taken: tuple[str, ...], refusal: str) -> "WriterLock":
        """Make ``folder`` a new set's and become its writer; UserError(``refusal``) when one of the
        ``taken`` files shows it holds a set already (also when another writer got there first)."""
        folder = Path(folder)
        try:
            if folder.exists() and not folder.is_dir():
                raise UserError(f"{folder} is a file; choose another --out")
            if any((folder / name).exists() for name in taken):
                raise UserError(refusal)
            folder.mkdir(parents=True, exist_ok=True)
            lock = cls(folder).acquire()
        except OSError as exc:  # under a file, /proc, read-only, a name too long ...
            raise UserError(f"cannot make the result folder {folder}: {exc.strerror or exc}; choose another --out") \
                from None
        if (folder / ENV).exists():  # another writer created it between the check and the lock
            lock.release()
            raise UserError(refusal)
        return lock

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


def fresh_folder(base: str | Path, tries: int = 100) -> Path:
    """A new folder named ``base``, or ``base-2``, ``base-3``, ... when runs started in the same second
    took the earlier names (created here, atomically: no two runs get the same one)."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, tries + 1):
        folder = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise UserError(f"{base} and {tries - 1} numbered folders beside it exist already; choose --out")


def _strict(value: Any) -> Any:
    """``value`` as strict JSON takes it: a float that is not finite (NaN, ±inf) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def open_set(path: str | Path) -> SetInfo:
    """The kind and env.json of the set in ``path``; UserError when it is none, or of an unknown kind or schema."""
    env = read_env(path)
    raw = env.get("kind")
    kind = LEGACY_KINDS.get(raw) if raw is None or raw in LEGACY_KINDS else None
    if kind is None:
        try:
            kind = Kind(raw)
        except ValueError:
            allowed = ", ".join(k.value for k in Kind)
            raise UserError(f"{path}: unknown result set kind {raw!r} (this hebbbench writes {allowed})") from None
    if env.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {env.get('schema_version')!r} is not {SCHEMA_VERSION}, "
                        "the version this hebbbench reads")
    return SetInfo(Path(path), kind, env)


def require(path: str | Path, command: str, kinds: tuple[Kind, ...]) -> SetInfo:
    """:func:`open_set`, refusing in one line a kind that ``command`` does not take."""
    info = open_set(path)
    if info.kind not in kinds:
        takes = " or ".join(f"{k.value} sets ({KIND_WRITER[k]})" for k in kinds)
        raise UserError(f"{path} is a {info.kind.value} result set ({KIND_WRITER[info.kind]}); "
                        f"{command} takes {takes}")
    return info

#: the columns every timed row of every kind has, each meaning the same thing: the run, the case
#: (everything but the implementation) and the variant (``label``: the implementation with its options),
#: where and what was timed (``what``: ``update`` = ΔW alone, ``step`` = the whole Hebbian step,
#: docs/design.md §5), the outcome (``status``, and ``reason`` unless ok), the timing in seconds, and
#: ``speedup`` = median(baseline) / median(this row) with its bootstrap 95 % interval, where
#: ``baseline`` is the label of the case's baseline variant (:func:`hebbbench.measure.timing.speedup`).
KEY_COLUMNS = [
    "schema", "run_id", "case_id", "label", "impl", "impl_options", "baseline", "device", "dtype", "what",
    "status", "reason", "median_s", "q1_s", "q3_s", "n_samples", "speedup", "speedup_lo", "speedup_hi",
]

#: columns of a grid set's results.csv, in order (the key columns among them).
COLUMNS = [
    "schema", "run_id", "case_id", "sweep", "rule", "rule_options", "impl", "impl_options", "label",
    "baseline", "layer", "layer_kind", "layer_spec", "batch", "n", "m", "d", "dtype", "device",
    "device_name", "threads", "precision", "what", "status", "reason", "error", "tolerance", "median_s", "q1_s",
    "q3_s", "iqr_s", "rel_iqr", "noisy", "n_samples", "latency_s", "processes", "process_spread", "unstable",
    "speedup", "speedup_lo", "speedup_hi", "faults_per_call",
    "flops", "bytes", "flop_per_s", "byte_per_s", "pct_of_attainable", "peak_memory_bytes", "memory_method",
    "predicted_memory_bytes", "predicted_s", "compile_s", "first_call_s", "finished_at",
]
#: the numeric columns of a grid set (a damaged file is refused when one holds anything else).
NUMERIC_COLUMNS = ["schema", "batch", "n", "m", "d", "threads", "error", "tolerance", "median_s", "q1_s", "q3_s",
                   "iqr_s", "rel_iqr", "n_samples", "latency_s", "processes", "process_spread", "speedup", "speedup_lo",
                   "speedup_hi", "faults_per_call", "flops", "bytes", "flop_per_s", "byte_per_s", "pct_of_attainable",
                   "peak_memory_bytes", "predicted_memory_bytes", "predicted_s", "compile_s", "first_call_s"]
#: grid columns added after schema 1's first sets, with the value an older row reads as (one process).
LATER_COLUMNS = {"processes": 1, "process_spread": math.nan, "unstable": False, "faults_per_call": math.nan,
                 "precision": "not recorded", "latency_s": math.nan}


class Status(StrEnum):
    """The status of a row, one vocabulary for every kind of set (the row's ``reason`` or ``method`` says more)."""

    OK = "ok"  # measured
    WRONG = "wrong"  # disagrees with the float64 reference beyond the dtype's tolerance: never timed
    OOM = "oom"  # ran out of memory
    SKIPPED = "skipped"  # not run: the device, a budget or a missing compiler/package (the reason says which;
    #                      in a network set its time is then estimated, and ``method`` says how)
    ERROR = "error"  # raised (the reason has the exception)
    # network sets (hebbbench reproduce): a time that was not measured as such, with the method in ``method``
    ESTIMATED = "estimated"  # predicted by the calibrated cost model
    COMPOSED = "composed"  # a step composed from measured layer updates and fh's step
    OVER_BUDGET = "over_budget"  # one cold run took longer than the budget: that run's time
#: pseudo-label of a case's calibration samples in samples.jsonl (no implementation is labelled so).
CALIBRATION = "@calibration"
#: what the calibration is, recorded in env.json: runs are comparable only with the same one.
CALIBRATION_KIND = ("mm (M,K)@(K,D), K = max(N,M): Y^T X on the case's rows, or a seeded (M,M) matrix times W; "
                    "repeated to 1e8 FLOP (at most 64 times), interleaved")
#: the calibration's difference on a GPU, appended to CALIBRATION_KIND by runs that use one.
CALIBRATION_GPU = "; on a GPU repeated to 1e10 FLOP (at most 64 times)"


def calibration_kind(devices: list[str]) -> str:
    """The calibration of a run on ``devices``, as env.json records it (CPU runs read as before)."""
    return CALIBRATION_KIND + (CALIBRATION_GPU if any(d.startswith("cuda") for d in devices) else "")


def _complete_lines(path: Path) -> list[str]:
    """The file's lines that end with a newline (a line cut short by a kill is dropped); UserError
    when it is not UTF-8 text (a damaged file, or not one of ours)."""
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is damaged: not UTF-8 text (byte {exc.start}); use an undamaged copy") from None
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]]  # the last piece never ends with "\n"


def _record(line: str, path: Path, number: int, keys: tuple[str, ...]) -> dict[str, Any]:
    """One JSON line of ``path`` with the ``keys`` it must have; UserError naming the line otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}, line {number}, is damaged: {exc.msg}") from None
    if not isinstance(record, dict) or any(k not in record for k in keys) or \
            ("samples" in keys and not (isinstance(record["samples"], list)
                                        and all(isinstance(v, (int, float)) for v in record["samples"]))):
        raise UserError(f"{path}, line {number}, is damaged: not a record with {', '.join(keys)}")
    return record


class ResultSet:
    """One run's folder of result files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock: WriterLock | None = None  # held by a writer (create, or lock() before resuming)

    def lock_for_writing(self) -> "ResultSet":
        """Become the set's one writer (before resuming it); UserError when another holds it."""
        self.lock = WriterLock(self.path).acquire()
        return self

    def close(self) -> None:
        """Stop writing: release the writer's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- creation and reading --------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, env: dict[str, Any]) -> "ResultSet":
        """A new result set; refuses a folder that already holds results (never overwrites them)."""
        rs = cls(path)
        rs.lock = WriterLock.claim(rs.path, (RESULTS, ENV), f"{rs.path} already holds a result set; use --resume "
                                                            f"{rs.path} to finish it, or choose another --out")
        rs.write_env({"schema_version": SCHEMA_VERSION, "kind": Kind.GRID.value, **env})
        with open(rs.path / RESULTS, "w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
        (rs.path / SAMPLES).touch()
        return rs

    @classmethod
    def open(cls, path: str | Path, command: str = "this command", started: bool = False) -> "ResultSet":
        """A grid set (``hebbbench run``); ``command`` names the reader in a refusal of another kind.
        ``started``: a run killed before it wrote results.csv (env.json alone) opens too, to be resumed."""
        require(path, command, (Kind.GRID,))
        rs = cls(path)
        if started and not (rs.path / RESULTS).exists():
            return rs  # repair() writes the header
        if not (rs.path / RESULTS).is_file():
            raise UserError(f"{rs.path} is not a result set: expected {ENV} and {RESULTS} in it")
        return rs

    def env(self) -> dict[str, Any]:
        return read_env(self.path)

    def write_env(self, env: dict[str, Any]) -> None:
        write_env(self.path, env)

    def update_env(self, **changes: Any) -> None:
        self.write_env({**self.env(), **changes})

    def frame(self) -> pd.DataFrame:
        """results.csv as a DataFrame (complete lines only)."""
        lines = _complete_lines(self.path / RESULTS)
        if not lines:
            return pd.DataFrame(columns=COLUMNS)
        try:
            frame = pd.read_csv(io.StringIO("".join(lines)), keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, ValueError) as exc:
            raise UserError(f"{self.path / RESULTS} is damaged: {' '.join(str(exc).split())[:200]}") from None
        missing = [c for c in COLUMNS if c not in frame.columns and c not in LATER_COLUMNS]
        if missing:
            raise UserError(f"{self.path / RESULTS} is not a results table of hebbbench (no column "
                            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
        for column, value in LATER_COLUMNS.items():
            if column not in frame.columns:
                frame[column] = value
        for column in NUMERIC_COLUMNS:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            bad = numbers.isna() & frame[column].notna()
            if bad.any():
                raise UserError(f"{self.path / RESULTS} is damaged: column {column} holds "
                                f"{str(frame.loc[bad, column].iloc[0])[:40]!r}, not a number")
            frame[column] = numbers
        return frame

    def doubled(self, frame: pd.DataFrame) -> str | None:
        """Why the rows cannot be trusted when a (case, variant) appears twice (two writers once appended
        to the set, or a copy was pasted into it); None when each appears once."""
        if frame.empty:
            return None
        twice = frame[frame.duplicated(["case_id", "label"], keep=False)]
        if twice.empty:
            return None
        first = twice.iloc[0]
        return (f"{self.path} holds {len(twice) - twice[['case_id', 'label']].drop_duplicates().shape[0]} duplicated "
                f"row(s) (e.g. {first['case_id']} [{first['label']}]): two writers appended to it; use a set "
                "written by one run")

    def missing(self, frame: pd.DataFrame, env: dict[str, Any]) -> str | None:
        """What is missing when env.json says the run is complete but results.csv holds fewer cases
        than it ran (a truncated or edited file); None otherwise."""
        expected = env.get("cases")
        found = frame["case_id"].nunique() if len(frame) else 0
        if env.get("status") == "complete" and isinstance(expected, int) and found < expected:
            return (f"{self.path} is marked complete with {expected} cases but results.csv holds {found}: "
                    "rows are missing (a truncated or edited file)")
        return None

    def sample_records(self, calibration: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
        """samples.jsonl's records keyed by (case_id, label) (``samples``, and ``process`` and ``faults``
        where recorded: :meth:`hebbbench.measure.timing.Timing.from_record` reads them); the
        calibration's too when ``calibration``. A set measured in one process has no ``process``."""
        out = {}
        for number, line in enumerate(_complete_lines(self.path / SAMPLES), 1):
            record = _record(line, self.path / SAMPLES, number, ("case_id", "label", "samples"))
            if calibration or record["label"] != CALIBRATION:
                out[(record["case_id"], record["label"])] = record
        return out

    def samples(self, calibration: bool = False) -> dict[tuple[str, str], list[float]]:
        """Raw samples keyed by (case_id, label), all processes together."""
        return {key: r["samples"] for key, r in self.sample_records(calibration).items()}

    def measured(self) -> dict[str, dict[int, dict[str, Any]]]:
        """The per-process measurements of unfinished cases: case_id -> process -> the record that
        :meth:`append_measured` wrote (``rows``, and ``timings``: label -> sample record)."""
        done, out = self.done_case_ids(), {}
        for number, line in enumerate(_complete_lines(self.path / MEASURED), 1):
            record = _record(line, self.path / MEASURED, number, ("case_id", "process", "rows", "timings"))
            if record["case_id"] not in done:
                out.setdefault(record["case_id"], {})[int(record["process"])] = record
        return out

    def done_case_ids(self) -> set[str]:
        frame = self.frame()
        return set(frame["case_id"]) if len(frame) else set()

    def repair(self, labels: dict[str, set[str]] | None = None) -> list[str]:
        """Drop lines cut short by a kill, and samples of cases whose rows were never written.

        ``labels`` (case_id -> the labels of its variants): a case holding only some of its rows (a
        kill between two of its lines) is dropped whole, to be measured again; returns those case ids.
        """
        lines = _complete_lines(self.path / RESULTS)
        if not lines:
            lines = [",".join(COLUMNS) + "\n"]
        partial: list[str] = []
        if labels and len(lines) > 1:
            rows = list(csv.DictReader(io.StringIO("".join(lines))))  # one row per line: no field holds a newline
            found: dict[str, set[str]] = {}
            for row in rows:
                found.setdefault(row["case_id"], set()).add(row["label"])
            partial = [case_id for case_id, have in found.items() if case_id in labels and have != labels[case_id]]
            lines = [lines[0], *(line for line, row in zip(lines[1:], rows) if row["case_id"] not in partial)]
        self._rewrite(RESULTS, lines)
        done = self.done_case_ids()
        kept = [line for number, line in enumerate(_complete_lines(self.path / SAMPLES), 1)
                if _record(line, self.path / SAMPLES, number, ("case_id",))["case_id"] in done]
        self._rewrite(SAMPLES, kept)
        if (self.path / MEASURED).exists():
            pending = [line for number, line in enumerate(_complete_lines(self.path / MEASURED), 1)
                       if _record(line, self.path / MEASURED, number, ("case_id",))["case_id"] not in done]
            self._rewrite(MEASURED, pending)
        return partial

    def drop_measured(self) -> None:
        """Remove processes.jsonl once every case it held is in results.csv (the run is complete)."""
        if (self.path / MEASURED).exists() and not self.measured():
            (self.path / MEASURED).unlink()

    def _rewrite(self, name: str, lines: list[str]) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text("".join(lines))
        os.replace(tmp, self.path / name)

    # -- appending -------------------------------------------------------------------
    def append_measured(self, case_id: str, process: int, rows: list[dict[str, Any]],
                        timings: dict[str, dict[str, Any]]) -> None:
        """Keep one worker process's measurement of a case (its rows, and its sample records by label)
        until the case's other processes are in."""
        record = {"case_id": case_id, "process": process, "rows": _strict(rows), "timings": timings}
        self._append(MEASURED, json.dumps(record, allow_nan=False) + "\n")

    def append_case(self, rows: list[dict[str, Any]], samples: dict[str, dict[str, Any]]) -> None:
        """Write one finished case: its sample records by label, then its rows, each in one flushed write."""
        case_id = rows[0]["case_id"]
        text = "".join(json.dumps({"case_id": case_id, "label": label, **record}) + "\n"
                       for label, record in samples.items())
        self._append(SAMPLES, text)
        # a set written before some columns existed keeps its header: a resumed run appends its columns
        columns = self._header() or COLUMNS
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
        self._append(RESULTS, buf.getvalue())

    def _header(self) -> list[str]:
        """The columns of results.csv's header (none before it is written)."""
        lines = _complete_lines(self.path / RESULTS)[:1]
        return lines[0].rstrip("\n").split(",") if lines else []

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


#: the files of a network set (``hebbbench reproduce``), besides env.json, in the order a case writes them.
NETWORK_FILES = {"claims": "claims.csv", "samples": "samples.csv", "layers": "layers.csv", "steps": "steps.csv"}


class NetworkSet:
    """A network set being written: each (network, rule) case appended as it finishes, samples, then
    its layer rows, then its step rows (the case is done once its step rows are there), each in one
    flushed write; env.json says ``running`` until :meth:`finish`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock: WriterLock | None = None

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @classmethod
    def create(cls, path: str | Path, columns: dict[str, list[str]], claims: pd.DataFrame,
               env: dict[str, Any]) -> "NetworkSet":
        """A new network set (``columns``: each CSV's header); refuses a folder that holds a result set."""
        ns = cls(path)
        ns.lock = WriterLock.claim(ns.path, (ENV,), f"{ns.path} already holds a result set; resume it with "
                                                    f"--resume {ns.path}, or choose another --out")
        claims.to_csv(ns.path / NETWORK_FILES["claims"], index=False)
        for name, names in columns.items():
            pd.DataFrame(columns=names).to_csv(ns.path / NETWORK_FILES[name], index=False)
        write_env(ns.path, {"schema_version": SCHEMA_VERSION, "kind": Kind.NETWORK.value, "run_id": ns.path.name,
                            "status": "running", "finished_at": None, **env})
        return ns

    @classmethod
    def open(cls, path: str | Path, command: str) -> tuple["NetworkSet", dict[str, Any]]:
        """A network set to continue, cut back to its finished cases; and its env.json."""
        env = require(path, command, (Kind.NETWORK,)).env
        ns = cls(path)
        missing = [f for f in NETWORK_FILES.values() if not (ns.path / f).is_file()]
        if missing or "params" not in env:
            raise UserError(f"{ns.path} cannot be resumed: "
                            + (f"{', '.join(missing)} missing" if missing else
                               "it was written before network sets recorded their parameters; start it again"))
        ns.lock = WriterLock(ns.path).acquire()
        ns.repair()
        return ns, env

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every file's complete rows."""
        out = {}
        for name, file in NETWORK_FILES.items():
            lines = _complete_lines(self.path / file)
            out[name] = pd.read_csv(io.StringIO("".join(lines)), keep_default_na=False, na_values=[""])
        return out

    def done(self) -> set[tuple[str, str]]:
        """The (network, rule) cases whose step rows were written."""
        steps = self.frames()["steps"]
        return set(zip(steps["network"], steps["rule"]))

    def repair(self) -> None:
        """Drop lines cut short by a kill, and the rows and samples of cases whose step rows were never written."""
        done = self.done()
        for name, file in NETWORK_FILES.items():
            header, *lines = _complete_lines(self.path / file)
            if name in ("layers", "steps"):
                frame = pd.read_csv(io.StringIO(header + "".join(lines)), keep_default_na=False, na_values=[""])
                lines = [line for line, network, rule in zip(lines, frame["network"], frame["rule"])
                         if (network, rule) in done]
            elif name == "samples":
                lines = [line for line in lines if tuple(line.split("/", 2)[:2]) in done]
            tmp = self.path / (file + ".tmp")
            tmp.write_text(header + "".join(lines))
            os.replace(tmp, self.path / file)

    def append(self, frames: dict[str, pd.DataFrame]) -> None:
        """One finished case: its samples, its layer rows, then its step rows."""
        for name in ("samples", "layers", "steps"):
            frame = frames[name]
            if "run_id" in frame.columns:
                frame = frame.assign(run_id=self.path.name)
            text = frame.to_csv(index=False, header=False)
            if text:
                with open(self.path / NETWORK_FILES[name], "a", newline="") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())

    def discard(self) -> None:
        """Remove the files :meth:`create` wrote (a run refused before any case finished), and the folder if empty."""
        self.close()
        for file in (*NETWORK_FILES.values(), ENV, LOCK):
            (self.path / file).unlink(missing_ok=True)
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def finish(self, status: str = "complete", **changes: Any) -> None:
        write_env(self.path, {**read_env(self.path), **changes, "status": status})
        self.close()

"""``hebbbench.run``: the benchmark run from Python (the CLI's ``run`` calls the same function).

    import hebbbench
    df = hebbbench.run(preset="quick", rules=["hpca"], devices=["cpu"])   # a pandas DataFrame

It writes the same result set as the CLI (``./results/<run-id>/`` unless ``out`` is given). The
run's settings are one :class:`RunConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hebbbench import rules
from hebbbench.measure import conditions
from hebbbench.measure import devices as dev
from hebbbench.measure.timing import Timing
from hebbbench.errors import UserError
from hebbbench.suites.grid import Grid, load_grid, parse_shard, shard_cases, without_options_tables
from hebbbench.store import fresh_folder
from hebbbench.runner import Settings, default_run_id, execute, import_plugins, now, open_run, record, run_info

GIB = 2**30


def parse_bytes(text: str | float | int | None) -> float | None:
    """'16GiB', '512MiB', '2e9' (bytes) or a bare number of GiB ('16')."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text) * GIB
    units = {"kib": 2**10, "mib": 2**20, "gib": GIB, "tib": 2**40, "kb": 1e3, "mb": 1e6, "gb": 1e9, "b": 1}
    s = str(text).strip().lower()
    for unit, scale in units.items():
        if s.endswith(unit):
            number, factor = s[: -len(unit)], scale
            break
    else:
        number, factor = s, GIB
    try:
        value = float(number) * factor
    except ValueError:
        raise UserError(f"memory budget {text!r} is not a size such as 16GiB or 512MiB") from None
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"memory budget must be a finite size > 0, got {text!r}")
    return value


LEGACY_SETTINGS = {"threads", "memory_budget", "max_case_seconds", "imports"}  # env.json's settings before RunConfig
#: settings of a set recorded before runs were measured in worker processes, as they were.
OLDER_PROCESS_SETTINGS = {"processes": 1, "allocator": "system"}
#: --processes above this is refused (each process measures the whole grid again).
MAX_PROCESSES = 100


@dataclass
class RunConfig:
    """What one ``hebbbench run`` takes: the grid (a preset or a file, with overrides) and how to run it.

    The CLI, :func:`run` and ``hebbbench baseline update`` build one; env.json records it under
    ``settings`` (:meth:`as_dict`) and ``--resume`` reads it back (:meth:`from_dict`).
    """

    preset: str | None = None  # a preset's name (default quick) ...
    config: str | None = None  # ... or a grid TOML file (a Path is kept as its text)
    sweeps: list[str] | None = None  # overrides of every sweep; None keeps the grid's
    rules: list[str] | None = None  # patterns, or names with options: swta:temperature=0.05
    impls: list[str] | None = None  # patterns, or names with options: naive:group_size=8
    what: list[str] | None = None
    batch_sizes: list[int] | None = None
    dtypes: list[str] | None = None
    devices: list[str] | None = None
    case_seconds: float | None = None  # the timing cap per case and process; None keeps the grid's
    processes: int | None = None  # worker processes that each measure every case; None keeps the grid's
    allocator: str = conditions.DEFAULT_ALLOCATOR  # the workers' allocator policy: pinned or system
    seed: int = 0
    threads: int | None = None
    memory_budget: str | float | None = None  # '16GiB', '512MiB' or a number of GiB; None: 80 % of the device's
    max_case_seconds: float = 60.0
    imports: tuple[str, ...] = ()  # modules that register users' implementations
    shard: str | None = None  # 'i/n': the i-th of n disjoint parts of the grid

    def __post_init__(self) -> None:
        self.config = None if self.config is None else str(self.config)
        self.imports = tuple(self.imports)

    def grid(self) -> Grid:
        """The grid to run: the preset or file with the overrides applied (validated)."""
        import_plugins(self.imports)
        batches = self.batch_sizes
        if batches is not None and any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in batches):
            raise UserError(f"batch sizes must be positive integers, got {batches}")
        grid = load_grid(self.preset, self.config).override(
            sweeps=self.sweeps, rules=self.rules, impls=self.impls, what=self.what, batch_sizes=batches,
            dtypes=self.dtypes, devices=self.devices)
        if self.processes is not None and (isinstance(self.processes, bool) or not isinstance(self.processes, int)
                                           or not 1 <= self.processes <= MAX_PROCESSES):
            raise UserError(f"processes must be an integer from 1 to {MAX_PROCESSES}, got {self.processes}")
        return grid.with_timing(case_seconds=self.case_seconds, processes=self.processes)

    def settings(self, grid: Grid, run_id: str = "") -> Settings:
        """What a device worker needs to run the grid's cases."""
        if self.threads is not None and self.threads < 1:
            raise UserError(f"threads must be >= 1, got {self.threads}")
        if not (math.isfinite(self.max_case_seconds) and self.max_case_seconds > 0):
            raise UserError(f"max-case-seconds must be a finite number > 0, got {self.max_case_seconds}")
        if self.allocator not in conditions.ALLOCATORS:
            raise UserError(f"allocator must be one of {', '.join(conditions.ALLOCATORS)}, got {self.allocator!r}")
        return Settings(policy=grid.policy, seed=self.seed, threads=self.threads,
                        memory_budget=parse_bytes(self.memory_budget), max_case_seconds=self.max_case_seconds,
                        imports=self.imports, run_id=run_id, shard=parse_shard(self.shard), allocator=self.allocator)

    def as_dict(self) -> dict[str, Any]:
        """As written to env.json (``settings``)."""
        return {**dataclasses.asdict(self), "imports": list(self.imports)}

    @classmethod
    def from_env(cls, env: dict[str, Any], where: str) -> "RunConfig":
        """The settings a result set's env.json records (:meth:`from_dict`).

        Sets written before the settings were one object kept only ``threads``, ``memory_budget``,
        ``max_case_seconds`` and ``imports`` there, the seed under ``env`` and the shard under ``shard``;
        those are read as they are (their grid is env.json's ``grid`` either way).
        """
        raw = env.get("settings")
        if isinstance(raw, dict) and set(raw) <= LEGACY_SETTINGS:
            shard = env.get("shard")
            raw = {**dataclasses.asdict(cls()), **raw, "seed": (env.get("env") or {}).get("seed", 0),
                   "shard": f"{shard['index']}/{shard['count']}" if isinstance(shard, dict) else None}
        if isinstance(raw, dict) and set(OLDER_PROCESS_SETTINGS).isdisjoint(raw):
            raw = {**raw, **OLDER_PROCESS_SETTINGS}  # measured in the parent process, allocator as found
        return cls.from_dict(raw, where)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> "RunConfig":
        """The inverse of :meth:`as_dict`; UserError for settings that are not those of this version."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or set(raw) != names:
            found = sorted(raw) if isinstance(raw, dict) else raw
            raise UserError(f"{where}: the run's settings {found} are not those this hebbbench records "
                            f"({', '.join(sorted(names))}): start the run again")
        return cls(**raw)


def run(preset: str | RunConfig | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
        progress: bool = False, console: Console | None = None, argv: list[str] | None = None,
        **options: Any) -> pd.DataFrame:
    """Run a grid and return results.csv as a DataFrame (``df.attrs["path"]`` is the result set's folder).

    ``preset`` is a preset's name or a whole :class:`RunConfig`; ``options`` are the other fields of
    :class:`RunConfig` (``config``, ``rules``, ``impls``, ..., ``shard="i/n"``: only the i-th of n
    disjoint parts of the grid, which ``hebbbench report`` merges).
    """
    if isinstance(preset, RunConfig):
        run_config = dataclasses.replace(preset, **options)
    else:
        run_config = RunConfig(preset=preset, **options)
    if resume is not None:
        given_imports = run_config.imports
        if dataclasses.replace(run_config, imports=()) != RunConfig() or out is not None:
            raise UserError("--resume continues a run with its own grid and settings; give no other run options "
                            "with it (but --import)")
        from hebbbench.store import ResultSet

        env = ResultSet.open(resume, "hebbbench run --resume", started=True).env()
        run_config = RunConfig.from_env(env, f"{resume}/env.json")
        if sorted(set(run_config.imports)) != sorted(set(given_imports)):
            # a result set is data: the modules it names run only when the user names them again
            wanted = " ".join(f"--import {name}" for name in run_config.imports) or "no --import"
            raise UserError(f"{resume} was run with {wanted}; resuming it imports that code, so give the same "
                            f"--import options again (got {' '.join(given_imports) or 'none'})")
        import_plugins(run_config.imports)
        recorded = without_options_tables({k: v for k, v in env["grid"].items() if k != "name"})
        grid = Grid.from_dict(recorded, env["grid"]["name"], f"{resume}/env.json")
        grid = grid.with_timing(processes=run_config.processes)
        settings = run_config.settings(grid, run_id=env["run_id"])
        out = Path(resume)
    else:
        grid = run_config.grid()
        settings = run_config.settings(grid)
    all_cases = grid.expand(resolve=dev.resolve_devices)
    cases = shard_cases(all_cases, settings.shard)
    try:  # before any folder is made: the worker processes must be able to import every implementation
        settings.registry = rules.registry.own_entries()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    used = list(dict.fromkeys(c.device for c in cases))
    if resume is None:
        settings.run_id = default_run_id(grid, used)
        if settings.shard:
            settings.run_id += f"-shard{settings.shard[0]}of{settings.shard[1]}"
        if out is None:  # a folder of its own, even for runs started in the same second
            out = fresh_folder(Path("results") / settings.run_id)
            settings.run_id = out.name
    rs = open_run(Path(out), resume is not None,
                  lambda: run_info(grid, settings, run_config.as_dict(), used, argv, len(cases), len(all_cases)),
                  cases)
    done = rs.done_case_ids()
    todo = [c for c in cases if c.case_id not in done]
    measured = {case_id: {p: (r["rows"], {k: Timing.from_record(v) for k, v in r["timings"].items()})
                          for p, r in by_process.items()}
                for case_id, by_process in rs.measured().items()}
    settings.ceilings = {k: v for k, v in rs.env().get("ceilings", {}).items()}
    emit = record(rs)
    console = console or Console(stderr=True)
    try:
        units = len(todo) * settings.policy.processes - sum(len(measured.get(c.case_id, {})) for c in todo)
        if progress and units > 0:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=False) as bar:
                task = bar.add_task("starting", total=units)

                def emit_with_progress(kind: str, payload: Any) -> None:
                    emit(kind, payload)
                    if kind in ("start", "status"):
                        bar.update(task, description=str(payload))
                    elif kind == "measured":
                        bar.advance(task)
                    elif kind == "failed":
                        console.print(f"[red]worker failed: {escape(str(payload))}")

                execute(todo, settings, emit_with_progress, measured)
        else:
            execute(todo, settings, emit, measured)
    except KeyboardInterrupt:
        rs.update_env(status="interrupted", finished_at=now())
        rs.close()
        raise
    except BaseException:
        rs.close()
        raise
    rs.drop_measured()
    rs.update_env(status="complete", finished_at=now())
    rs.close()
    frame = rs.frame()
    frame.attrs["path"] = str(rs.path)
    return frame


def dry_run(grid: Grid, memory_budget: str | float | None = None) -> pd.DataFrame:
    """The cases a run would time, with each variant's predicted memory and FLOPs (nothing is run)."""
    from hebbbench.suites.workload import predict

    budget = parse_bytes(memory_budget)
    lines = []
    for case in grid.expand(resolve=dev.resolve_devices):
        limit = budget if budget is not None else dev.budget_memory(case.device)
        for v in case.variants:
            cost = predict(case, v)
            lines.append({"case_id": case.case_id, "label": v.label, "n": case.n, "m": case.layer.m,
                          "d": case.layer.d, "predicted_memory_GiB": round(cost.memory / GIB, 3),
                          "GFLOP": round(cost.flops / 1e9, 3),
                          "fits_budget": cost.memory <= limit})
    return pd.DataFrame(lines)


# -- the paper's networks (hebbbench reproduce) ---------------------------------------------------
@dataclass
class ReproduceConfig:
    """What one ``hebbbench reproduce`` takes; env.json records it (``params``, with the device) and
    ``--resume`` reads it back."""

    networks: list[str] = dataclasses.field(default_factory=lambda: ["6layer"])
    rules: list[str] = dataclasses.field(default_factory=lambda: ["swta", "hpca"])
    impls: list[str] = dataclasses.field(default_factory=lambda: ["naive:group_size=8", "naive:group_size=128", "fh"])
    devices: list[str] = dataclasses.field(default_factory=lambda: ["auto"])
    batches: int = 2
    data_root: str | None = None
    workers: int = 0
    max_naive_seconds: float = 2.5
    time_budget: float | None = 100.0  # seconds per network for naive work; None or 0: no limit
    seed: int = 0

    def params(self, device: str) -> dict[str, Any]:
        """The arguments of :func:`hebbbench.suites.reproduce.reproduce` on ``device`` (as env.json keeps them)."""
        from hebbbench.rules.specs import parse_spec

        if self.batches < 1:
            raise UserError(f"--batches must be >= 1, got {self.batches}")
        if not (math.isfinite(self.max_naive_seconds) and self.max_naive_seconds > 0):
            raise UserError(f"--max-naive-seconds must be a finite number > 0, got {self.max_naive_seconds}")
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and self.time_budget >= 0):
            raise UserError(f"--time-budget must be a finite number of seconds >= 0 (0: no limit), "
                            f"got {self.time_budget}")
        variants = [(spec.name, spec.kwargs) for spec in (parse_spec(item, "impl", "--impls") for item in self.impls)]
        return {"networks": list(self.networks), "rules": list(self.rules), "impls": variants,
                "batches": self.batches, "data_root": None if self.data_root is None else str(self.data_root),
                "workers": self.workers, "seed": self.seed, "max_naive_seconds": self.max_naive_seconds,
                "time_budget": self.time_budget or None, "device": device}


def reproduce(config: ReproduceConfig | None = None, *, out: str | Path | None = None,
              resume: str | Path | None = None, argv: list[str] | None = None, progress=None) -> list[Path]:
    """Run ``hebbbench reproduce``: one network set per device, each (network, rule) case appended
    as it finishes; or, with ``resume``, the cases an interrupted set lacks, with its own settings.
    Returns the sets' folders. ``progress(device, event)`` hears where each run is."""
    import sys
    from datetime import datetime, timezone

    import torch

    from hebbbench import store
    from hebbbench.measure import environment
    from hebbbench.suites.claims import published_claims
    from hebbbench.suites.netcase import LAYER_COLUMNS, SAMPLE_COLUMNS, STEP_COLUMNS
    from hebbbench.suites.reproduce import reproduce as measure

    runs = []  # (set, its parameters, the frames measured before)
    if resume is not None:
        if (config is not None and config != ReproduceConfig()) or out is not None:
            raise UserError("--resume continues a set with its own settings; give no other run option with it")
        result_set, env = store.NetworkSet.open(resume, "hebbbench reproduce --resume")
        params = {**env["params"], "impls": [(impl, options) for impl, options in env["params"]["impls"]]}
        runs.append((result_set, params, result_set.frames()))
    else:
        config = config or ReproduceConfig()
        all_devices = dev.resolve_devices(config.devices)
        params_of = {device: config.params(device) for device in all_devices}  # refused here, before any folder
        for device in all_devices:  # every set created (or refused) before anything is measured
            started = datetime.now(timezone.utc)
            name = device.replace(":", "") if device == "cpu" else \
                torch.cuda.get_device_name(device).lower().replace("nvidia", "").strip().split()[-1]
            run_id = f"reproduce-{'+'.join(config.networks)}-{name}-{started.strftime('%Y%m%d-%H%M%S')}"
            folder = (Path(out) if out is not None and len(all_devices) == 1
                      else fresh_folder(Path(out or "results") / run_id))  # same-second runs: -2, -3, ...
            try:
                created = store.NetworkSet.create(
                    folder, {"samples": SAMPLE_COLUMNS, "layers": LAYER_COLUMNS, "steps": STEP_COLUMNS},
                    published_claims(), {"started_at": started.isoformat(timespec="seconds"),
                                         "params": params_of[device],
                                         "env": environment.collect(config.seed, argv or sys.argv),
                                         "conditions": conditions.describe()})
            except UserError:
                for earlier, _, _ in runs:
                    earlier.discard()
                raise
            runs.append((created, params_of[device], None))
    paths = []
    for result_set, params, earlier in runs:
        params = dict(params)
        device = params.pop("device")
        try:
            result = measure(**params, device=device, sink=result_set.append, earlier=earlier,
                             progress=None if progress is None else (lambda event, d=device: progress(d, event)))
        except (ValueError, UserError) as exc:  # refused before measuring: no new set left behind
            for created, _, before in runs:
                if before is None and not created.done():
                    created.discard()
            if result_set.path.exists():
                result_set.finish("failed", finished_at=now())
            raise UserError(str(exc)) from None
        except BaseException:
            result_set.finish("interrupted", finished_at=now())
            raise
        result_set.finish(finished_at=now(), meta=result.meta)
        paths.append(result_set.path)
    return paths


# -- data-parallel scaling (hebbbench scale) ------------------------------------------------------
def scale(config, *, out: str | Path | None = None, argv: list[str] | None = None, progress=None):
    """Run ``hebbbench scale`` (a :class:`hebbbench.suites.scale.ScaleConfig`): spawning the ranks here,
    or as one rank under torchrun. Returns results.csv as a DataFrame (``attrs["path"]``), None on
    ranks other than 0."""
    import sys

    from hebbbench.nn.parallel import under_torchrun
    from hebbbench.suites import scale as scale_mod

    if config.batch is not None and config.batch < 1:
        raise UserError(f"--batch must be >= 1, got {config.batch}")
    say = progress or (lambda text: None)
    if under_torchrun():
        return scale_mod.run_torchrun(config, out, argv=argv or sys.argv, progress=say)
    if not config.world_sizes:
        config = scale_mod.with_default_world_sizes(config)
    return scale_mod.run_local(config, out, argv=argv or sys.argv, progress=say)


# -- accuracy against label fraction (hebbbench accuracy) -----------------------------------------
def accuracy(config, *, out: str | Path | None = None, argv: list[str] | None = None, progress=None) -> Path:
    """Run ``hebbbench accuracy`` (a :class:`hebbbench.suites.accuracy.AccuracyConfig`); returns the set's folder."""
    import sys

    from hebbbench.suites import accuracy as accuracy_mod

    return accuracy_mod.run(config, out, argv=argv or sys.argv, progress=progress)

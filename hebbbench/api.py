"""``hebbbench.run``: the benchmark run from Python (the CLI's ``run`` calls the same function).

    import hebbbench
    df = hebbbench.run(preset="quick", rules=["hpca"], devices=["cpu"])   # a pandas DataFrame

It writes the same result set as the CLI (``./results/<run-id>/`` unless ``out`` is given).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hebbbench.measure import devices as dev
from hebbbench.errors import UserError
from hebbbench.suites.grid import Grid, load_grid, parse_shard, shard_cases
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
    if value <= 0:
        raise UserError(f"memory budget must be positive, got {text!r}")
    return value


def plan(preset: str | None = None, *, config: str | Path | None = None, rules: list[str] | None = None,
         impls: list[str] | None = None, what: list[str] | None = None, batch_sizes: list[int] | None = None,
         dtypes: list[str] | None = None, devices: list[str] | None = None,
         sweeps: list[str] | None = None, case_seconds: float | None = None, imports: tuple[str, ...] = ()) -> Grid:
    """The grid a run would use: a preset or file with the overrides applied (validated)."""
    import_plugins(imports)
    if batch_sizes is not None and any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in batch_sizes):
        raise UserError(f"batch sizes must be positive integers, got {batch_sizes}")
    grid = load_grid(preset, config).override(sweeps=sweeps, rules=rules, impls=impls, what=what,
                                              batch_sizes=batch_sizes, dtypes=dtypes, devices=devices)
    return grid.with_timing(case_seconds=case_seconds)


def run(preset: str | None = None, *, config: str | Path | None = None, rules: list[str] | None = None,
        impls: list[str] | None = None, what: list[str] | None = None, batch_sizes: list[int] | None = None,
        dtypes: list[str] | None = None, devices: list[str] | None = None,
        sweeps: list[str] | None = None, out: str | Path | None = None, resume: str | Path | None = None, seed: int = 0,
        threads: int | None = None, memory_budget: str | float | None = None, max_case_seconds: float = 60.0,
        case_seconds: float | None = None, imports: tuple[str, ...] = (), shard: str | None = None,
        progress: bool = False, console: Console | None = None, argv: list[str] | None = None,
        isolate: bool = False) -> pd.DataFrame:
    """Run a grid and return results.csv as a DataFrame (``df.attrs["path"]`` is the result set's folder).

    ``shard="i/n"`` runs only the i-th of n disjoint parts of the grid (``hebbbench report`` merges them).
    """
    if threads is not None and threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    if max_case_seconds <= 0:
        raise UserError(f"max-case-seconds must be > 0, got {max_case_seconds}")
    if resume is not None:
        if any(v is not None for v in (preset, config, rules, impls, what, batch_sizes, dtypes, devices, sweeps, out,
                                       shard)):
            raise UserError("--resume continues a run with its own grid; give no grid options with it")
        from hebbbench.store import ResultSet

        env = ResultSet.open(resume).env()
        saved = env.get("settings", {})
        imports = tuple(saved.get("imports", ()))
        import_plugins(imports)
        grid = Grid.from_dict({k: v for k, v in env["grid"].items() if k not in ("name",)}, env["grid"]["name"],
                              f"{resume}/env.json")
        settings = Settings(policy=grid.policy, seed=env["env"].get("seed", 0), threads=saved.get("threads"),
                            memory_budget=saved.get("memory_budget"),
                            max_case_seconds=saved.get("max_case_seconds", max_case_seconds),
                            imports=imports, run_id=env["run_id"],
                            shard=(env["shard"]["index"], env["shard"]["count"]) if env.get("shard") else None)
        out = Path(resume)
    else:
        grid = plan(preset, config=config, rules=rules, impls=impls, what=what, batch_sizes=batch_sizes,
                    dtypes=dtypes, devices=devices, sweeps=sweeps, case_seconds=case_seconds,
                    imports=imports)
        settings = Settings(policy=grid.policy, seed=seed, threads=threads, memory_budget=parse_bytes(memory_budget),
                            max_case_seconds=max_case_seconds, imports=tuple(imports), shard=parse_shard(shard))
    all_cases = grid.expand(resolve=dev.resolve_devices)
    cases = shard_cases(all_cases, settings.shard)
    used = list(dict.fromkeys(c.device for c in cases))
    if resume is None:
        settings.run_id = default_run_id(grid, used)
        if settings.shard:
            settings.run_id += f"-shard{settings.shard[0]}of{settings.shard[1]}"
        out = Path(out) if out else Path("results") / settings.run_id
    rs = open_run(Path(out), resume is not None, lambda: run_info(grid, settings, used, argv, len(cases), len(all_cases)))
    done = rs.done_case_ids()
    todo = [c for c in cases if c.case_id not in done]
    emit = record(rs)
    console = console or Console(stderr=True)
    try:
        if progress and todo:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=False) as bar:
                task = bar.add_task("starting", total=len(todo))

                def emit_with_progress(kind: str, payload: Any) -> None:
                    emit(kind, payload)
                    if kind in ("start", "status"):
                        bar.update(task, description=str(payload))
                    elif kind == "case":
                        bar.advance(task)
                    elif kind == "failed":
                        console.print(f"[red]worker failed: {payload}")

                execute(todo, settings, emit_with_progress, isolate)
        else:
            execute(todo, settings, emit, isolate)
    except KeyboardInterrupt:
        rs.update_env(status="interrupted", finished_at=now())
        raise
    rs.update_env(status="complete", finished_at=now())
    frame = rs.frame()
    frame.attrs["path"] = str(rs.path)
    return frame


def dry_run(grid: Grid, memory_budget: str | float | None = None) -> pd.DataFrame:
    """The cases a run would time, with each variant's predicted memory and FLOPs (nothing is run)."""
    from hebbbench.suites.workload import predict

    budget = parse_bytes(memory_budget)
    lines = []
    for case in grid.expand(resolve=dev.resolve_devices):
        limit = budget if budget is not None else 0.8 * dev.total_memory(case.device)
        for v in case.variants:
            cost = predict(case, v)
            lines.append({"case_id": case.case_id, "label": v.label, "n": case.n, "m": case.layer.m,
                          "d": case.layer.d, "predicted_memory_GiB": round(cost.memory / GIB, 3),
                          "GFLOP": round(cost.flops / 1e9, 3),
                          "fits_budget": cost.memory <= limit})
    return pd.DataFrame(lines)

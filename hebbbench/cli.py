"""The ``hebbbench`` command line (typer). Errors a user can cause print one line and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from hebbbench.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Time Hebbian learning rules — per-sample baselines against FastHebb matrix forms.")
out_console = Console()
err_console = Console(stderr=True)


def split(text: str | None) -> list[str] | None:
    """'a,b' -> ['a', 'b']; None stays None."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"empty list {text!r}")
    return items


def split_ints(text: str | None, what: str) -> list[int] | None:
    items = split(text)
    if items is None:
        return None
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise UserError(f"{what} must be positive integers separated by commas, got {text!r}") from None
    if any(v < 1 for v in values):
        raise UserError(f"{what} must be positive integers, got {text!r}")
    return values


Str = Optional[str]


@app.command()
def run(
    preset: Annotated[Str, typer.Option("--preset", "-p", help="Preset grid (hebbbench list); default quick.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="A grid TOML file.")] = None,
    rules: Annotated[Str, typer.Option(help="Rules, comma separated (fnmatch patterns).")] = None,
    impls: Annotated[Str, typer.Option(help="Implementations, comma separated (patterns; !x excludes).")] = None,
    what: Annotated[Str, typer.Option(help="update, step or both.")] = None,
    batch_sizes: Annotated[Str, typer.Option("--batch-sizes", help="Batch sizes, e.g. 8,64.")] = None,
    dtypes: Annotated[Str, typer.Option(help="float32, float64, bfloat16, float16.")] = None,
    devices: Annotated[Str, typer.Option(help="auto, all, cpu, cuda, cuda:N.")] = None,
    group_size: Annotated[Str, typer.Option("--group-size", help="naive's neurons per group, e.g. 8,128.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Result folder (default ./results/<run-id>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Finish an interrupted run in this folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic inputs.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (torch.set_num_threads).")] = None,
    memory_budget: Annotated[Str, typer.Option("--memory-budget", help="Skip cases predicted above this, e.g. 16GiB.")] = None,
    max_case_seconds: Annotated[float, typer.Option("--max-case-seconds", help="Skip calls predicted longer.")] = 60.0,
    case_seconds: Annotated[Optional[float], typer.Option("--case-seconds", help="Timing cap per case.")] = None,
    imports: Annotated[Optional[list[str]], typer.Option("--import", help="Module registering your own implementations.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the grid and predicted memory; run nothing.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Time every implementation on a grid of layers, batch sizes, dtypes and devices."""
    from hebbbench import api
    from hebbbench.summary import summary_tables

    grid_args = dict(rules=split(rules), impls=split(impls), what=split(what),
                     batch_sizes=split_ints(batch_sizes, "batch sizes"), dtypes=split(dtypes),
                     devices=split(devices), group_size=split_ints(group_size, "group sizes"))
    if dry_run:
        grid = api.plan(preset, config=config, case_seconds=case_seconds, imports=tuple(imports or ()), **grid_args)
        frame = api.dry_run(grid, memory_budget)
        table = Table(title=f"{grid.name}: {frame['case_id'].nunique()} cases, {len(frame)} timed variants (dry run)")
        for column in frame.columns:
            table.add_column(column)
        for _, line in frame.iterrows():
            table.add_row(*(str(v) for v in line))
        out_console.print(table)
        return
    frame = api.run(preset, config=config, out=out, resume=resume, seed=seed, threads=threads,
                    memory_budget=memory_budget, max_case_seconds=max_case_seconds, case_seconds=case_seconds,
                    imports=tuple(imports or ()), progress=progress, console=err_console, argv=sys.argv,
                    **grid_args)
    for table in summary_tables(frame, title=frame.attrs["path"]):
        out_console.print(table)
    out_console.print(f"results in {frame.attrs['path']}")


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="The baseline result set, e.g. results/baselines/ci-cpu.")],
    new: Annotated[Path, typer.Argument(help="The result set to judge (a run of the same grid).")],
    factor: Annotated[float, typer.Option(help="Smallest slowdown (or speedup) that counts, as a ratio.")] = 1.25,
    alpha: Annotated[float, typer.Option(help="Significance level of the Mann–Whitney U test.")] = 0.01,
    floor: Annotated[float, typer.Option(help="Seconds: medians below this are not judged.")] = 50e-6,
    markdown: Annotated[Optional[Path], typer.Option(help="Write a markdown summary to FILE ('-': print it).")] = None,
) -> None:
    """Compare two result sets by normalised time. Exit 0: no regression; 1: a case is slower; 2: an error."""
    from hebbbench import compare as compare_mod

    if markdown is not None and str(markdown) != "-" and not markdown.parent.is_dir():
        raise UserError(f"cannot write --markdown {markdown}: no folder {markdown.parent}")
    result = compare_mod.compare(baseline, new, factor=factor, alpha=alpha, floor_s=floor)
    out_console.print(compare_mod.table(result))
    if markdown is not None:
        text = compare_mod.markdown(result)
        if str(markdown) == "-":
            print(text, end="")
        else:
            try:
                markdown.write_text(text)
            except OSError as exc:
                raise UserError(f"cannot write --markdown {markdown}: {exc.strerror}") from None
    raise typer.Exit(result.exit_code)


baseline_app = typer.Typer(no_args_is_help=True, help="The baseline result set that CI compares against.")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("update")
def baseline_update(
    preset: Annotated[Str, typer.Option("--preset", "-p", help="Preset grid to record; default ci.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="A grid TOML file instead.")] = None,
    out: Annotated[Path, typer.Option(help="The baseline folder to replace.")] = Path("results/baselines/ci-cpu"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a preset and replace the baseline folder with it, only once the run has succeeded."""
    from hebbbench.baseline import PRESET, update
    from hebbbench.summary import summary_tables

    frame = update(preset or (None if config else PRESET), out, config=config, progress=progress,
                   console=err_console, argv=sys.argv)
    for table in summary_tables(frame, title=str(out)):
        out_console.print(table)
    out_console.print(f"baseline {out} replaced; commit it to make it the one CI compares against")


@app.command("list")
def list_things() -> None:
    """Presets, rules and implementations, and the devices seen here."""
    from hebbbench import rules as rules_mod
    from hebbbench.devices import cuda_count, device_name
    from hebbbench.grid import load_grid, preset_names

    presets = Table(title="presets (hebbbench run --preset NAME)")
    presets.add_column("preset")
    presets.add_column("description")
    for name in preset_names():
        presets.add_row(name, load_grid(name).description)
    out_console.print(presets)
    impls = Table(title="rules and implementations")
    for column in ("rule", "impl", "devices", "options", "summary"):
        impls.add_column(column)
    for rule, impl in rules_mod.available():
        cls = rules_mod.lookup(rule, impl)
        impls.add_row(rule, impl, ",".join(cls.device_types),
                      ", ".join(f"{k}={v}" for k, v in cls.default_options().items()), cls.summary)
    out_console.print(impls)
    seen = Table(title="devices seen")
    seen.add_column("device")
    seen.add_column("name")
    for device in ["cpu", *(f"cuda:{i}" for i in range(cuda_count()))]:
        seen.add_row(device, device_name(device))
    out_console.print(seen)


def main() -> None:
    try:
        app()
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted: the finished cases are saved; continue with hebbbench run --resume DIR")
        sys.exit(130)


if __name__ == "__main__":
    main()

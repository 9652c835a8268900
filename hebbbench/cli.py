"""The ``hebbbench`` command line (typer). Errors a user can cause print one line and exit 2."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
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
    sweeps: Annotated[Str, typer.Option(help="Keep only these sweeps of the grid (patterns).")] = None,
    rules: Annotated[Str, typer.Option(help="Rules, comma separated (fnmatch patterns, or a rule with options: "
                                            "swta:temperature=0.05).")] = None,
    impls: Annotated[Str, typer.Option(help="Implementations, comma separated (patterns, !x excludes; or one "
                                            "with options, a variant each: naive:group_size=8,naive:group_size=128"
                                            ",fh).")] = None,
    what: Annotated[Str, typer.Option(help="update, step or both.")] = None,
    batch_sizes: Annotated[Str, typer.Option("--batch-sizes", help="Batch sizes, e.g. 8,64.")] = None,
    dtypes: Annotated[Str, typer.Option(help="float32, float64, bfloat16, float16.")] = None,
    devices: Annotated[Str, typer.Option(help="auto, all, cpu, cuda, cuda:N.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Result folder (default ./results/<run-id>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Finish an interrupted run in this folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic inputs.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (torch.set_num_threads).")] = None,
    memory_budget: Annotated[Str, typer.Option("--memory-budget", help="Skip cases predicted above this, e.g. 16GiB.")] = None,
    max_case_seconds: Annotated[float, typer.Option("--max-case-seconds", help="Skip calls predicted longer.")] = 60.0,
    case_seconds: Annotated[Optional[float], typer.Option("--case-seconds", help="Timing cap per case and process.")] = None,
    processes: Annotated[Optional[int], typer.Option("--processes", help="Fresh worker processes that each measure "
                                                     "every case (pooled); default: the preset's.")] = None,
    allocator: Annotated[str, typer.Option("--allocator", help="The workers' allocator policy: pinned (glibc "
                                           "thresholds fixed, reproducible) or system (as found).")] = "pinned",
    imports: Annotated[Optional[list[str]], typer.Option("--import", help="Module registering your own implementations.")] = None,
    shard: Annotated[Str, typer.Option(help="Run the i-th of n disjoint parts of the grid, e.g. 1/4.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the grid and predicted memory; run nothing.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="Write the report at the end, into ./reports/<run-id>/ (relative to "
                                              "the current folder, wherever --out puts the results).")] = True,
) -> None:
    """Time every implementation on a grid of layers, batch sizes, dtypes and devices.

    Results go to ./results/<run-id>/ (or --out), the report to ./reports/<run-id>/ (hebbbench report).
    """
    from hebbbench import api
    from hebbbench.reports.summary import summary_tables

    run_config = api.RunConfig(
        preset=preset, config=config, sweeps=split(sweeps), rules=split(rules), impls=split(impls), what=split(what),
        batch_sizes=split_ints(batch_sizes, "batch sizes"), dtypes=split(dtypes), devices=split(devices),
        case_seconds=case_seconds, processes=processes, allocator=allocator, seed=seed, threads=threads, memory_budget=memory_budget,
        max_case_seconds=max_case_seconds, imports=tuple(imports or ()), shard=shard)
    if dry_run:
        grid = run_config.grid()
        frame = api.dry_run(grid, memory_budget)
        table = Table(title=escape(f"{grid.name}: {frame['case_id'].nunique()} cases, {len(frame)} timed variants "
                                   "(dry run)"))
        for column in frame.columns:
            table.add_column(column)
        for _, line in frame.iterrows():
            table.add_row(*(escape(str(v)) for v in line))
        out_console.print(table)
        return
    frame = api.run(run_config, out=out, resume=resume, progress=progress, console=err_console, argv=sys.argv)
    for table in summary_tables(frame, title=frame.attrs["path"]):
        out_console.print(table)
    out_console.print(f"results in {frame.attrs['path']}")
    if report:
        say_report([frame.attrs["path"]])


def say_report(run_dirs: list, out: Path | None = None) -> None:
    """Build the report of result sets of any kind (``reports.write``) and say where it is."""
    from hebbbench import reports

    written = reports.write(run_dirs, out=out)
    for warning in written.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for stem, why in written.omitted.items():
        err_console.print(f"{stem}: not drawn: {why}", markup=False, highlight=False, soft_wrap=True)
    out_console.print(f"report in {written.path} ({', '.join(written.files)})")


@app.command("report")
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Result set folders (each with results.csv and env.json).",
                                                   show_default=False)],
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default ./reports/<run-id>, or the run ids "
                                                     "joined by + for several sets).")] = None,
) -> None:
    """Figures, tables and environment of one or several result sets: report.md, report.html, PNG and SVG.

    Several sets (e.g. a CPU run and a GPU run) are merged, one panel per device/run and dtype.
    Shards of one grid (run --shard i/n, e.g. on several machines) merge into one run; shards of
    different grids, or one shard given twice, are refused; missing shards are a warning.
    """
    say_report(run_dirs, out=out)


@app.command()
def reproduce(
    networks: Annotated[str, typer.Option(help="6layer, 10layer, vgg11, vgg16 (comma separated).")] = "6layer",
    rules: Annotated[str, typer.Option(help="Rules, comma separated.")] = "swta,hpca",
    impls: Annotated[str, typer.Option(help="Implementation variants, e.g. naive:group_size=8,fh.")]
    = "naive:group_size=8,naive:group_size=128,fh",
    devices: Annotated[str, typer.Option(help="cpu, cuda, cuda:N (comma separated; one result set each).")] = "auto",
    batches: Annotated[int, typer.Option(help="Mini-batches timed per network (k).")] = 2,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Real datasets here (default: synthetic).")]
    = None,
    workers: Annotated[int, typer.Option(help="DataLoader workers for real data.")] = 0,
    max_naive_seconds: Annotated[float, typer.Option("--max-naive-seconds",
                                                     help="Time a naive call only if predicted below.")] = 2.5,
    time_budget: Annotated[float, typer.Option("--time-budget", help="Seconds per network for naive work "
                                                                    "(0: no limit).")] = 100.0,
    seed: Annotated[int, typer.Option(help="Seed of weights and synthetic data.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Result folder (default ./results/<run-id>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Finish an interrupted network set: the (network, rule) "
                                                        "cases it lacks, with its own settings.")] = None,
    report: Annotated[bool, typer.Option(help="Write the report to ./reports/<run-id>/.")] = True,
) -> None:
    """Hebbian training of the paper's networks: epoch time of naive against FastHebb, beside the claims.

    Each (network, rule) case is appended to the result set as it finishes; an interrupted run
    is finished with --resume DIR.
    """
    from hebbbench import api
    from hebbbench.reports import reproduction

    config = api.ReproduceConfig(
        networks=split(networks), rules=split(rules), impls=split(impls), devices=split(devices), batches=batches,
        data_root=None if data_root is None else str(data_root), workers=workers,
        max_naive_seconds=max_naive_seconds, time_budget=time_budget, seed=seed)
    with err_console.status("reproduce") as status:
        paths = api.reproduce(None if resume is not None and config == api.ReproduceConfig() else config, out=out,
                              resume=resume, argv=sys.argv,
                              progress=lambda device, event: status.update(f"{device}: {event}"))
    for path in paths:
        out_console.print(f"results in {path}")
        _, frames = reproduction.load(path)
        for _, row in reproduction.headline_rows(frames["steps"]).iterrows():
            out_console.print(f"  {row['network']} {row['rule']}: {reproduction.baseline_label(frames['steps'])} "
                              f"epoch {row['naive_epoch_s']:.1f} s, fh epoch {row['fh_epoch_s']:.2f} s, "
                              f"speedup {row['speedup']:.1f}x" + (" (estimated)" if row["estimated"] else ""))
        if report:
            say_report([path])


@app.command()
def scale(
    network: Annotated[str, typer.Option(help="Network (6layer, 10layer, vgg11, vgg16).")] = "6layer",
    width: Annotated[float, typer.Option(help="Every layer's output channels times this (a smaller copy).")] = 1.0,
    input_size: Annotated[Optional[int], typer.Option("--input-size", help="Image side (default: the "
                                                                           "network's).")] = None,
    rules: Annotated[str, typer.Option(help="Rules, comma separated.")] = "swta,hpca",
    impls: Annotated[str, typer.Option(help="Implementations, comma separated (each timed for the rules that "
                                            "have it), with options if any: naive:group_size=8.")] = "fh,naive",
    devices: Annotated[str, typer.Option(help="cpu (gloo, threads split over the ranks) and/or cuda (NCCL, one "
                                              "GPU per rank), comma separated.")] = "cpu",
    world_sizes: Annotated[Str, typer.Option("--world-sizes", help="Processes, e.g. 1,2,4 (default: 1 and powers "
                                                                   "of two up to the cores or GPUs; under "
                                                                   "torchrun up to its processes).")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Global batch (strong scaling) or per-rank batch (weak); "
                                                      "default: the network's (64 for 6layer).")] = None,
    scaling: Annotated[str, typer.Option(help="strong: the global batch fixed and split over the ranks (the "
                                              "paper's training, data-parallel); weak: each rank a whole "
                                              "batch.")] = "strong",
    steps: Annotated[int, typer.Option(help="Timed steps per case (after warm-up).")] = 10,
    warmup: Annotated[float, typer.Option(help="Warm-up seconds per case (at least one step).")] = 1.0,
    reduce: Annotated[str, typer.Option(help="bucket: one all-reduce per step; layer: one per layer.")] = "bucket",
    seed: Annotated[int, typer.Option(help="Seed of the weights and the synthetic images.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per device and world size; then the ranks are "
                                                "ended and the rest recorded as errors.")] = 1800.0,
    out: Annotated[Optional[Path], typer.Option(help="Result folder (default ./results/scale-...).")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="Write the report into ./reports/<run-id>/.")] = True,
) -> None:
    """Data-parallel Hebbian training at several world sizes: step time, throughput, efficiency, communication.

    Spawns the ranks itself (gloo on the CPU, NCCL on GPUs); under torchrun (several nodes),
    run `torchrun ... -m hebbbench.distributed scale ...` instead: one rank per process.
    """
    from hebbbench import api
    from hebbbench.suites import scale as scale_mod

    config = scale_mod.ScaleConfig(
        network=network, width=width, input_size=input_size, rules=tuple(split(rules)), impls=tuple(split(impls)),
        devices=tuple(split(devices)), world_sizes=tuple(split_ints(world_sizes, "world sizes") or ()), batch=batch,
        scaling=scaling, steps=steps, warmup_s=warmup, reduce=reduce, seed=seed, timeout_s=timeout)
    frame = api.scale(config, out=out, argv=sys.argv,
                      progress=lambda text: err_console.print(text, markup=False, highlight=False))
    if frame is None:  # a torchrun rank other than 0
        return
    out_console.print(scale_mod.summary_table(frame))
    out_console.print(f"results in {frame.attrs['path']}")
    if report:
        say_report([frame.attrs["path"]])


@app.command()
def accuracy(
    dataset: Annotated[str, typer.Option(help="digits (scikit-learn's bundled 8x8 digits, no download), or "
                                              "cifar10, cifar100, tinyimagenet, imagenet under --data-root.")]
    = "digits",
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Real datasets here (never "
                                                                          "downloaded).")] = None,
    max_images: Annotated[Optional[int], typer.Option("--max-images", help="A stratified subset of a "
                                                                           "--data-root set.")] = None,
    network: Annotated[str, typer.Option(help="6layer, 10layer, vgg11, vgg16.")] = "6layer",
    width: Annotated[float, typer.Option(help="Every Hebbian layer's channels times this.")] = 0.125,
    depth: Annotated[int, typer.Option(help="Train the first DEPTH Hebbian layers; the classifier reads the "
                                            "last.")] = 2,
    rules: Annotated[str, typer.Option(help="Rules, comma separated.")] = "swta,hpca",
    impls: Annotated[str, typer.Option(help="Implementations trained on every seed, comma separated.")] = "fh,naive",
    finetune_impls: Annotated[str, typer.Option("--finetune-impls", help="Implementations whose Hebbian "
                                                "weights are also fine-tuned by backprop.")] = "fh",
    parity: Annotated[bool, typer.Option("--parity/--no-parity", help="Run the parity gate (every "
                                         "implementation against fh, first seed).")] = True,
    parity_impls: Annotated[Str, typer.Option("--parity-impls", help="Implementations the parity gate trains "
                                              "(default: every one registered for the rule that runs on the "
                                              "device, but loop).")] = None,
    fractions: Annotated[str, typer.Option(help="Label fractions in (0, 1], comma separated.")] = "0.02,0.05,0.2,1",
    seeds: Annotated[str, typer.Option(help="Seeds, comma separated.")] = "0,1,2",
    epochs: Annotated[int, typer.Option(help="Hebbian epochs.")] = 1,
    hebbian_images: Annotated[Optional[int], typer.Option("--hebbian-images", help="Images per Hebbian epoch "
                                                          "(0: the whole training split).")] = 512,
    batch: Annotated[int, typer.Option(help="Hebbian mini-batch.")] = 64,
    lr: Annotated[float, typer.Option(help="Hebbian learning rate (HPCA: over mean |x|^2 of each layer's "
                                           "input).")] = 0.5,
    probe_steps: Annotated[int, typer.Option("--probe-steps", help="SGD steps of the classifier.")] = 100,
    backprop_steps: Annotated[int, typer.Option("--backprop-steps", help="SGD steps of backprop (baseline and "
                                                "fine-tuning).")] = 40,
    probe_every: Annotated[int, typer.Option("--probe-every", help="Hebbian steps between the accuracy "
                                             "curve's points.")] = 4,
    curve_fraction: Annotated[float, typer.Option("--curve-fraction", help="Label fraction of the time-to-"
                                                  "accuracy curve.")] = 0.2,
    target: Annotated[float, typer.Option(help="Accuracy whose time is reported (time to accuracy).")] = 0.9,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Held-out share of each class.")]
    = 1 / 3,
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the held-out split.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 1,
    out: Annotated[Optional[Path], typer.Option(help="Result folder (default ./results/accuracy-...).")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="Write the report into ./reports/<run-id>/.")] = True,
) -> None:
    """Speed that still learns: accuracy against label fraction per rule, implementation and baseline.

    Hebbian training without labels, then a classifier (and backprop fine-tuning) on a fraction of
    the labels, beside backprop alone and random features; the parity gate holds every
    implementation to fh's weights and accuracy. Results go to ./results/accuracy-<device>-<time>/.
    """
    from hebbbench import api
    from hebbbench.suites import accuracy as accuracy_mod

    try:
        fraction_values = tuple(float(f) for f in split(fractions))
    except ValueError:
        raise UserError(f"--fractions must be numbers in (0, 1] separated by commas, got {fractions!r}") from None
    config = accuracy_mod.AccuracyConfig(
        dataset=dataset, data_root=None if data_root is None else str(data_root), max_images=max_images,
        network=network, width=width, depth=depth, rules=tuple(split(rules)), impls=tuple(split(impls)),
        finetune_impls=tuple(split(finetune_impls)), parity=parity,
        parity_impls=None if parity_impls is None else tuple(split(parity_impls)), fractions=fraction_values,
        seeds=tuple(_seeds(seeds)), epochs=epochs, hebbian_images=hebbian_images or None, batch=batch, lr=lr,
        probe_steps=probe_steps, backprop_steps=backprop_steps, probe_every=probe_every,
        curve_fraction=curve_fraction, target=target, test_fraction=test_fraction, split_seed=split_seed,
        device=device, threads=threads or None)
    path = api.accuracy(config, out=out, argv=sys.argv,
                        progress=lambda text: err_console.print(text, markup=False, highlight=False))
    out_console.print(f"results in {path}")
    if report:
        say_report([path])


def _seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; seeds are integers >= 0."""
    try:
        values = [int(t) for t in split(text)]
    except ValueError:
        raise UserError(f"--seeds must be integers >= 0 separated by commas, got {text!r}") from None
    return values


@app.command()
def profile(
    rule: Annotated[str, typer.Option(help="Rule, e.g. hpca, with options if any: swta:temperature=0.05.")],
    layer: Annotated[str, typer.Option(help="conv:C_in,C_out,kernel,input[,stride,padding], linear:D,M, or a "
                                            "preset's layer PRESET:SWEEP/LAYER (e.g. paper:6layer/conv2).")],
    impl: Annotated[str, typer.Option(help="Implementation, e.g. fh, loop, naive:group_size=8.")] = "fh",
    batch: Annotated[Optional[int], typer.Option(help="Batch size (default: the preset sweep's, for a "
                                                      "preset's layer).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, float64, bfloat16, float16.")] = "float32",
    what: Annotated[str, typer.Option(help="update (the rule's ΔW) or step (a training step of the "
                                           "layer).")] = "update",
    tool: Annotated[str, typer.Option(help="torch (Chrome trace and operator table) or py-spy (speedscope "
                                           "and flame graph; pip install 'hebbbench[profile]').")] = "torch",
    repeat: Annotated[int, typer.Option(help="torch: calls profiled (after 2 warm-up calls).")] = 5,
    seconds: Annotated[float, typer.Option(help="py-spy: seconds the case is called in the recorded process "
                                               "(after importing torch and building the inputs).")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic inputs.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (torch.set_num_threads).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default ./profiles/<case>/).")] = None,
) -> None:
    """Run one case under a profiler: the same inputs and call that hebbbench run times."""
    from hebbbench import profiling
    from hebbbench.rules.specs import parse_spec

    if tool not in profiling.TOOLS:
        raise UserError(f"unknown tool {tool!r}; allowed: {', '.join(profiling.TOOLS)}")
    if repeat < 1 or not (math.isfinite(seconds) and seconds > 0) or (threads is not None and threads < 1):
        raise UserError("--repeat and --threads must be >= 1 and --seconds a finite number > 0")
    spec, preset_batch = profiling.parse_layer(layer)
    if batch is None and preset_batch is None:
        raise UserError("give --batch (the batch size) for a conv: or linear: layer")
    rule_spec, impl_spec = parse_spec(rule, "rule", "--rule"), parse_spec(impl, "impl", "--impl")
    target = profiling.Target(rule=rule_spec.name, impl=impl_spec.name, layer=spec,
                              batch=batch if batch is not None else preset_batch,
                              device=profiling.resolve_device(device), dtype=dtype, what=what,
                              options={**rule_spec.kwargs, **impl_spec.kwargs}, seed=seed, threads=threads)
    profiling.check(target)
    folder = out or profiling.PROFILES / target.slug
    if tool == "torch":
        files, table = profiling.profile_torch(target, folder, repeat=repeat)
        out_console.print(table, markup=False, highlight=False, soft_wrap=True)
    else:
        files = profiling.profile_py_spy(target, folder, seconds=seconds)
    (folder / "case.json").write_text(target.as_json() + "\n")
    out_console.print("wrote " + ", ".join(str(f) for f in files))


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="The baseline result set, e.g. results/baselines/ci-cpu.")],
    new: Annotated[Path, typer.Argument(help="The result set to judge (a run of the same grid).")],
    factor: Annotated[float, typer.Option(help="Smallest slowdown (or speedup) that counts, as a ratio.")] = 1.25,
    alpha: Annotated[float, typer.Option(help="Significance level of the Mann–Whitney U test.")] = 0.01,
    floor: Annotated[Optional[float], typer.Option(
        help="Seconds: medians below this are not judged (default: 50 µs on a CPU, 5 µs on a GPU).")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Write a markdown summary to FILE ('-': print it).")] = None,
) -> None:
    """Compare two result sets by normalised time. Exit 0: no regression; 1: a case is slower; 2: an error."""
    from hebbbench.gate import compare as compare_mod

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


@app.command()
def selfcheck(
    devices: Annotated[str, typer.Option(help="The device to validate: cuda (cuda:0), cuda:N or cpu.")] = "cuda",
    out: Annotated[Optional[Path], typer.Option(help="Result folder (default ./results/selfcheck-<device>-<time>).")]
    = None,
    baselines: Annotated[Path, typer.Option(help="Folder of the gate's baselines (ci-<device>).")]
    = Path("results/baselines"),
    budget: Annotated[Optional[float], typer.Option(help="Seconds for the whole check (default: 360 on a GPU, "
                                                         "300 on the CPU).")] = None,
    report: Annotated[bool, typer.Option(help="Write the reports of the quick, reproduce and beyond sets.")] = True,
) -> None:
    """Validate a machine end to end: every implementation against the float64 reference, the quick
    preset, the ci preset gated against the device's baseline, the paper's networks and the beyond set.

    One result folder; a short verdict; exit 1 if anything is wrong.
    """
    from hebbbench import selfcheck as selfcheck_mod

    check = selfcheck_mod.run(devices, out=out, baselines=baselines, budget_s=budget, reports=report,
                              say=lambda text: err_console.print(text, markup=False, highlight=False))
    for line in selfcheck_mod.verdict_lines(check):
        out_console.print(line, markup=False, highlight=False, soft_wrap=True)
    out_console.print(f"selfcheck {'PASSED' if check.passed else 'FAILED'}: {check.path / 'verdict.md'}",
                      markup=False, highlight=False)
    raise typer.Exit(check.exit_code)


baseline_app = typer.Typer(no_args_is_help=True, help="The baseline result set that CI compares against.")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("update")
def baseline_update(
    preset: Annotated[Str, typer.Option("--preset", "-p", help="Preset grid to record; default ci.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="A grid TOML file instead.")] = None,
    out: Annotated[Path, typer.Option(help="The baseline folder to replace.")] = Path("results/baselines/ci-cpu"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even if it is not a gate set of the same "
                                                        "grid.")] = False,
) -> None:
    """Run a preset and replace the baseline folder with it, only once the run has succeeded."""
    from hebbbench.api import RunConfig
    from hebbbench.gate.baseline import PRESET, update
    from hebbbench.reports.summary import summary_tables

    frame = update(RunConfig(preset=preset or (None if config else PRESET), config=config), out, force=force,
                   say=lambda text: err_console.print(text, markup=False, highlight=False, soft_wrap=True),
                   progress=progress, console=err_console, argv=sys.argv)
    for table in summary_tables(frame, title=str(out)):
        out_console.print(table)
    out_console.print(f"baseline {out} replaced; commit it to make it the one CI compares against")


@app.command("list")
def list_things() -> None:
    """Presets, rules and implementations, and the devices seen here."""
    from hebbbench import rules as rules_mod
    from hebbbench.measure.devices import cuda_count, device_name
    from hebbbench.suites.grid import load_grid, preset_names

    presets = Table(title="presets (hebbbench run --preset NAME)")
    presets.add_column("preset")
    presets.add_column("description")
    for name in preset_names():
        presets.add_row(escape(name), escape(load_grid(name).description))
    out_console.print(presets)
    impls = Table(title="rules and implementations")
    for column in ("rule", "impl", "devices", "options", "summary"):
        impls.add_column(column)
    for rule, impl in rules_mod.available():
        cls = rules_mod.lookup(rule, impl)
        impls.add_row(*map(escape, (rule, impl, ",".join(cls.device_types),
                                    ", ".join(f"{k}={v}" for k, v in cls.default_options().items()), cls.summary)))
    out_console.print(impls)
    seen = Table(title="devices seen")
    seen.add_column("device")
    seen.add_column("name")
    for device in ["cpu", *(f"cuda:{i}" for i in range(cuda_count()))]:
        seen.add_row(device, escape(device_name(device)))
    out_console.print(seen)


#: typer's exit status for Ctrl-C (it turns KeyboardInterrupt into this before main sees it).
INTERRUPTED = 130


#: click's base of a bad option or argument (typer vendors click in some versions, not in others).
CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    try:
        code = app(standalone_mode=False)  # errors come here, to be said in one line
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except CLICK_ERROR as exc:  # a bad option: what typer itself would print
        try:
            from typer import rich_utils

            rich_utils.rich_format_error(exc)
        except ImportError:  # pragma: no cover - typer without rich
            exc.show()
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    if code == INTERRUPTED:
        err_console.print("interrupted: the finished cases are saved; continue with the same command's --resume DIR "
                          "(hebbbench run or hebbbench reproduce)")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

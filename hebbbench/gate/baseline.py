"""``hebbbench baseline update``: record the result set that CI compares against, on purpose.

The preset is run into a new folder beside the baseline; only when the run has finished
with every case ``ok`` does that folder take the baseline's place (two renames, the old
folder removed afterwards). A failed or interrupted run leaves the baseline as it was.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from hebbbench import api
from hebbbench.errors import UserError
from hebbbench.store import ENV, RESULTS, Kind, open_set

PRESET = "ci"
FOLDER = Path("results/baselines/ci-cpu")


def update(run_config: api.RunConfig | None = None, out: str | Path = FOLDER, force: bool = False,
           say: Callable[[str], None] | None = None, **run_options: Any) -> pd.DataFrame:
    """Run ``run_config`` (default: the ci preset) and replace the folder ``out`` with its result set; returns
    results.csv as a DataFrame. ``out`` must be a gate set of the same grid (or absent) unless ``force``.
    ``say(text)`` hears what is recorded once the target is accepted; ``run_options`` (progress, console,
    argv) go to :func:`hebbbench.api.run`."""
    run_config = run_config or api.RunConfig(preset=PRESET)
    out = Path(out)
    if out.exists() and not (out / ENV).is_file() and any(out.iterdir()):
        raise UserError(f"refusing to replace {out}: it is not a result set")
    grid = run_config.grid()  # a bad grid fails before anything is created
    if (out / ENV).is_file() and not force:
        info = open_set(out)
        recorded = info.env.get("grid", {}).get("name") if isinstance(info.env.get("grid"), dict) else None
        if info.kind != Kind.GRID or recorded != grid.name or not (out / RESULTS).is_file():
            what = f"a grid set of grid {recorded!r}" if info.kind == Kind.GRID else f"a {info.kind.value} set"
            raise UserError(f"refusing to replace {out}: it holds {what}, not a gate set of grid {grid.name!r}; "
                            "give --force to replace it anyway")
    if say is not None:
        say(f"recording {grid.name} to replace {out} once it has run")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.new-*"):  # left by an update that was killed
        if not _alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    staging = out.parent / f".{out.name}.new-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        frame = api.run(run_config, out=staging, **run_options)
        failed = frame[frame["status"] != "ok"]
        if len(failed):
            cases = ", ".join(f"{r.case_id} [{r.label}] {r.status}" for r in failed.head(3).itertuples())
            raise UserError(f"baseline {out} left as it was: {len(failed)} case(s) did not run ok ({cases})")
        _replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    frame.attrs["path"] = str(out)
    return frame


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` still runs (an update in progress keeps its staging folder)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _replace(new: Path, out: Path) -> None:
    """Put the folder ``new`` at ``out``, removing what was there."""
    if not out.exists():
        os.rename(new, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(new, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old)

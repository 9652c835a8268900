"""Result sets read for a report, merged into one table.

Several sets (e.g. one from a CPU machine, one from a GPU machine) are merged by
concatenating their rows; ``origin`` (run id and device) tells them apart, and every
figure shows one panel per origin and dtype. Sets from different grids are fine: the
report says so and shows them side by side.

Shards (``hebbbench run --shard i/n``, e.g. one per machine) are parts of one grid: they
merge into one run, labelled ``<grid>-shards-1+2of2``, so that each device gets one panel
with every case once. Shards must come from the same grid (``grid_fingerprint`` in
env.json), split the same way, each index once; a missing shard is a warning (its cases
are absent), not an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hebbbench.errors import UserError
from hebbbench.reports.markup import text
from hebbbench.suites.grid import Variant
from hebbbench.store import ResultSet

#: separates the run id and the device in ``origin``.
ORIGIN_SEP = " · "


@dataclass
class Source:
    """One result set: its folder, env.json and rows."""

    path: Path
    env: dict[str, Any]
    frame: pd.DataFrame
    merged_id: str | None = None  # the shards of one grid share it

    @property
    def run_id(self) -> str:
        return str(self.env.get("run_id") or self.path.name)

    @property
    def label(self) -> str:
        """What the report calls the run: its run id, or for a shard the merged shards' id."""
        return self.merged_id or self.run_id

    @property
    def shard(self) -> tuple[int, int] | None:
        shard = self.env.get("shard")
        return (int(shard["index"]), int(shard["count"])) if shard else None

    @property
    def fingerprint(self) -> str:
        return str(self.env.get("grid_fingerprint") or "?")

    @property
    def grid_name(self) -> str:
        return str(self.env.get("grid", {}).get("name", "?"))

    def ceiling(self, device: str, dtype: str) -> dict[str, Any] | None:
        """The matmul and copy ceilings measured in this run for ``device``/``dtype``, if any."""
        return self.env.get("ceilings", {}).get(f"{device}/{dtype}")


@dataclass
class Data:
    """The merged rows of one or several result sets, with the columns the figures use.

    Added columns: ``origin`` (run id · device), ``layer_key`` (the layer's name, or
    sweep/name where names repeat across sweeps), ``work`` (N·M·D), ``torch``; ``rule``
    carries the rule's options, e.g. swta(T=0.1), so that variants of a rule stay apart.
    """

    sources: list[Source]
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # also in notes; the CLI prints them

    @property
    def run_ids(self) -> list[str]:
        return [s.label for s in self.sources]

    def source_of(self, origin: str) -> Source:
        """The result set the rows of ``origin`` come from."""
        index = self.frame.loc[self.frame["origin"] == origin, "source"].iloc[0]
        return self.sources[int(index)]

    def panels(self, frame: pd.DataFrame | None = None) -> list[tuple[str, str]]:
        """(origin, dtype) pairs with rows, in the order the rows came."""
        frame = self.frame if frame is None else frame
        return list(dict.fromkeys(zip(frame["origin"], frame["dtype"])))

    def title(self, origin: str, dtype: str) -> str:
        """Device name, device, dtype and torch version of a panel (and the run id when several)."""
        part = self.frame[(self.frame["origin"] == origin) & (self.frame["dtype"] == dtype)].iloc[0]
        title = f"{short_device_name(part['device_name'])} ({part['device']}), {dtype}, torch {part['torch']}"
        if self.frame["run_id"].nunique() > 1:
            title += f"\n{part['run_id']}"
        return title

    def ceiling(self, origin: str, dtype: str) -> dict[str, Any] | None:
        part = self.frame[self.frame["origin"] == origin].iloc[0]
        return self.source_of(origin).ceiling(part["device"], dtype)


def short_device_name(name: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon Processor'; 'NVIDIA H100 80GB HBM3' unchanged."""
    return " ".join(re.sub(r"\((R|TM|tm|r)\)", "", str(name)).split())


def read(path: str | Path) -> Source:
    """One result set; UserError when the folder is not one."""
    rs = ResultSet.open(path, "a report of several sets")
    env, frame = rs.env(), rs.frame()
    doubled = rs.doubled(frame)
    if doubled:
        raise UserError(doubled)
    return Source(rs.path, env, frame)


def load(paths: list[str | Path]) -> Data:
    """Read and merge result sets (rows concatenated; ``origin`` keeps run and device apart)."""
    if not paths:
        raise UserError("give at least one result set folder")
    sources: list[Source] = []
    for p in paths:
        source = read(p)
        if not any(s.path.resolve() == source.path.resolve() for s in sources):
            sources.append(source)
    shard_notes, shard_warnings = merge_shards(sources)
    seen: dict[tuple[str, str], Path] = {}
    for source in sources:
        for device in dict.fromkeys(source.frame["device"].astype(str)):
            key = (source.run_id, device)
            if key in seen:
                raise UserError(f"{seen[key]} and {source.path} both hold run {source.run_id!r} on {device}; "
                                "give each run once")
            seen[key] = source.path
    parts = []
    for index, s in enumerate(sources):
        f = s.frame.copy()
        if f.empty:
            continue
        f["source"] = index
        f["run_id"] = s.label  # the run id of the set (even for rows of an older schema); one id for shards
        f["torch"] = s.env.get("env", {}).get("torch", "?")
        parts.append(f)
    if not parts:
        raise UserError(f"no results in {', '.join(str(s.path) for s in sources)}: the run finished no case yet")
    frame = pd.concat(parts, ignore_index=True)
    frame["origin"] = frame["run_id"] + ORIGIN_SEP + frame["device"].astype(str)
    frame["work"] = frame["n"].astype(float) * frame["m"].astype(float) * frame["d"].astype(float)
    for flag in ("noisy", "unstable"):
        frame[flag] = frame[flag].map(lambda v: str(v).lower() == "true")
    for column in ("reason", "baseline"):  # text, "" where empty (an all-empty column reads as floats)
        frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else str(v))
    frame["layer_key"] = layer_keys(frame)
    frame["rule"] = [rule_label(r, o) for r, o in zip(frame["rule"], frame["rule_options"])]
    data = Data(sources, frame, notes=list(shard_notes), warnings=list(shard_warnings))
    data.notes.extend(shard_warnings)
    grids = {s.grid_name for s in sources}
    if len(sources) > 1 and len({_grid_signature(s.env) for s in sources}) > 1:
        data.notes.append(f"The result sets come from different grids ({', '.join(map(text, sorted(grids)))}): "
                          "their cases are shown side by side by device and run; a layer or batch size "
                          "missing from one of them is simply absent from its panels.")
    for source in sources:  # usable, but the report must say it is partial
        missing = ResultSet(source.path).missing(source.frame, source.env)
        if missing:
            data.warnings.append(missing)
            data.notes.append(text(missing))
    unfinished = [s.run_id for s in sources if s.env.get("status") != "complete"]
    if unfinished:
        data.notes.append(f"Not complete ({', '.join(map(text, unfinished))}): the run was interrupted or is still "
                          "running; only its finished cases are shown (continue it with "
                          "`hebbbench run --resume DIR`).")
    return data


def merge_shards(sources: list[Source]) -> tuple[list[str], list[str]]:
    """Give the shards among ``sources`` their merged id; (notes, warnings) for the report.

    UserError for shards of different grids, of one grid split different ways, a shard
    given twice, or a whole run of the grid given with its shards.
    """
    shards = [s for s in sources if s.shard]
    if not shards:
        return [], []
    first = shards[0]
    for s in shards[1:]:
        if s.fingerprint != first.fingerprint:
            raise UserError(f"{s.path} is shard {s.shard[0]}/{s.shard[1]} of another grid than {first.path} "
                            f"(grid {s.grid_name!r}, fingerprint {s.fingerprint}, against grid {first.grid_name!r}, "
                            f"fingerprint {first.fingerprint}): merge only shards of one grid")
        if s.shard[1] != first.shard[1]:
            raise UserError(f"{first.path} is shard {first.shard[0]}/{first.shard[1]} and {s.path} is shard "
                            f"{s.shard[0]}/{s.shard[1]} of the same grid: shards of one grid split in different "
                            "ways overlap; give the shards of one split")
    whole = [s for s in sources if not s.shard and s.env.get("grid_fingerprint") == first.fingerprint]
    if whole:
        raise UserError(f"{whole[0].path} holds the whole grid that the shards ({first.path}, ...) split: "
                        "give either the whole run or its shards")
    by_index: dict[int, Source] = {}
    for s in shards:
        if s.shard[0] in by_index:
            raise UserError(f"shard {s.shard[0]}/{s.shard[1]} of grid {s.grid_name!r} given twice: "
                            f"{by_index[s.shard[0]].path} and {s.path}; give each shard once")
        by_index[s.shard[0]] = s
    count = first.shard[1]
    indices = sorted(by_index)
    merged_id = f"{first.grid_name}-shards-{'+'.join(map(str, indices))}of{count}"
    for s in shards:
        s.merged_id = merged_id
    total = first.env.get("total_cases")
    covered = sum(int(s.env.get("cases") or 0) for s in shards)
    names = ", ".join(f"{i}/{count} (`{by_index[i].run_id}`)" for i in indices)
    notes = [f"Shards {names} of grid {first.grid_name} (fingerprint {first.fingerprint}) merged as "
             f"`{merged_id}`: {covered} of {total if total is not None else '?'} cases."]
    machines = {}
    for s in shards:
        for device, name in zip(s.frame["device"].astype(str), s.frame["device_name"].astype(str)):
            machines.setdefault(device, set()).add(name)
    for device, names_seen in machines.items():
        if len(names_seen) > 1:
            seen = ", ".join(map(text, sorted(names_seen)))
            notes.append(f"The shards ran on different {text(device)} models ({seen}); their "
                         "times share one panel but are not comparable across them.")
    missing = [i for i in range(1, count + 1) if i not in by_index]
    warnings = []
    if missing:
        absent = f"{total - covered} of its {total} cases" if total is not None else "their cases"
        warnings.append(f"Incomplete grid {first.grid_name}: shard{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(f'{i}/{count}' for i in missing)} missing; {absent} are absent from this "
                        "report.")
    return notes, warnings


def _grid_signature(env: dict[str, Any]) -> str:
    grid = dict(env.get("grid", {}))
    return repr({k: v for k, v in grid.items() if k not in ("description",)})


def rule_label(rule: str, options: Any) -> str:
    """The rule with its options as in case ids, e.g. swta(T=0.1); the name alone without options."""
    try:
        parsed = json.loads(options) if isinstance(options, str) and options else {}
    except json.JSONDecodeError:
        parsed = {}
    return Variant(rule, tuple(sorted(parsed.items()))).label


def layer_keys(frame: pd.DataFrame) -> pd.Series:
    """The layer's name; ``sweep/name`` for every layer when some name means different layers in
    different sweeps (all prefixed, so that each sweep's layers read alike)."""
    specs = frame.groupby("layer")["layer_spec"].nunique()
    sweeps = frame.groupby("layer")["sweep"].nunique()
    if not ((specs > 1) | (sweeps > 1)).any():
        return frame["layer"].copy()
    return frame["sweep"].astype(str) + "/" + frame["layer"].astype(str)

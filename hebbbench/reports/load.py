"""Result sets read for a report, merged into one table.

Several sets (e.g. one from a CPU machine, one from a GPU machine) are merged by
concatenating their rows; ``origin`` (run id and device) tells them apart, and every
figure shows one panel per origin and dtype. Sets from different grids are fine: the
report says so and shows them side by side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hebbbench.errors import UserError
from hebbbench.grid import Variant
from hebbbench.results import ResultSet

#: separates the run id and the device in ``origin``.
ORIGIN_SEP = " · "


@dataclass
class Source:
    """One result set: its folder, env.json and rows."""

    path: Path
    env: dict[str, Any]
    frame: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.env.get("run_id") or self.path.name)

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

    @property
    def run_ids(self) -> list[str]:
        return [s.run_id for s in self.sources]

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
        text = f"{short_device_name(part['device_name'])} ({part['device']}), {dtype}, torch {part['torch']}"
        if self.frame["run_id"].nunique() > 1:
            text += f"\n{part['run_id']}"
        return text

    def ceiling(self, origin: str, dtype: str) -> dict[str, Any] | None:
        part = self.frame[self.frame["origin"] == origin].iloc[0]
        return self.source_of(origin).ceiling(part["device"], dtype)


def short_device_name(name: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon Processor'; 'NVIDIA H100 80GB HBM3' unchanged."""
    return " ".join(re.sub(r"\((R|TM|tm|r)\)", "", str(name)).split())


def read(path: str | Path) -> Source:
    """One result set; UserError when the folder is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a result set: no such folder")
    rs = ResultSet.open(path)
    return Source(path, rs.env(), rs.frame())


def load(paths: list[str | Path]) -> Data:
    """Read and merge result sets (rows concatenated; ``origin`` keeps run and device apart)."""
    if not paths:
        raise UserError("give at least one result set folder")
    sources: list[Source] = []
    seen: dict[tuple[str, str], Path] = {}
    for p in paths:
        source = read(p)
        if any(s.path.resolve() == source.path.resolve() for s in sources):
            continue
        for device in dict.fromkeys(source.frame["device"].astype(str)):
            key = (source.run_id, device)
            if key in seen:
                raise UserError(f"{seen[key]} and {source.path} both hold run {source.run_id!r} on {device}; "
                                "give each run once")
            seen[key] = source.path
        sources.append(source)
    parts = []
    for index, s in enumerate(sources):
        f = s.frame.copy()
        if f.empty:
            continue
        f["source"] = index
        f["run_id"] = s.run_id  # the run id of the set, even for rows of an older schema
        f["torch"] = s.env.get("env", {}).get("torch", "?")
        parts.append(f)
    if not parts:
        raise UserError(f"no results in {', '.join(str(s.path) for s in sources)}: the run finished no case yet")
    frame = pd.concat(parts, ignore_index=True)
    frame["origin"] = frame["run_id"] + ORIGIN_SEP + frame["device"].astype(str)
    frame["work"] = frame["n"].astype(float) * frame["m"].astype(float) * frame["d"].astype(float)
    frame["noisy"] = frame["noisy"].map(lambda v: str(v).lower() == "true")
    for column in ("reason", "baseline"):  # text, "" where empty (an all-empty column reads as floats)
        frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else str(v))
    frame["layer_key"] = layer_keys(frame)
    frame["rule"] = [rule_label(r, o) for r, o in zip(frame["rule"], frame["rule_options"])]
    data = Data(sources, frame)
    grids = {s.grid_name for s in sources}
    if len(sources) > 1 and len({_grid_signature(s.env) for s in sources}) > 1:
        data.notes.append(f"The result sets come from different grids ({', '.join(sorted(grids))}): "
                          "their cases are shown side by side by device and run; a layer or batch size "
                          "missing from one of them is simply absent from its panels.")
    unfinished = [s.run_id for s in sources if s.env.get("status") != "complete"]
    if unfinished:
        data.notes.append(f"Not complete ({', '.join(unfinished)}): the run was interrupted or is still "
                          "running; only its finished cases are shown (continue it with "
                          "`hebbbench run --resume DIR`).")
    return data


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
    """The layer's name, or ``sweep/name`` when the name means different layers in different sweeps."""
    specs = frame.groupby("layer")["layer_spec"].nunique()
    sweeps = frame.groupby("layer")["sweep"].nunique()
    ambiguous = set(specs[(specs > 1) | (sweeps > 1)].index)
    return frame.apply(lambda r: f"{r['sweep']}/{r['layer']}" if r["layer"] in ambiguous else r["layer"], axis=1)

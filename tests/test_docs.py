"""docs/design.md stays the document the code cites, and its sizes stay those of the code."""

from __future__ import annotations

import re
from pathlib import Path

from hebbbench.nn.networks import layer_shapes

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
CITATION = re.compile(r"docs/design\.md §(\d+)(?:–(\d+))?")


def cited_sections() -> dict[int, list[str]]:
    """Section number -> the files (relative to the repository) that cite it."""
    cited: dict[int, list[str]] = {}
    paths = [ROOT / "README.md", *sorted((ROOT / "hebbbench").rglob("*.py")),
             *sorted((ROOT / "baselines").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
    for path in paths:
        for first, last in CITATION.findall(path.read_text()):
            for section in range(int(first), int(last or first) + 1):
                cited.setdefault(section, []).append(str(path.relative_to(ROOT)))
    return cited


def test_every_citation_names_a_section_of_the_design_document():
    sections = {int(n) for n in re.findall(r"^## §(\d+) ", DESIGN.read_text(), flags=re.M)}
    cited = cited_sections()
    assert {1, 2, 3, 4} <= set(cited)  # the code does cite it
    missing = {s: files for s, files in cited.items() if s not in sections}
    assert not missing, missing


def test_the_6layer_table_matches_the_network_spec():
    rows = {}
    for line in DESIGN.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"(conv|fc)\d", cells[0]):
            rows[cells[0]] = tuple(int(c.split("=")[-1].strip()) for c in cells[1:])
    expected = {s.name: (s.n, s.d, s.m) for s in layer_shapes("6layer")}
    assert rows == expected

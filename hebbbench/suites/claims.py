"""The published speedup claims for FastHebb, as data, to set beside measured numbers.

The paper's own tables are not public here (docs/design.md §3); these are the headline
claims, each with its source and how it is qualified ("up to", "more than").
"""

from __future__ import annotations

import pandas as pd

CLAIMS: list[dict[str, object]] = [
    {"source": "Lagani, Falchi, Gennaro, Amato, Neurocomputing 2024 (FastHebb)", "venue": "Neurocomputing",
     "year": 2024, "qualifier": "up to", "speedup": 70.0, "claim": "up to 70x faster Hebbian training"},
    {"source": "FastHebb, conference version, SISAP 2022", "venue": "SISAP", "year": 2022,
     "qualifier": "up to", "speedup": 50.0, "claim": "up to 50x faster Hebbian training"},
    {"source": "the authors' code repository", "venue": "repository", "year": None,
     "qualifier": "more than", "speedup": 20.0, "claim": "more than 20x faster Hebbian training"},
]


def published_claims() -> pd.DataFrame:
    """One row per published claim: source, venue, year, qualifier, speedup, claim."""
    frame = pd.DataFrame(CLAIMS, columns=["source", "venue", "year", "qualifier", "speedup", "claim"])
    return frame.astype({"year": "Int64"})

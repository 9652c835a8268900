"""Per-sample reference implementations (installed as ``hebbbench.baselines``).

- ``naive``: the original, pre-FastHebb formulation — per group of G neurons, the
  per-sample deltas as an N×G×D tensor reduced over N (``group_size``, default 8).
- ``loop``: the literal per-sample, per-neuron loop of docs/design.md §2, for small shapes.

The folder is top-level in the repository (``baselines/``) but installed under the
hebbbench namespace, so its import name cannot collide with other packages.
"""

from hebbbench.baselines import loop, naive  # noqa: F401  (registers the implementations)

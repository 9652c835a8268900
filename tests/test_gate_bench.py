"""The CI gate itself, repeated (pytest -m bench --repeats 20): the ci preset, run afresh, against
the committed baseline results/baselines/ci-cpu — identical code is never slower, a planted 2x
slowdown of HPCA-fh always is. About 25 s per run on a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

import hebbbench
from conftest import planted_slowdown
from hebbbench.gate.compare import compare

pytestmark = pytest.mark.bench
BASELINE = Path(__file__).resolve().parent.parent / "results" / "baselines" / "ci-cpu"


def test_ci_preset_is_not_slower_than_the_committed_baseline(repeat, tmp_path):
    hebbbench.run(preset="ci", out=tmp_path / "ci")
    result = compare(BASELINE, tmp_path / "ci")
    assert not result.regressions, result.frame().to_string()
    assert result.exit_code == 0


def test_planted_regression_in_the_ci_preset_is_slower(repeat, tmp_path):
    """HPCA's update twice as much work: its update cases, and the fc step that the update
    dominates, are slower. The conv step's forward convolution and unfolding dilute the update
    (it read 1.35-1.84x in 20 runs): it must not read faster, no verdict is required."""
    with planted_slowdown():
        hebbbench.run(preset="ci", out=tmp_path / "ci")
    result = compare(BASELINE, tmp_path / "ci")
    statuses = {v.case_id: v.status for v in result.verdicts}
    table = result.frame().to_string()
    for case_id in ("hpca/hpca/conv/b8/float32/cpu/update", "hpca/hpca/fc/b8/float32/cpu/update",
                    "hpca/hpca/fc/b8/float32/cpu/step"):
        assert statuses[case_id] == "slower", table
    assert statuses["hpca/hpca/conv/b8/float32/cpu/step"] != "faster", table
    assert "slower" not in {s for case_id, s in statuses.items() if case_id.startswith("swta/")}, table
    assert result.exit_code == 1

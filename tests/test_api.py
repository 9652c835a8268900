"""The public API: registry lookups, options, shapes and the documented ValueErrors."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import rule_inputs
from hebbbench import rules


def test_available_lists_paper_rules_and_impls():
    pairs = rules.available()
    for rule in ("swta", "hpca"):
        for impl in ("fh", "naive", "loop"):
            assert (rule, impl) in pairs
    assert pairs == sorted(pairs)
    assert rules.available("hpca", "n*") == [("hpca", "naive")]


def test_get_passes_options():
    r = rules.get("swta", impl="fh", temperature=0.5)
    assert r.temperature == 0.5
    assert rules.get("hpca", impl="naive", group_size=128).group_size == 128
    assert rules.get("hpca", impl="naive").group_size == 8


@pytest.mark.parametrize("call, message", [
    (lambda: rules.get("oja2", impl="fh"), "unknown rule 'oja2'; allowed: .*hpca.*swta"),
    (lambda: rules.get("swta", impl="fast"),
     "unknown impl 'fast' for rule 'swta'; allowed: " + re.escape(", ".join(rules.impls("swta")))),
    (lambda: rules.get("swta", impl="fh", group_size=8), "unknown option.*group_size.*allowed: temperature"),
    (lambda: rules.get("swta", impl="fh", temperature=0), "temperature must be a number > 0"),
    (lambda: rules.get("hpca", impl="naive", group_size=0), "group_size must be an integer >= 1"),
])
def test_bad_names_and_options_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("shapes", [((4, 3), (4, 2), (2, 5)), ((4, 3), (5, 2), (2, 3)),
                                    ((4, 3), (4, 2), (3, 3)), ((4, 3, 1), (4, 2), (2, 3))])
def test_mismatched_shapes_name_the_expected_shapes(shapes):
    x, y, w = (torch.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=r"expected x \(N, D\), y \(N, M\), w \(M, D\).*got x"):
        rules.get("hpca").update(x, y, w)


def test_result_has_dtype_and_device_of_w():
    x, y, w = rule_inputs(8, 3, 5, seed=0, dtype=torch.float64)
    dw = rules.get("swta").update(x, y, w.float())
    assert dw.dtype == torch.float32 and dw.device == w.device and dw.shape == (3, 5)


def test_user_registered_impl_is_picked_up():
    @rules.register("hpca", "test-user")
    class Mine(rules.HPCA):
        def delta(self, x, y, w):
            return rules.get("hpca", "fh").delta(x, y, w)

    try:
        assert ("hpca", "test-user") in rules.available()
        assert isinstance(rules.get("hpca", impl="test-user"), Mine)
        with pytest.raises(ValueError, match="already registered"):
            rules.register("hpca", "test-user")(type("Other", (rules.HPCA,), {}))
    finally:
        rules.unregister("hpca", "test-user")
    assert ("hpca", "test-user") not in rules.available()


def test_register_requires_the_rule_class():
    with pytest.raises(TypeError, match="must subclass the swta rule class"):
        rules.register("swta", "bad")(rules.HPCA)

"""The public API: registry lookups, options, shapes and the documented ValueErrors."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import registry_state, rule_inputs
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


def test_user_registered_impl_is_picked_up(register):
    @register("hpca", "test-user")
    class Mine(rules.HPCA):
        def delta(self, x, y, w):
            return rules.get("hpca", "fh").delta(x, y, w)

    assert ("hpca", "test-user") in rules.available()
    assert isinstance(rules.get("hpca", impl="test-user"), Mine)
    with pytest.raises(ValueError, match="already registered"):
        rules.register("hpca", "test-user")(type("Other", (rules.HPCA,), {}))
    rules.unregister("hpca", "test-user")
    assert ("hpca", "test-user") not in rules.available()


def test_a_scoped_block_leaves_the_registry_as_it_was():
    """Registrations, an overwrite, an alias, an unregistration and a new rule: all undone on exit."""
    before = registry_state()
    fh, swta_fh = rules.lookup("hpca", "fh"), rules.lookup("swta", "fh")
    with rules.scoped():
        rules.register("hpca", "test-scoped")(type("Mine", (rules.HPCA,), {}))
        with pytest.warns(UserWarning, match="overwriting hpca/fh"):
            rules.register("hpca", "fh", overwrite=True)(type("Other", (rules.HPCA,), {}))
        rules.register("swta", "test-alias")(swta_fh)  # a built-in class under a second name: its impl changes
        rules.unregister("hpca", "naive")
        rules.define_rule("test-rule")(type("TestRule", (rules.Update,), {}))
        assert ("hpca", "test-scoped") in rules.available() and ("hpca", "naive") not in rules.available()
        assert rules.lookup("hpca", "fh") is not fh and swta_fh.impl == "test-alias"
        assert "test-rule" in rules.rules()
    assert registry_state() == before
    assert rules.lookup("hpca", "fh") is fh and swta_fh.impl == "fh" and "test-rule" not in rules.rules()

    with pytest.raises(RuntimeError, match="raised inside"):
        with rules.scoped():
            rules.register("hpca", "test-scoped")(type("Mine", (rules.HPCA,), {}))
            raise RuntimeError("raised inside the block")
    assert registry_state() == before


def test_registered_is_register_for_one_block_with_its_checks():
    class Mine(rules.HPCA):
        pass

    before = registry_state()
    with rules.registered("hpca", "test-block", Mine) as cls:
        assert cls is Mine and Mine.impl == "test-block"
        assert isinstance(rules.get("hpca", impl="test-block"), Mine)
    assert registry_state() == before and ("hpca", "test-block") not in rules.available()
    with pytest.raises(ValueError, match="hpca/fh is already registered"):
        with rules.registered("hpca", "fh", Mine):
            pass  # pragma: no cover - not reached
    with pytest.raises(TypeError, match="must subclass the swta rule class"):
        with rules.registered("swta", "test-block", Mine):
            pass  # pragma: no cover - not reached
    assert registry_state() == before


def test_register_requires_the_rule_class():
    with pytest.raises(TypeError, match="must subclass the swta rule class"):
        rules.register("swta", "bad")(rules.HPCA)

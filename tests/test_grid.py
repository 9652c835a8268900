"""Grids: presets and TOML files parse, expand into cases, and reject bad input with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hebbbench.errors import UserError
from hebbbench.suites.grid import Grid, SweepLayer, load_grid, preset_names

TINY = Path(__file__).parent / "data" / "tiny.toml"


def cpu(devices):
    return ["cpu"]


def test_presets_load_and_expand():
    assert {"ci", "quick", "paper", "scaling", "beyond"} <= set(preset_names())
    for name in preset_names():
        cases = load_grid(name).expand(resolve=cpu)
        assert cases and len({c.case_id for c in cases}) == len(cases)


def test_paper_preset_has_both_group_sizes_and_the_conv2_shape():
    cases = load_grid("paper").expand(resolve=cpu)
    conv2 = next(c for c in cases if c.case_id.startswith("6layer/hpca/conv2/"))
    assert (conv2.n, conv2.layer.m, conv2.layer.d) == (9216, 128, 864)
    assert [v.label for v in conv2.variants] == ["fh", "naive(G=8)", "naive(G=128)"]
    assert conv2.baseline_variant().label == "naive(G=8)"


def test_tiny_grid_expands_to_the_cross_product():
    grid = load_grid(config=TINY)
    cases = grid.expand(resolve=cpu)
    assert len(cases) == 2 * 2 * 2 * 2  # rules × layers × batches × what
    assert [v.label for v in cases[0].variants] == ["fh", "loop", "naive(G=3)"]
    conv = next(c for c in cases if c.layer.name == "conv" and c.batch == 3)
    assert conv.n == 3 * 25 and conv.layer.d == 18


def test_overrides_replace_every_sweep():
    grid = load_grid("quick").override(rules=["hpca"], impls=["fh", "naive:group_size=8", "naive:group_size=16"],
                                       batch_sizes=[4], dtypes=["float64"])
    cases = grid.expand(resolve=cpu)
    assert {c.rule for c in cases} == {"hpca"} and {c.batch for c in cases} == {4}
    assert {c.dtype for c in cases} == {"float64"}
    assert [v.label for v in cases[0].variants] == ["fh", "naive(G=8)", "naive(G=16)"]
    assert [v.options for v in cases[0].variants] == [(), (("group_size", 8),), (("group_size", 16),)]


def test_items_with_options_are_the_variants_of_their_impl_and_rule():
    grid = load_grid("quick").override(rules=["hpca", "swta:temperature=0.05", "swta:temperature=0.5"],
                                       impls=["fh*", "!fh-*", "naive", "naive:group_size=4"], what=["update"])
    cases = [c for c in grid.expand(resolve=cpu) if c.sweep == "small" and c.layer.name == "fc"]
    assert [c.case_id for c in cases] == ["small/hpca/fc/b16/float32/cpu/update",
                                          "small/swta(T=0.05)/fc/b16/float32/cpu/update",
                                          "small/swta(T=0.5)/fc/b16/float32/cpu/update"]
    # naive is given options, so it runs with those only; fh, matched by a pattern, with its defaults
    assert {tuple(v.label for v in c.variants) for c in cases} == {("fh", "naive(G=4)")}
    assert cases[1].rule_options == (("temperature", 0.05),)
    again = Grid.from_dict({k: v for k, v in grid.as_dict().items() if k != "name"}, grid.name, "env.json")
    assert [(c.case_id, c.variants) for c in again.expand(resolve=cpu)] == \
        [(c.case_id, c.variants) for c in grid.expand(resolve=cpu)]


def test_exclusion_patterns():
    cases = load_grid("quick").expand(resolve=cpu)
    small = [c for c in cases if c.sweep == "small"]
    assert small and all("loop" not in [v.impl for v in c.variants] for c in small)


@pytest.mark.parametrize("text, message", [
    ("rules = [", "malformed TOML"),
    ("[[sweep]]\nlayers = []", "non-empty list of layers"),
    ("colour = 1\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]", "unknown key.*colour"),
    ("[[sweep]]\nlayers = [{kind='linear', in_features=0, out_features=2}]", "in_features must be an integer >= 1"),
    ("[[sweep]]\nlayers = [{kind='conv', in_channels=1, out_channels=2, kernel_size=5, input_size=3}]",
     "smaller than the kernel"),
    ("[[sweep]]\nlayers = [{kind='pool'}]", "kind must be 'conv' or 'linear'"),
    ("dtypes = ['float8']\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]", "unknown dtype"),
    ("rules = ['nope']\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]", "unknown rule"),
    ("batch_sizes = [-1]\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]", "batch_sizes"),
    ("impls = ['naive:group_size=0']\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     "bad.toml: naive:group_size=0: group_size must be an integer >= 1"),
    ("impls = ['naive:colour=1']\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     "naive:colour=1: unknown option 'colour' for naive; allowed: group_size"),
    ("[[sweep]]\nimpls = ['fh:group_size=8']\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     "fh:group_size=8: unknown option 'group_size' for fh; allowed: none"),
    ("rules = ['swta:temperature=hot']\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     "swta:temperature=hot: temperature must be a number, got 'hot'"),
    ("[options.naive]\ngroup_size = 8\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     r"\[options.\*\] tables are replaced by options in the rules and impls lists, e.g. impls = \["),
    ("[timing]\ncase_seconds = 0\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     r"\[timing\]"),
    ("[timing]\nthreads = 0\n[[sweep]]\nlayers = [{kind='linear', in_features=2, out_features=2}]",
     r"\[timing\]: threads must be an integer >= 1"),
])
def test_bad_grids_raise_user_error(text, message):
    with pytest.raises(UserError, match=message):
        Grid.from_toml(text, "bad", "bad.toml")


def test_unknown_preset_names_the_allowed_ones():
    with pytest.raises(UserError, match="unknown preset 'nope'; allowed: beyond, ci, paper, quick, scaling"):
        load_grid("nope")


def test_layer_describe_and_rows():
    conv = SweepLayer.from_dict({"kind": "conv", "in_channels": 3, "out_channels": 8, "kernel_size": 3,
                                "input_size": [10, 12], "stride": 2, "padding": 1}, "t")
    assert conv.output_size == (5, 6) and conv.rows(4) == 4 * 30 and conv.d == 27 and conv.m == 8
    assert conv.describe() == "conv 3->8 k3 s2 p1 @10x12" and conv.name == conv.describe()


def test_shards_are_disjoint_and_cover_the_grid():
    from hebbbench.suites.grid import parse_shard, shard_cases

    cases = load_grid("paper").expand(resolve=cpu)
    parts = [shard_cases(cases, parse_shard(f"{i}/3")) for i in (1, 2, 3)]
    ids = [c.case_id for part in parts for c in part]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(set(ids)) == len(ids)
    for bad in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_fingerprint_tells_grids_apart():
    assert load_grid("quick").fingerprint() == load_grid("quick").fingerprint()
    assert load_grid("quick").fingerprint() != load_grid("quick").override(batch_sizes=[4]).fingerprint()

"""hebbbench accuracy end to end on the bundled digits: its result set, report and parity gate, its refusals."""

from __future__ import annotations

import builtins
import json

import pandas as pd
import pytest
import torch

from conftest import run_cli
from hebbbench import store
from hebbbench.nn import labelled
from hebbbench.suites import accuracy

#: a tiny form: conv1 (6 channels) and conv2 (8) of the 6-layer net, 4 Hebbian steps of 32 images, 2 seeds.
TINY = ["--width", "0.0625", "--depth", "2", "--hebbian-images", "128", "--batch", "32", "--probe-steps", "30",
        "--backprop-steps", "5", "--fractions", "0.05,1", "--curve-fraction", "1", "--seeds", "0,1",
        "--probe-every", "2", "--target", "0.5"]


@pytest.fixture(scope="module")
def accuracy_set(tmp_path_factory):
    """A real ``hebbbench accuracy`` run in this process (both rules, fh and naive, parity over every
    implementation that runs on the CPU), and its report."""
    import io
    import sys

    folder = tmp_path_factory.mktemp("accuracy")
    mp = pytest.MonkeyPatch()
    mp.chdir(folder)
    out, err = io.StringIO(), io.StringIO()
    mp.setattr(sys, "stdout", out)
    mp.setattr(sys, "stderr", err)
    mp.setattr(sys, "argv", ["hebbbench", "accuracy", *TINY, "--out", str(folder / "set")])
    from hebbbench import cli

    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    mp.undo()
    assert code == 0, err.getvalue()
    return folder, folder / "set"


def frames(path):
    """results.csv, curve.csv, parity.csv; an empty rule or label (a baseline's) read as ""."""
    out = []
    for name in ("results.csv", "curve.csv", "parity.csv"):
        frame = pd.read_csv(path / name)
        for column in ("rule", "impl", "label"):
            frame[column] = frame[column].fillna("")
        out.append(frame)
    return tuple(out)


def test_the_set_is_an_accuracy_set_with_every_method_seed_and_fraction(accuracy_set):
    _, path = accuracy_set
    info = store.open_set(path)
    assert info.kind == store.Kind.ACCURACY and info.env["status"] == "complete"
    assert info.env["config"]["seeds"] == [0, 1] and info.env["data"]["dataset"] == "digits"
    assert info.env["data"]["train_images"] + info.env["data"]["test_images"] == 1797
    assert "first 2 Hebbian layer(s) of 6layer at width x0.0625" in info.env["network"]["trained"]
    results, curve, _ = frames(path)
    assert set(results["status"]) == {"ok"}
    assert results["accuracy"].between(0, 1).all()
    counts = results.groupby(["method", "rule", "label"]).size().to_dict()
    assert counts == {("backprop", "", ""): 4, ("random", "", ""): 4,  # baselines: 2 seeds × 2 fractions
                      ("probe", "swta", "fh"): 4, ("probe", "swta", "naive"): 4, ("probe", "hpca", "fh"): 4,
                      ("probe", "hpca", "naive"): 4, ("finetune", "swta", "fh"): 4, ("finetune", "hpca", "fh"): 4}
    full = results[results["fraction"] == 1.0]
    assert (full["labels"] == info.env["data"]["train_images"]).all()
    assert (full["accuracy"] > 0.5).all()  # ten classes: chance is 0.1
    # the curve: step 0 (the starting weights) and every 2 of the 4 steps, with the Hebbian time growing
    assert sorted(curve["step"].unique()) == [0, 2, 4]
    for _, part in curve.groupby(["rule", "label", "seed"]):
        assert part.sort_values("step")["hebbian_s"].is_monotonic_increasing
        assert part["hebbian_s"].iloc[0] == 0


def test_the_curve_starts_from_the_random_features_of_the_same_seed(accuracy_set):
    _, path = accuracy_set
    results, curve, _ = frames(path)
    random = results[(results["method"] == "random") & (results["fraction"] == 1.0)].set_index("seed")["accuracy"]
    start = curve[curve["step"] == 0]
    for _, row in start.iterrows():
        assert row["accuracy"] == pytest.approx(random[row["seed"]], abs=1e-6)


def test_parity_exact_implementations_reach_fhs_weights_and_accuracy(accuracy_set):
    _, path = accuracy_set
    results, _, parity = frames(path)
    for rule in ("swta", "hpca"):
        impls = set(parity[parity["rule"] == rule]["impl"])
        assert {"fh", "naive", "fh-conv", "fh-compiled", "fh-bf16", "fh-tf32"} <= impls
    assert {"fh-blocked", "fh-auto"} <= set(parity[parity["rule"] == "hpca"]["impl"])
    exact = parity[(parity["kind"] == "exact") & (parity["impl"] != "fh")]
    assert len(exact) and (exact["status"] == "ok").all(), exact[["impl", "reason"]]
    assert (exact["weight_rel_diff"] <= 1e-4).all() and (exact["accuracy_diff_pp"] <= 0.2).all()
    assert (exact["verdict"] == "pass").all()
    approx = parity[parity["kind"] == "approximate"]
    assert set(approx["impl"]) == {"fh-bf16", "fh-tf32"}
    assert ((approx["accuracy_diff_pp"] <= 1.0) == (approx["verdict"] == "pass")).all()
    # the main runs agree too: naive's probe equals fh's on every seed and fraction (within 0.2 points)
    probe = results[results["method"] == "probe"].pivot_table(index=["rule", "seed", "fraction"], columns="label",
                                                              values="accuracy")
    assert ((probe["fh"] - probe["naive"]).abs() * 100 <= 0.2).all()


def test_exact_implementations_train_to_the_same_weights_and_bf16_does_not():
    """The gate's measure on its own: k = 3 Hebbian steps from one seed, fh against naive and fh-bf16."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the suite runs (and restores, below)
    try:
        check_three_steps()
    finally:
        torch.set_num_threads(threads)


def check_three_steps():
    config = accuracy.AccuracyConfig(width=0.0625, depth=2, hebbian_images=96, batch=32, seeds=(0,),
                                     fractions=(1.0,), curve_fraction=1.0)
    data = labelled.split(labelled.load("digits", 32), config.test_fraction, 0)
    trainer = accuracy.Trainer(config, data)
    ends = {}
    for impl in ("fh", "naive", "fh-bf16"):
        for rule in ("swta", "hpca"):
            net = accuracy.build(config, rule, impl, {}, 0, 10)
            ends[(rule, impl)] = trainer.hebbian(net, rule, 0, curve=False)
    for rule in ("swta", "hpca"):
        start = accuracy.build(config, rule, "fh", {}, 0, 10)
        moved = accuracy.weight_difference(ends[(rule, "fh")].weights, {k: l.weight for k, l in
                                                                      start.hebbian_layers.items()})
        assert moved > 1e-3  # the weights did change
        assert ends[(rule, "fh")].steps == 3
        assert accuracy.weight_difference(ends[(rule, "naive")].weights, ends[(rule, "fh")].weights) <= 1e-5
        assert accuracy.weight_difference(ends[(rule, "fh-bf16")].weights, ends[(rule, "fh")].weights) > 1e-5


def test_report_shows_tables_figure_and_parity_and_is_rebuilt(accuracy_set, monkeypatch, capsys):
    folder, path = accuracy_set
    report = folder / "reports" / "set"
    text = (report / "report.md").read_text()
    assert "## Accuracy against label fraction" in text and "## Parity gate" in text
    assert "backprop only (baseline)" in text and "random features (baseline)" in text
    assert "At the smallest label fraction, 0.05" in text
    assert "time to target" in text and "Hebbian phase, median" in text
    assert (report / "accuracy.png").stat().st_size > 10_000
    assert "<table>" in (report / "report.html").read_text()
    (report / "report.md").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "report", path, "--out", folder / "again")
    assert code == 0, err
    assert (folder / "again" / "report.md").read_text().split("## Environment")[0] == text.split("## Environment")[0]


def test_text_from_data_is_escaped_in_the_report(accuracy_set, tmp_path):
    _, path = accuracy_set
    copy = tmp_path / "set"
    copy.mkdir()
    for name in ("results.csv", "curve.csv", "parity.csv"):
        (copy / name).write_text((path / name).read_text())
    env = json.loads((path / "env.json").read_text())
    env["network"]["trained"] = "[click](javascript:alert(1)) <b>x</b>"
    (copy / "env.json").write_text(json.dumps(env))
    from hebbbench.reports.accuracy import write_report

    made = write_report(copy, out=tmp_path / "report")
    assert "\\[click\\](javascript:alert(1)) \\<b>x\\</b>" in made.markdown.read_text()
    assert "<b>x</b>" not in made.html.read_text() and 'href="javascript' not in made.html.read_text()


@pytest.mark.parametrize("args, message", [
    (["--fractions", "0"], "label fractions must be numbers in (0, 1], got 0.0"),
    (["--fractions", "0.1,1.5"], "label fractions must be numbers in (0, 1], got 0.1, 1.5"),
    (["--fractions", "half"], "--fractions must be numbers in (0, 1] separated by commas"),
    (["--rules", "nope"], "unknown rule 'nope'"),
    (["--impls", "fh,nope"], "unknown impl 'nope'"),
    (["--parity-impls", "nope"], "unknown impl 'nope' in --parity-impls"),
    (["--dataset", "synthetic"], "synthetic data has no labels to learn, so its accuracy means nothing"),
    (["--dataset", "cifar10"], "CIFAR-10 is read from disk: give --data-root"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/data"], "data root /nonexistent/data is not a folder"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--depth", "9"], "--depth must be 1 to 5 for 6layer, got 9"),
    (["--seeds", "1,1"], "--seeds must be distinct integers >= 0"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "accuracy", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()  # refused before any folder is made


def test_missing_scikit_learn_is_one_line_naming_the_install(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "accuracy")
    assert code == 2
    assert err.strip() == ("error: the digits dataset needs scikit-learn, which is not installed: "
                           "pip install 'hebbbench[accuracy]' (or pip install scikit-learn)")


def test_other_commands_refuse_an_accuracy_set_in_one_line(accuracy_set, monkeypatch, capsys):
    _, path = accuracy_set
    code, _, err = run_cli(monkeypatch, capsys, "compare", path, path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "accuracy result set (hebbbench accuracy)" in err, err


def test_digits_are_32_by_32_three_channel_images_and_subsets_are_stratified():
    digits = labelled.load("digits", 32)
    assert digits.images.shape == (1797, 3, 32, 32) and digits.classes == 10
    assert digits.images.min() >= -1 and digits.images.max() <= 1
    assert torch.equal(digits.images[:, 0], digits.images[:, 2])  # grey, repeated
    split = labelled.split(digits, 1 / 3, 0)
    assert len(split.test.labels) == 599 and len(split.train.labels) == 1198
    subset = labelled.label_subset(split.train.labels, 0.02, seed=3)
    assert torch.equal(subset, labelled.label_subset(split.train.labels, 0.02, seed=3))
    assert not torch.equal(subset, labelled.label_subset(split.train.labels, 0.02, seed=4))
    counts = torch.bincount(split.train.labels[subset], minlength=10)
    assert (counts >= 1).all() and counts.sum() == len(subset) == 20


def test_data_root_sets_are_read_with_their_labels(tmp_path):
    """CIFAR pickles keep their labels; an image folder's class is its subfolder (the loaders of reproduce)."""
    import pickle

    from test_data import write_fake_cifar10, write_fake_image_folder

    write_fake_cifar10(tmp_path, per_file=4)
    cifar = labelled.load("cifar10", 32, tmp_path)
    expected = []
    for i in range(1, 6):
        with open(tmp_path / "cifar-10-batches-py" / f"data_batch_{i}", "rb") as f:
            expected += [int(v) for v in pickle.load(f)["labels"]]
    assert cifar.images.shape == (20, 3, 32, 32) and cifar.labels.tolist() == expected and cifar.classes == 10
    write_fake_image_folder(tmp_path / "tiny-imagenet-200" / "train", classes=2, per_class=3)
    tiny = labelled.load("tinyimagenet", 32, tmp_path, max_images=4)
    assert tiny.images.shape == (4, 3, 32, 32) and sorted(tiny.labels.tolist()) == [0, 0, 1, 1]

"""Data: synthetic batches, real datasets in their on-disk formats, and one-line errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hebbbench.nn.data import DATASETS, load_batches, open_dataset
from hebbbench.errors import UserError


def write_fake_cifar10(root, per_file: int = 4) -> None:
    """data_batch_1..5 as torchvision stores them: pickled dicts of uint8 rows (n, 3072)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        entry = {"data": rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8),
                 "labels": list(rng.integers(0, 10, size=per_file)), "batch_label": f"batch {i}"}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(entry, f)


def write_fake_image_folder(folder, classes: int = 2, per_class: int = 3, size: int = 40) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (folder / f"n{c:08d}" / "images").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"n{c:08d}" / "images" / f"{i}.JPEG")


def test_synthetic_batches_are_seeded_normal_images():
    a = load_batches("cifar10", 4, 32, 2, seed=5)
    b = load_batches("cifar10", 4, 32, 2, seed=5)
    assert a.source == "synthetic" and len(a.images) == 2 and a.images[0].shape == (4, 3, 32, 32)
    assert torch.equal(a.images[1], b.images[1]) and not torch.equal(a.images[0], a.images[1])
    assert len(a.load_seconds) == 2 and a.seconds_per_batch >= 0


def test_missing_dataset_names_what_was_expected_where(tmp_path):
    with pytest.raises(UserError, match=rf"CIFAR-10 not found under {tmp_path}: expected "
                                        rf"{tmp_path}/cifar-10-batches-py \(torchvision format\); "
                                        "hebbbench never downloads"):
        load_batches("cifar10", 4, 32, 1, data_root=tmp_path)
    with pytest.raises(UserError, match="ImageNet not found under .*: expected .*imagenet/train"):
        load_batches("imagenet", 4, 224, 1, data_root=tmp_path)
    with pytest.raises(UserError, match="data root .* is not a folder"):
        load_batches("cifar10", 4, 32, 1, data_root=tmp_path / "nope")


def test_fake_cifar10_in_torchvision_format_loads(tmp_path):
    write_fake_cifar10(tmp_path)
    assert len(open_dataset("cifar10", tmp_path, 32)) == 20
    batches = load_batches("cifar10", 8, 32, 3, data_root=tmp_path, seed=1)  # cycles past one pass
    assert batches.source == str(tmp_path / "cifar-10-batches-py")
    assert [tuple(x.shape) for x in batches.images] == [(8, 3, 32, 32)] * 3
    assert batches.images[0].min() >= -1 and batches.images[0].max() <= 1


def test_malformed_or_incomplete_cifar_is_a_user_error(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="malformed: .*data_batch_3 is not a CIFAR batch"):
        open_dataset("cifar10", tmp_path, 32)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(UserError, match="incomplete: missing .*data_batch_5"):
        open_dataset("cifar10", tmp_path, 32)


class _RunsAShellCommand:
    """What a crafted data_batch_1 can hold: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_cifar_batch_is_read_without_running_code_from_it(tmp_path, protocol):
    """A pickle names the functions it calls: only numpy's array reconstruction is let through, so
    real batches (protocol 2, as torchvision's) and ours load, and a hostile one is malformed and never runs."""
    write_fake_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    entry = {"data": np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8) % 251, "labels": [1, 2],
             "batch_label": "training batch 1 of 5", "filenames": [b"a.png", b"b.png"]}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(entry, f, protocol=protocol)
    assert len(open_dataset("cifar10", tmp_path, 32)) == 2 + 4 * 4
    marker = tmp_path / "ran"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({"data": _RunsAShellCommand(marker)}, f, protocol=protocol)
    with pytest.raises(UserError, match=r"malformed: .*data_batch_2 is not a CIFAR batch.*refusing to load "
                                        r"(posix|os|nt)\.system"):
        open_dataset("cifar10", tmp_path, 32)
    assert not marker.exists()


def test_fake_tiny_imagenet_folder_loads_resized(tmp_path):
    write_fake_image_folder(tmp_path / "tiny-imagenet-200" / "train")
    batches = load_batches("tinyimagenet", 4, 32, 2, data_root=tmp_path, workers=0)
    assert [tuple(x.shape) for x in batches.images] == [(4, 3, 32, 32)] * 2
    assert len(batches.load_seconds) == 2


def test_empty_image_folder_and_too_few_images_are_user_errors(tmp_path):
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="ImageNet under .* is malformed: expected .* one subfolder of images"):
        load_batches("imagenet", 2, 32, 1, data_root=tmp_path)
    write_fake_image_folder(tmp_path / "tiny-imagenet-200" / "train", classes=1, per_class=2)
    with pytest.raises(UserError, match="has 2 images; one batch needs 4"):
        load_batches("tinyimagenet", 4, 32, 1, data_root=tmp_path)


def test_dataset_table():
    assert {n: d.train_images for n, d in DATASETS.items()} == {
        "cifar10": 50_000, "cifar100": 50_000, "tinyimagenet": 100_000, "imagenet": 1_281_167}
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_batches("mnist", 4, 32, 1)

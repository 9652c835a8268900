"""Labelled images for the accuracy suite: a training split, a held-out split, and label subsets.

Accuracy needs real images and their labels (synthetic noise has nothing to learn), read
without a download:

    digits        scikit-learn's bundled 8×8 grey digits (1,797 images, 10 classes; the data ship in
                  the scikit-learn wheel: ``sklearn.datasets.load_digits``), pixels 0..16
    cifar10, ...  the training sets that :func:`hebbbench.nn.data.open_dataset` reads from a data root
                  (CIFAR-10/100 pickles with their labels, Tiny ImageNet and ImageNet image folders,
                  the class of an image being its folder)

Every image becomes (3, S, S) in [-1, 1] at the network's input side S: digits are scaled to
[0, 1] (x/16), resized bilinearly from 8×8 to S×S and the grey channel is repeated three times;
the data-root sets are as :mod:`hebbbench.nn.data` loads them.

The held-out split is stratified (each class split in the same proportion) and drawn from
``split_seed``, fixed for all seeds of a run, so that every seed is evaluated on the same images.
A label fraction f keeps max(1, round(f · n_c)) training images of each class c
(:func:`label_subset`, drawn from the run's seed): the subset every classifier of that seed and
fraction is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hebbbench.errors import UserError
from hebbbench.nn.data import DATASETS, dataset_info, open_dataset

#: the bundled dataset (no data root needed).
DIGITS = "digits"
#: every dataset the accuracy suite reads.
LABELLED = (DIGITS, *DATASETS)
INSTALL_HINT = "pip install 'hebbbench[accuracy]' (or pip install scikit-learn)"


@dataclass
class Labelled:
    """Images (n, 3, S, S) in [-1, 1], their labels (n,), the classes and where they came from."""

    name: str
    images: Tensor
    labels: Tensor  # (n,) int64 in 0..classes-1
    classes: int
    source: str


@dataclass
class Split:
    """A labelled set cut into a training split (for Hebbian training and label subsets) and a held-out split."""

    train: Labelled
    test: Labelled
    split_seed: int


def digits(image_size: int) -> Labelled:
    """scikit-learn's 8×8 digits at (3, image_size, image_size); UserError when scikit-learn is missing."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError(f"the digits dataset needs scikit-learn, which is not installed: {INSTALL_HINT}") from None
    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).div_(16.0)  # (n, 8, 8) in [0, 1]
    x = x[:, None]  # (n, 1, 8, 8)
    if image_size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=image_size, mode="bilinear", align_corners=False)  # (n,1,S,S)
    x = x.clamp_(0, 1).sub_(0.5).div_(0.5).expand(-1, 3, -1, -1).contiguous()  # (n, 3, S, S) in [-1, 1]
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))  # (n,)
    return Labelled(DIGITS, x, y, 10, "sklearn.datasets.load_digits (bundled)")


def from_root(name: str, data_root: str | Path, image_size: int, max_images: int | None = None,
              seed: int = 0) -> Labelled:
    """A training set under ``data_root`` with its labels, read whole (or a stratified ``max_images``)."""
    info = dataset_info(name)
    dataset = open_dataset(name, data_root, image_size)
    labels = np.asarray(dataset.labels if hasattr(dataset, "labels") else dataset.folder.targets, dtype=np.int64)
    if len(labels) != len(dataset):
        raise UserError(f"{info.title} under {data_root} is malformed: {len(labels)} labels for {len(dataset)} images")
    keep = np.arange(len(labels))
    if max_images is not None and max_images < len(labels):
        keep = np.sort(_stratified(labels, max_images / len(labels), np.random.default_rng(seed)))
    try:
        images = torch.stack([dataset[int(i)] for i in keep])  # (n, 3, S, S)
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"{info.title} under {data_root}: could not read an image: {err}") from err
    return Labelled(name, images, torch.from_numpy(labels[keep]), info.classes,
                    str(info.expected(Path(data_root).expanduser())))


def load(name: str, image_size: int, data_root: str | Path | None = None, max_images: int | None = None,
         seed: int = 0) -> Labelled:
    """The labelled set ``name`` (see the module docstring); one-line UserError for what cannot be read."""
    if name == "synthetic":
        raise UserError("synthetic data has no labels to learn, so its accuracy means nothing; use --dataset digits "
                        "(bundled) or a real dataset under --data-root")
    if name not in LABELLED:
        raise UserError(f"unknown dataset {name!r}; allowed: {', '.join(LABELLED)}")
    if name == DIGITS:
        return digits(image_size)
    if data_root is None:
        raise UserError(f"{dataset_info(name).title} is read from disk: give --data-root (hebbbench never "
                        "downloads); --dataset digits needs none")
    return from_root(name, data_root, image_size, max_images, seed)


def _stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator, at_least: int = 0) -> np.ndarray:
    """Indices of max(at_least, round(fraction · n_c)) items of each class c, drawn by ``rng``."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = min(len(members), max(at_least, int(round(fraction * len(members)))))
        chosen.append(rng.permutation(members)[:count])
    return np.concatenate(chosen)


def split(data: Labelled, test_fraction: float, split_seed: int) -> Split:
    """Stratified held-out split of ``test_fraction`` of each class, drawn from ``split_seed``."""
    labels = data.labels.numpy()
    test = np.sort(_stratified(labels, test_fraction, np.random.default_rng(split_seed), at_least=1))
    train = np.setdiff1d(np.arange(len(labels)), test)
    if len(train) == 0:
        raise UserError(f"{data.name}: no training images left after a held-out split of {test_fraction}")

    def part(index: np.ndarray) -> Labelled:
        idx = torch.from_numpy(index)
        return Labelled(data.name, data.images[idx], data.labels[idx], data.classes, data.source)

    return Split(part(train), part(test), split_seed)


def label_subset(labels: Tensor, fraction: float, seed: int) -> Tensor:
    """Indices (sorted) of the labelled training images at ``fraction``: max(1, round(f · n_c)) of each class."""
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    return torch.from_numpy(np.sort(_stratified(labels.numpy(), fraction, rng, at_least=1)))

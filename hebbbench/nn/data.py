"""Mini-batches of images for the paper's networks: synthetic by default, real data when present.

Speed does not depend on pixel values, so by default a batch is seeded standard-normal
noise of the dataset's shape, (B, 3, H, W). With a ``data_root`` the real training
set is read from disk, never downloaded:

    CIFAR-10      {data_root}/cifar-10-batches-py/data_batch_1..5   (torchvision's on-disk pickles)
    CIFAR-100     {data_root}/cifar-100-python/train                 (torchvision's on-disk pickles)
    Tiny ImageNet {data_root}/tiny-imagenet-200/train/<class>/...   (image folder, resized to 32×32)
    ImageNet      {data_root}/imagenet/train/<class>/...            (image folder, resized to 210 or 224)

Pixels are scaled to [-1, 1] ((x/255 − 0.5)/0.5). Image folders are resized on the
short side and centre-cropped to the network's input size. Loading time (decode,
resize, copy to the device) is measured per batch and reported apart from the
Hebbian step.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hebbbench.errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's name, training-set size, classes and where its files are expected."""

    name: str
    title: str
    train_images: int
    classes: int
    folder: str  # relative to data_root
    layout: str  # "cifar" (torchvision pickles) or "imagefolder"
    files: tuple[str, ...] = ()  # cifar: the training batch files

    def expected(self, root: Path) -> Path:
        return root / self.folder


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", 50_000, 10, "cifar-10-batches-py", "cifar",
                           tuple(f"data_batch_{i}" for i in range(1, 6))),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100", 50_000, 100, "cifar-100-python", "cifar", ("train",)),
    "tinyimagenet": DatasetInfo("tinyimagenet", "Tiny ImageNet", 100_000, 200, "tiny-imagenet-200/train",
                                "imagefolder"),
    "imagenet": DatasetInfo("imagenet", "ImageNet", 1_281_167, 1000, "imagenet/train", "imagefolder"),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass
class Batches:
    """Mini-batches on the device, where they came from, and how long each took to load."""

    images: list[Tensor]  # each (B, 3, H, W)
    source: str  # "synthetic" or the folder read
    load_seconds: list[float] = field(default_factory=list)

    @property
    def seconds_per_batch(self) -> float:
        return float(np.median(self.load_seconds)) if self.load_seconds else float("nan")


#: what a CIFAR batch may name when unpickled: numpy's array reconstruction, nothing else (dicts, lists,
#: bytes, strings and numbers need no name). A pickle is a program: anything else could run code.
CIFAR_GLOBALS = frozenset({
    (module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")
} | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
  | {("numpy", "ndarray"), ("numpy", "dtype"),
     ("_codecs", "encode")})  # how Python 3 writes bytes in a protocol-2 pickle (as torch's weights-only loader allows)


class _CifarUnpickler(pickle.Unpickler):
    """The restricted unpickler of the Python docs ("Restricting Globals"): arrays, lists, dicts, bytes, numbers."""

    def find_class(self, module: str, name: str):
        if (module, name) not in CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays, "
                                         "lists, dicts, bytes and numbers")
        return super().find_class(module, name)


class CifarPickles(Dataset):
    """CIFAR-10/100 training images from torchvision's on-disk format (the original python pickles).

    Each file holds a dict with ``data`` (n, 3072) uint8, rows in channel-major order.
    The files are checked for presence and shape, not against torchvision's MD5 sums, and read
    by a restricted unpickler (:data:`CIFAR_GLOBALS`): a file that names anything else is refused
    as malformed before any of it runs.
    """

    def __init__(self, info: DatasetInfo, root: Path, image_size: int = 32) -> None:
        folder = info.expected(root)
        missing = [folder / name for name in info.files if not (folder / name).is_file()]
        if missing:
            raise UserError(f"{info.title} under {root} is incomplete: missing {', '.join(map(str, missing))} "
                            "(torchvision format); hebbbench never downloads")
        arrays, labels = [], []
        for name in info.files:
            path = folder / name
            try:
                with open(path, "rb") as f:
                    entry = _CifarUnpickler(f, encoding="latin1").load()  # never runs code from the file
                data = np.asarray(entry["data"], dtype=np.uint8)
                arrays.append(data.reshape(-1, 3, 32, 32))  # (n, 3, 32, 32)
                labels.append(np.asarray(entry.get("labels", entry.get("fine_labels", [])), dtype=np.int64))
            except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
                raise UserError(f"{info.title} under {root} is malformed: {path} is not a CIFAR batch "
                                f"(a pickled dict with 'data' of n x 3072 bytes): {type(err).__name__}: {err}") from err
        self.data = np.concatenate(arrays)  # (n, 3, 32, 32) uint8
        self.labels = np.concatenate(labels)  # (n,) each image's class (CIFAR-100: fine label), for accuracy
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Tensor:
        x = torch.from_numpy(self.data[index]).float().div_(255).sub_(0.5).div_(0.5)  # (3, 32, 32) in [-1, 1]
        if self.image_size != 32:
            x = torch.nn.functional.interpolate(x[None], size=self.image_size, mode="bilinear",
                                                align_corners=False)[0]
        return x


class _ImagesOnly(Dataset):
    """An image-folder dataset without its labels."""

    def __init__(self, folder: Dataset) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Tensor:
        return self.folder[index][0]


def open_dataset(name: str, data_root: str | Path, image_size: int) -> Dataset:
    """The training set ``name`` under ``data_root``, as images (3, image_size, image_size) in [-1, 1]."""
    info = dataset_info(name)
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise UserError(f"data root {root} is not a folder; expected {info.title} at {info.expected(root)}")
    folder = info.expected(root)
    kind = "torchvision format" if info.layout == "cifar" else "an image folder: one subfolder per class"
    if not folder.is_dir():
        raise UserError(f"{info.title} not found under {root}: expected {folder} ({kind}); hebbbench never downloads")
    if info.layout == "cifar":
        return CifarPickles(info, root, image_size)
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])
    try:
        images = datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, OSError) as err:
        raise UserError(f"{info.title} under {root} is malformed: expected {folder} to hold one subfolder of "
                        f"images per class ({err})") from err
    return _ImagesOnly(images)


def synthetic_batches(batch_size: int, image_size: int, count: int, seed: int = 0, channels: int = 3,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Batches:
    """``count`` seeded standard-normal batches (B, channels, H, W); generation time is the load time."""
    generator = torch.Generator().manual_seed(seed)
    batches = Batches([], "synthetic")
    for _ in range(count):
        t0 = time.perf_counter()
        x = torch.randn(batch_size, channels, image_size, image_size, generator=generator)  # (B,3,H,W)
        batches.images.append(_to_device(x, device, dtype))
        batches.load_seconds.append(time.perf_counter() - t0)
    return batches


def _to_device(x: Tensor, device: torch.device | str, dtype: torch.dtype) -> Tensor:
    x = x.to(device=device, dtype=dtype)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return x


def _cycle(loader: DataLoader) -> Iterator[Tensor]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


def load_batches(dataset: str, batch_size: int, image_size: int, count: int, *, data_root: str | Path | None = None,
                 workers: int = 0, seed: int = 0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Batches:
    """``count`` mini-batches of ``dataset`` at the network's size: synthetic, or read from ``data_root``.

    Real data is shuffled with ``seed`` and read by a DataLoader with ``workers`` worker
    processes; each batch's load time covers reading, decoding, resizing and the copy
    to the device. Raises :class:`UserError` for a missing or malformed dataset.
    """
    if count < 1 or batch_size < 1:
        raise ValueError(f"count and batch_size must be >= 1, got {count} and {batch_size}")
    info = dataset_info(dataset)
    if data_root is None:
        return synthetic_batches(batch_size, image_size, count, seed, device=device, dtype=dtype)
    images = open_dataset(dataset, data_root, image_size)
    if len(images) < batch_size:  # type: ignore[arg-type]
        raise UserError(f"{info.title} under {data_root} has {len(images)} images; "  # type: ignore[arg-type]
                        f"one batch needs {batch_size}")
    loader = DataLoader(images, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed))
    batches = Batches([], str(info.expected(Path(data_root).expanduser())))
    stream = _cycle(loader)
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            x = next(stream)  # (B,3,H,W)
        except (OSError, ValueError, RuntimeError) as err:
            raise UserError(f"{info.title} under {data_root}: could not read an image: {err}") from err
        batches.images.append(_to_device(x, device, dtype))
        batches.load_seconds.append(time.perf_counter() - t0)
    return batches

"""The course's datasets, offline first.

:func:`load_dataset` returns ``(images, labels)``: images ``float32`` in [0, 1] with shape
``N x C x H x W``, labels ``int64``.  Fashion-MNIST is the default (L-infinity budget
eps = 0.1); MNIST (eps = 0.3) and CIFAR-10 (eps = 8/255) are selectable.  Each dataset
carries its standard eps, its class names and its normalisation statistics in
:class:`DatasetInfo`.

Where the files come from, in order:

1. a directory named by the environment variable ``COURSEPKG_DATA_DIR``;
2. for Fashion-MNIST, Debian's package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``);
3. files an earlier download left in the course's cache (``<cache>/data``);
4. torchvision's download, when the machine is online.

When none serves, the error says exactly how to get the data.  Another dataset is never
substituted silently.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "COURSEPKG_DATA_DIR"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What the course needs to know about a dataset besides its pixels."""

    name: str
    shape: tuple[int, int, int]  #: C x H x W of one image
    classes: tuple[str, ...]  #: class names, index = label
    eps: float  #: the standard L-infinity budget in pixel space
    mean: tuple[float, ...]  #: per-channel mean (used *inside* the models)
    std: tuple[float, ...]  #: per-channel standard deviation
    sizes: dict = field(default_factory=dict)  #: number of images per split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.shape[0]


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        shape=(1, 28, 28),
        classes=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        eps=0.1,
        mean=(0.2860,),
        std=(0.3530,),
        sizes={"train": 60_000, "test": 10_000},
    ),
    "mnist": DatasetInfo(
        name="mnist",
        shape=(1, 28, 28),
        classes=tuple(str(d) for d in range(10)),
        eps=0.3,
        mean=(0.1307,),
        std=(0.3081,),
        sizes={"train": 60_000, "test": 10_000},
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        shape=(3, 32, 32),
        classes=(
            "airplane", "automobile", "bird", "cat", "deer",
            "dog", "frog", "horse", "ship", "truck",
        ),
        eps=8 / 255,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        sizes={"train": 50_000, "test": 10_000},
    ),
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "fmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_FOLDER = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


class DatasetNotFoundError(FileNotFoundError):
    """No source could provide the dataset; the message says how to get it."""


def dataset_info(name: str = "fashion-mnist") -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (``fashion-mnist``, ``mnist`` or ``cifar10``)."""
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    return DATASETS[key]


# --------------------------------------------------------------------------------------
# The idx format of (Fashion-)MNIST
# --------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an idx file (optionally gzipped) into a NumPy array.

    The format (LeCun et al., the MNIST page): two zero bytes, a type code, the number of
    dimensions ``d``, then ``d`` big-endian 32-bit sizes, then the data in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read idx file {path}: {err}; delete it and fetch it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number); delete it and fetch it again")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated (incomplete header); delete it and fetch it again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} holds {len(raw) - header} data bytes, its header promises {expected}; "
            "the file is truncated or corrupt: delete it and fetch it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx_pair(directory: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) idx files of ``split`` in ``directory``, gzipped or not."""
    found = []
    for stem in _IDX_FILES[split]:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found[0], found[1]


def _idx_to_tensors(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{images_path} and {labels_path} do not form an image/label pair "
            f"(shapes {images.shape} and {labels.shape}); delete them and fetch them again"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _cifar_from_directory(directory: Path, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CIFAR-10 in its python pickle layout (``cifar-10-batches-py``)."""
    for root in (directory / "cifar-10-batches-py", directory):
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        files = [root / n for n in names]
        if all(f.is_file() for f in files):
            xs, ys = [], []
            for f in files:
                with open(f, "rb") as fh:
                    # The official CIFAR-10 batches are pickles of numpy arrays and lists;
                    # they come from a directory the user named, not from the network.
                    batch = pickle.load(fh, encoding="latin1")  # noqa: S301
                xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch["labels"], dtype=np.int64))
            x = torch.from_numpy(np.concatenate(xs).astype(np.float32) / 255.0)
            return x, torch.from_numpy(np.concatenate(ys))
    return None


def _from_directory(info: DatasetInfo, directory: Path, split: str):
    if not directory.is_dir():
        return None
    if info.name == "cifar10":
        return _cifar_from_directory(directory, split)
    candidates = [directory, directory / info.name, directory / _TORCHVISION_FOLDER[info.name] / "raw"]
    for root in candidates:
        pair = _find_idx_pair(root, split)
        if pair is not None:
            return _idx_to_tensors(*pair)
    return None


def cache_data_dir() -> Path:
    """Where torchvision's downloads are kept: ``<course cache>/data``."""
    from .config import cache_dir

    return cache_dir() / "data"


def _sources(info: DatasetInfo) -> list[tuple[str, Path]]:
    sources = []
    env_dir = os.environ.get(DATA_DIR_ENV, "").strip()
    if env_dir:
        sources.append((f"${DATA_DIR_ENV}", Path(env_dir).expanduser()))
    if info.name == "fashion-mnist":
        sources.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST))
    try:
        sources.append(("the course's download cache", cache_data_dir()))
    except OSError:
        pass
    return sources


def _download(info: DatasetInfo, split: str):
    """torchvision's download into the course's cache (online users)."""
    import torchvision

    root = cache_data_dir()
    root.mkdir(parents=True, exist_ok=True)
    train = split == "train"
    if info.name == "cifar10":
        torchvision.datasets.CIFAR10(str(root), train=train, download=True)
    elif info.name == "mnist":
        torchvision.datasets.MNIST(str(root), train=train, download=True)
    else:
        torchvision.datasets.FashionMNIST(str(root), train=train, download=True)
    return _from_directory(info, root, split)


def _how_to_get(info: DatasetInfo, tried: list[str]) -> str:
    hint = {
        "fashion-mnist": "install Debian's package (sudo apt-get install dataset-fashion-mnist), or",
        "mnist": "",
        "cifar10": "",
    }[info.name]
    layout = ("cifar-10-batches-py/" if info.name == "cifar10"
              else "train-images-idx3-ubyte.gz and its three sibling idx files")
    return (
        f"{info.name} not found (looked in: {', '.join(tried)}; download failed or disabled): "
        f"{hint} put {layout} in a directory and set {DATA_DIR_ENV} to it, "
        "or connect to the internet so torchvision can download it"
    )


def load_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    *,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``split`` (``"train"`` or ``"test"``) of dataset ``name``.

    Returns ``(images, labels)``: images ``float32`` in [0, 1], shape ``N x C x H x W``;
    labels ``int64`` of shape ``N``.  Sources are tried in the order the module docstring
    gives; ``download=False`` forbids the network.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    tried = []
    for label, directory in _sources(info):
        tried.append(f"{label} ({directory})")
        result = _from_directory(info, directory, split)
        if result is not None:
            return _checked(info, split, *result)
    if download:
        try:
            result = _download(info, split)
        except Exception:  # offline, refused, or torchvision's own error
            result = None
        if result is not None:
            return _checked(info, split, *result)
    raise DatasetNotFoundError(_how_to_get(info, tried))


def _checked(info: DatasetInfo, split: str, x: torch.Tensor, y: torch.Tensor):
    if tuple(x.shape[1:]) != info.shape:
        raise ValueError(
            f"{info.name} {split} images have shape {tuple(x.shape[1:])}, expected {info.shape}; "
            "the files belong to another dataset: point the source at the right files"
        )
    return x.contiguous(), y.contiguous()


def subset(x: torch.Tensor, y: torch.Tensor, n: int | None, *, seed: int = 0):
    """The first ``n`` examples of a fixed random permutation (all of them when ``n`` is None).

    Used for the profiles' training and evaluation subsets, so every chapter that asks for
    ``n`` test examples gets the same ones.
    """
    if n is None or n >= len(x):
        return x, y
    if n <= 0:
        raise ValueError(f"subset size must be positive, got n={n}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[order], y[order]

"""MNIST and Fashion-MNIST from the original IDX files: one reader, one datamodule, and per
dataset a spec (files, mirrors, class names, sizes) and a registered config. Another IDX dataset
is one more spec and config (here or in a file of its own).

The files are read by ``idx_files.py``.
"""

from __future__ import annotations

import functools
import http.client
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .base import Splits, TensorDataModule, labels_to_tensor, pixel_tensor, split_train_val
from .configs import Augment, DataConfig, check_val_size
from .errors import DataError, one_line
from .idx_files import read_idx, read_idx_pair
from .paths import (
    DATA_DIR_ENV,
    atomic_write,
    resolve_data_dir,
)
from .registry import register_dataset

IdxFile = Literal["train_images", "train_labels", "test_images", "test_labels"]
IDX_FILES: dict[IdxFile, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class IdxSpec:
    """What differs between the IDX datasets: names, where to look, where to download."""

    key: str  # config name, e.g. "fashion_mnist"
    title: str  # for messages
    subdirs: tuple[str, ...]  # tried inside the data dir; the data dir itself if named so
    download_subdir: str
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    train_size: int = 60_000  # training images in the files (validation is carved from them)
    image_size: int = 28  # square, one channel
    system_dirs: tuple[Path, ...] = ()  # OS package locations, tried last
    package_hint: str = ""  # how to install the files from an OS package, for messages

    @property
    def mirror_env(self) -> str:
        """Environment variable that replaces :attr:`mirrors` (e.g. a local mirror, or tests)."""
        return f"HPSEARCH_{self.key.upper()}_MIRROR"

    def mirror_urls(self) -> tuple[str, ...]:
        """Base URLs to try in order: ``$<mirror_env>`` (comma-separated) if set, else mirrors."""
        override = [u.strip() for u in os.environ.get(self.mirror_env, "").split(",")]
        urls = [u for u in override if u] or list(self.mirrors)
        return tuple(u if u.endswith("/") else u + "/" for u in urls)


DIGIT_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Bag", "Sneaker", "Ankle boot")

IDX_SPECS: dict[str, IdxSpec] = {
    "mnist": IdxSpec(
        key="mnist",
        title="MNIST",
        subdirs=("mnist", "MNIST/raw"),
        download_subdir="mnist",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        class_names=DIGIT_CLASSES,
    ),
    "fashion_mnist": IdxSpec(
        key="fashion_mnist",
        title="Fashion-MNIST",
        subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
        download_subdir="fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=FASHION_CLASSES,
        # Debian/Ubuntu package dataset-fashion-mnist installs the IDX files here.
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        package_hint="apt-get install dataset-fashion-mnist",
    ),
}


# -- locating and downloading ---------------------------------------------------------------


def candidate_dirs(spec: IdxSpec, data_dir: Path) -> list[Path]:
    """Folders searched for ``spec``'s files, in order.

    ``data_dir`` itself is searched only when it is one of ``spec``'s own folders (say
    ``.../fashion-mnist``): MNIST and Fashion-MNIST files share their names, so files lying
    in any other folder could be either dataset and would be served as both.
    """
    dirs = [data_dir / sub for sub in spec.subdirs]
    if any(data_dir.parts[-len(Path(sub).parts) :] == Path(sub).parts for sub in spec.subdirs):
        dirs.append(data_dir)
    return dirs + list(spec.system_dirs)


def _how_to_get(spec: IdxSpec, data_dir: Path) -> str:
    """One sentence on where the files come from, for not-found messages."""
    package = f", or {spec.package_hint}" if spec.package_hint else ""
    return (
        f"run `hpsearch data download --dataset {spec.key} --data-dir {data_dir}` (needs "
        f"internet), or download the four .gz files from {spec.mirror_urls()[0]} into "
        f"{data_dir / spec.download_subdir}{package}; or pass --data-dir / set "
        f"{DATA_DIR_ENV} to the folder that holds {spec.download_subdir}/"
    )


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def locate_idx_files(spec: IdxSpec, data_dir: Path, download: bool = False) -> dict[str, Path]:
    """Paths of the four IDX files of ``spec``, downloading them if allowed and missing.

    The first folder holding the training images must hold all four files, so a folder with a
    partial copy is reported instead of silently mixing files from two places.
    """
    for folder in candidate_dirs(spec, data_dir):
        if _find(folder, IDX_FILES["train_images"]) is None:
            continue
        found = {k: _find(folder, stem) for k, stem in IDX_FILES.items()}
        missing = [IDX_FILES[k] for k, p in found.items() if p is None]
        if missing:
            raise DataError(
                f"{spec.title} file {missing[0]}[.gz] not found in {folder} (the other files "
                f"are there); copy the missing file{'s' if len(missing) > 1 else ''} there"
            )
        return {k: p for k, p in found.items() if p is not None}
    if download:
        return download_idx_files(spec, data_dir / spec.download_subdir)
    searched = ", ".join(str(d) for d in candidate_dirs(spec, data_dir))
    raise DataError(
        f"{spec.title} file {IDX_FILES['train_images']}[.gz] not found in {searched}; "
        f"{_how_to_get(spec, data_dir)}"
    )


def download_idx_files(spec: IdxSpec, folder: Path, timeout: float = 60.0) -> dict[str, Path]:
    """Fetch the four ``.gz`` files of ``spec`` into ``folder`` (atomically, file by file).

    Files already there are checked, not fetched again, so an interrupted run resumes.
    """
    paths: dict[str, Path] = {}
    for key, stem in IDX_FILES.items():
        target = folder / f"{stem}.gz"
        if not target.is_file():
            _download_first(spec, [m + target.name for m in spec.mirror_urls()], target, timeout)
        try:
            read_idx(target, "images" if key.endswith("images") else "labels")
        except DataError:
            # A bad download must not be "found" next time and fail forever.
            target.unlink(missing_ok=True)
            raise
        paths[key] = target
    return paths


def _download_first(spec: IdxSpec, urls: list[str], target: Path, timeout: float) -> None:
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                _create_folder(target.parent)
                # Through a temporary file: a transfer cut short leaves nothing behind.
                atomic_write(target, lambda f, r=response: _copy_all(r, f))
            return
        # URLError and socket timeouts are OSErrors; a connection dropped mid-transfer is an
        # http.client.IncompleteRead.
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {one_line(exc)}")
    raise DataError(
        f"could not download {spec.title} file {target.name} ({'; '.join(errors)}); offline? "
        f"copy the files into {target.parent}, or set {spec.mirror_env} to another mirror"
    )


def _copy_all(response: http.client.HTTPResponse, f: BinaryIO) -> None:
    shutil.copyfileobj(response, f)
    # read() reports a connection closed before Content-Length bytes as a plain end of file.
    if response.length:
        raise http.client.IncompleteRead(b"", response.length)


def _create_folder(folder: Path) -> None:
    # Only once the server answered, so an offline attempt leaves no empty folder; and not
    # reported as a download failure, which it is not.
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None


def download_idx_dataset(name: str, data_dir: str | Path | None = None) -> tuple[Path, bool]:
    """Make sure IDX dataset ``name`` is in the data dir, downloading the files it lacks.

    Returns ``(folder, downloaded)``: the folder the loaders will read, and whether anything
    was fetched. A folder that already holds all four files (also an OS package's) counts as
    present. Raises :class:`DataError` with one line when offline or a file is bad.
    """
    spec = IDX_SPECS[name]
    root = resolve_data_dir(data_dir)
    try:
        # The loaders' own search, so "present" means what they will read.
        return locate_idx_files(spec, root)["train_images"].parent, False
    except DataError:
        files = download_idx_files(spec, root / spec.download_subdir)
        return files["train_images"].parent, True


@dataclass(frozen=True)
class IdxArrays:
    """The raw uint8 arrays of an IDX dataset and the files they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: dict[str, Path]


def load_idx_arrays(spec: IdxSpec, data_dir: Path, download: bool = False) -> IdxArrays:
    """Locate (or download) and decode the four files; labels are checked against the classes."""
    files = locate_idx_files(spec, data_dir, download)
    train_images, train_labels = read_idx_pair(files["train_images"], files["train_labels"])
    test_images, test_labels = read_idx_pair(files["test_images"], files["test_labels"])
    for images, labels, key in (
        (train_images, train_labels, "train_labels"),
        (test_images, test_labels, "test_labels"),
    ):
        if images.ndim != 3:
            raise DataError(f"{files[key.replace('labels', 'images')]}: expected 3-D images")
        if len(labels) and labels.max() >= len(spec.class_names):
            raise DataError(
                f"{files[key]}: label {int(labels.max())} outside 0..{len(spec.class_names) - 1}"
            )
    return IdxArrays(train_images, train_labels, test_images, test_labels, files)


def load_idx_images(name: str, data_dir: str | Path | None = None) -> np.ndarray:
    """Every image of IDX dataset ``name``, train then test, as ``(N, 28, 28)`` uint8.

    For benchmarks that time feature extraction on the whole dataset (e.g. HOG on all 70,000
    MNIST images); no split, no download.
    """
    raw = load_idx_arrays(IDX_SPECS[name], resolve_data_dir(data_dir))
    return np.concatenate([raw.train_images, raw.test_images])


class IdxConfig(DataConfig):
    """An IDX dataset (its ``spec``) as (1, S, S) images in [0, 1].

    The official training images are split into ``train_size - val_size`` train and
    ``val_size`` validation images by a permutation seeded with ``split_seed``; the official
    test images are the test split.
    """

    spec: ClassVar[IdxSpec]

    augment: Augment = 0.0
    val_size: int = 10_000
    split_seed: int = 0
    # Train on a seeded subset of this many of the training images (quick runs, the bench).
    train_subset: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _some_training_images_left(self) -> IdxConfig:
        check_val_size(self.val_size, self.spec.train_size, self.train_subset)
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.spec.image_size, self.spec.image_size)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names


class IdxDataModule(TensorDataModule):
    """An IDX dataset (``cfg.spec``) as (N, 1, S, S) uint8 pixels."""

    cfg: IdxConfig

    @property
    def spec(self) -> IdxSpec:
        return self.cfg.spec

    def describe_source(self) -> str:
        return str(locate_idx_files(self.spec, self.data_dir, self.download)["train_images"].parent)

    def _load(self) -> Splits:
        raw = load_idx_arrays(self.spec, self.data_dir, self.download)
        train_idx, val_idx = split_train_val(
            len(raw.train_images),
            self.cfg.val_size,
            self.cfg.split_seed,
            what=f" in {raw.files['train_images']}",
            train_subset=self.cfg.train_subset,
        )
        images, labels = raw.train_images, raw.train_labels
        return Splits(
            pixel_tensor(images[train_idx]),
            labels_to_tensor(labels[train_idx]),
            pixel_tensor(images[val_idx]),
            labels_to_tensor(labels[val_idx]),
            pixel_tensor(raw.test_images),
            labels_to_tensor(raw.test_labels),
        )


@register_dataset(IdxDataModule, download=functools.partial(download_idx_dataset, "mnist"))
class MnistConfig(IdxConfig):
    spec: ClassVar[IdxSpec] = IDX_SPECS["mnist"]
    name: Literal["mnist"] = "mnist"


@register_dataset(IdxDataModule,
                  download=functools.partial(download_idx_dataset, "fashion_mnist"))
class FashionMnistConfig(IdxConfig):
    spec: ClassVar[IdxSpec] = IDX_SPECS["fashion_mnist"]
    name: Literal["fashion_mnist"] = "fashion_mnist"

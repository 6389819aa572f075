"""Pediatric chest X-rays (normal = 0, pneumonia = 1) from MedMNIST's npz or Kaggle's folders.

Sources (``PneumoniaConfig.source``):

``npz``
    MedMNIST ``pneumoniamnist.npz`` in ``DIR/`` or ``DIR/pneumoniamnist/``: 28x28 uint8 images
    with MedMNIST's own train / val / test split (``val_fraction`` is unused). Images are
    resized once to ``image_size`` with bilinear interpolation (antialiased when shrinking).
``folder``
    Kaggle "Chest X-Ray Images (Pneumonia)": ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}/``
    with ``.jpeg`` / ``.jpg`` / ``.png`` files (any case), in ``DIR/chest_xray`` or
    ``DIR/chest_xray/chest_xray``. Images are decoded to grayscale and stretched to
    ``image_size`` x ``image_size``; the result is cached on disk. The official ``val/``
    folder holds only 16 images, too few to select models on, so it is ignored and a
    stratified ``val_fraction`` of ``train/`` becomes the validation split instead.
``auto``
    ``folder`` when a ``chest_xray`` folder exists, else ``npz``.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from .base import Splits, TensorDataModule, labels_to_tensor, pixel_tensor
from .batches import model_inputs
from .configs import Augment, BatchSize, DataConfig
from .errors import DataError
from .paths import DATA_DIR_ENV, atomic_write, fingerprint_files, resolve_cache_dir
from .registry import register_dataset

NPZ_NAME = "pneumoniamnist.npz"
NPZ_KEYS = (
    "train_images",
    "train_labels",
    "val_images",
    "val_labels",
    "test_images",
    "test_labels",
)
FOLDER_CLASSES = ("NORMAL", "PNEUMONIA")  # index = label
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_FOLDER_CACHE_VERSION = 1

Source = Literal["npz", "folder"]
RawSplit = tuple[np.ndarray, np.ndarray]  # uint8 images (N, H, W), int64 labels (N,)


# -- locating -------------------------------------------------------------------------------


def npz_candidates(data_dir: Path) -> list[Path]:
    return [data_dir / NPZ_NAME, data_dir / "pneumoniamnist" / NPZ_NAME]


def folder_candidates(data_dir: Path) -> list[Path]:
    # Kaggle's archive unpacks to chest_xray/ with a duplicate chest_xray/chest_xray/ inside.
    return [data_dir / "chest_xray", data_dir / "chest_xray" / "chest_xray"]


def _find_folder_root(data_dir: Path) -> Path | None:
    candidates = folder_candidates(data_dir)
    for root in candidates:
        if (root / "train").is_dir():
            return root
    # A chest_xray folder without train/ is still the user's choice: report it, don't skip it.
    return candidates[0] if candidates[0].is_dir() else None


class PneumoniaConfig(DataConfig):
    """Pediatric chest X-rays, normal (0) vs pneumonia (1), as (1, S, S) images in [0, 1].

    ``source``: ``"npz"`` is MedMNIST's ``pneumoniamnist.npz`` (28x28, its own train/val/test
    split, ``val_fraction`` unused); ``"folder"`` is the Kaggle ``chest_xray/`` tree (validation
    carved from train, stratified, ``val_fraction`` of it); ``"auto"`` takes the folder when
    present, else the npz. Images are resized to ``image_size`` once, at load.
    """

    name: Literal["pneumonia"] = "pneumonia"
    batch_size: BatchSize = 32
    augment: Augment = 0.0
    source: Literal["auto", "npz", "folder"] = "auto"
    image_size: Annotated[int, Field(ge=8, le=1024)] = 128
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    split_seed: int = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    @property
    def class_names(self) -> tuple[str, ...]:
        return ("normal", "pneumonia")


def resolve_source(cfg: PneumoniaConfig, data_dir: Path) -> tuple[Source, Path]:
    """The source actually used and its path (npz file or chest_xray root); no decoding."""
    if cfg.source in ("auto", "folder"):
        root = _find_folder_root(data_dir)
        if root is not None:
            return "folder", root
    if cfg.source in ("auto", "npz"):
        for path in npz_candidates(data_dir):
            if path.is_file():
                return "npz", path
    wanted = {
        "npz": f"{NPZ_NAME} not found in {data_dir} or {data_dir / 'pneumoniamnist'}",
        "folder": f"chest_xray/ folder not found in {data_dir}",
        "auto": f"neither chest_xray/ nor {NPZ_NAME} found in {data_dir}",
    }[cfg.source]
    raise DataError(
        f"{wanted}; pass --data-dir or set {DATA_DIR_ENV}, or get "
        f"{NPZ_NAME} from MedMNIST (https://medmnist.com) or the Kaggle dataset "
        "'chest-xray-pneumonia' (no automatic download for this dataset)"
    )


# -- npz ------------------------------------------------------------------------------------


def load_npz(path: Path) -> dict[str, RawSplit]:
    """``{"train"|"val"|"test": (images uint8 (N, H, W), labels int64 (N,))}`` from the npz."""
    bad_file = (OSError, ValueError, EOFError, zipfile.BadZipFile)
    try:
        npz = np.load(path, allow_pickle=False)
    except bad_file as exc:
        raise DataError(f"{path}: cannot read .npz ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive (a single array)")
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{path}: .npz missing key '{missing[0]}'")
        try:
            arrays = {k: npz[k] for k in NPZ_KEYS}
        except bad_file as exc:
            raise DataError(f"{path}: cannot read .npz ({exc})") from None
    out = {}
    for split in ("train", "val", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{path}: {split}_images must be uint8 (N, H, W), got {images.dtype} {images.shape}"
            )
        labels = labels.reshape(-1)
        if len(images) != len(labels):
            raise DataError(
                f"{path}: images/labels count mismatch: {len(images)} {split}_images but "
                f"{len(labels)} {split}_labels"
            )
        if len(labels) and not np.isin(labels, (0, 1)).all():
            raise DataError(f"{path}: {split}_labels must be 0 (normal) or 1 (pneumonia)")
        out[split] = (images, labels.astype(np.int64))
    return out


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, h, w) images -> (N, 1, size, size), antialiased when shrinking: the pixels as
    they are when already of that size, else float32 in [0, 1]."""
    if x.shape[-2:] == (size, size):
        return x
    x = model_inputs(x)
    shrink = size < min(x.shape[-2:])
    out = F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )
    return out.clamp_(0.0, 1.0)


# -- folder ---------------------------------------------------------------------------------


def list_folder_split(split_dir: Path) -> tuple[list[Path], np.ndarray]:
    """Image paths (sorted, per class) and labels of one ``chest_xray/<split>`` folder."""
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir}: missing split folder (expected {' and '.join(FOLDER_CLASSES)} inside)"
        )
    # Case-insensitive so NORMAL/, Normal/ and normal/ all work.
    children = {p.name.upper(): p for p in split_dir.iterdir() if p.is_dir()}
    paths: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(FOLDER_CLASSES):
        class_dir = children.get(cls)
        if class_dir is None:
            raise DataError(f"{split_dir / cls}: missing class folder")
        files = sorted(
            p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not files:
            raise DataError(
                f"{class_dir}: empty class folder (no {'/'.join(IMAGE_SUFFIXES)} images)"
            )
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def decode_image(path: Path, size: int) -> np.ndarray:
    """One file -> (size, size) uint8 grayscale, stretched to a square."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            # JPEG only: let libjpeg decode at a reduced scale (still >= size), ~4-8x faster
            # for Kaggle's ~2000 px X-rays.
            im.draft("L", (size, size))
            im = im.convert("L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None


def decode_images(paths: list[Path], size: int, num_threads: int | None = None) -> np.ndarray:
    """Decode many files on a thread pool (PIL releases the GIL while decoding)."""
    out = np.empty((len(paths), size, size), dtype=np.uint8)
    workers = num_threads or min(os.cpu_count() or 1, 8)

    def one(i: int) -> None:
        out[i] = decode_image(paths[i], size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(paths))))  # list() re-raises a worker's DataError
    return out


def load_folder(root: Path, size: int) -> dict[str, RawSplit]:
    """Decoded ``train`` and ``test`` splits of a chest_xray tree, cached on disk.

    The cache file is keyed by ``size`` and a fingerprint of the image files' names, sizes and
    mtimes, so adding, removing or replacing an image invalidates it.
    """
    listed = {split: list_folder_split(root / split) for split in ("train", "test")}
    all_files = [p for paths, _ in listed.values() for p in paths]
    fingerprint = fingerprint_files(root, all_files)
    cache = resolve_cache_dir("pneumonia") / (
        f"chest_xray-v{_FOLDER_CACHE_VERSION}-s{size}-{fingerprint}.npz"
    )
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return {s: (z[f"{s}_images"], z[f"{s}_labels"]) for s in listed}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache: decode again and overwrite it
    out = {split: (decode_images(paths, size), labels) for split, (paths, labels) in listed.items()}
    arrays = {}
    for split, (images, labels) in out.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    atomic_write(cache, lambda f: np.savez(f, **arrays))
    return out


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int, where: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_idx, val_idx)`` with class proportions kept in both parts."""
    from sklearn.model_selection import train_test_split

    try:
        train_idx, val_idx = train_test_split(
            np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"{where}: too few images for a stratified val_fraction={val_fraction} split ({exc})"
        ) from None
    return np.sort(train_idx), np.sort(val_idx)


# -- the datamodule ---------------------------------------------------------------------------


class PneumoniaDataModule(TensorDataModule):
    """Chest X-rays as (N, 1, S, S) images (uint8 pixels, or float32 in [0, 1] when resized
    from the .npz); label 0 normal, 1 pneumonia.

    ``pos_weight`` and ``class_weights`` come from the training labels (loading the data if
    needed) for ``BCEWithLogitsLoss(pos_weight=...)`` and ``CrossEntropyLoss(weight=...)``.
    """

    cfg: PneumoniaConfig

    def resolve_source(self) -> tuple[Source, Path]:
        return resolve_source(self.cfg, self.data_dir)

    def describe_source(self) -> str:
        source, path = self.resolve_source()
        return f"{source}: {path}"

    def _load(self) -> Splits:
        source, path = self.resolve_source()
        size = self.cfg.image_size
        if source == "npz":
            raw = load_npz(path)

            def images(split: str) -> torch.Tensor:
                return resize_images(pixel_tensor(raw[split][0]), size)

            return Splits(
                images("train"),
                labels_to_tensor(raw["train"][1]),
                images("val"),
                labels_to_tensor(raw["val"][1]),
                images("test"),
                labels_to_tensor(raw["test"][1]),
            )
        raw = load_folder(path, size)
        train_images, train_labels = raw["train"]
        train_idx, val_idx = stratified_split(
            train_labels, self.cfg.val_fraction, self.cfg.split_seed, path / "train"
        )
        x, y = pixel_tensor(train_images), labels_to_tensor(train_labels)
        return Splits(
            x[train_idx],
            y[train_idx],
            x[val_idx],
            y[val_idx],
            pixel_tensor(raw["test"][0]),
            labels_to_tensor(raw["test"][1]),
        )

    @property
    def pos_weight(self) -> float:
        """``n_normal / n_pneumonia`` over the training split (BCEWithLogitsLoss ``pos_weight``)."""
        n_neg, n_pos = self.class_counts("train")
        if n_pos == 0:
            raise DataError("pneumonia: no pneumonia images in the training split")
        return n_neg / n_pos

    @property
    def class_weights(self) -> tuple[float, float]:
        """sklearn's "balanced" weights ``n / (2 * n_c)`` over the training split."""
        counts = self.class_counts("train")
        if min(counts) == 0:
            raise DataError(f"pneumonia: a class is missing from the training split {counts}")
        n = sum(counts)
        return (n / (2 * counts[0]), n / (2 * counts[1]))

    def check_details(self) -> dict[str, str]:
        return {"pos_weight": f"{self.pos_weight:.4f}"}


register_dataset(PneumoniaDataModule)(PneumoniaConfig)

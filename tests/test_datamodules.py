"""Datamodules: IDX reading and splits, vectorized cached HOG, pneumonia sources, batching, and a
clear one-line ``DataError`` for every kind of bad input.

Unit tests build tiny synthetic datasets in ``tmp_path``; tests marked ``slow`` use the real
datasets (skipped when they are absent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.server
import math
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.feature import hog as skimage_hog

import hpsearch.datamodules.hog as hog_module
import hpsearch.datamodules.pneumonia as pneumonia_module
from hpsearch.datamodules import (
    DataError,
    HogMnistConfig,
    HogMnistDataModule,
    IdxDataModule,
    PneumoniaConfig,
    PneumoniaDataModule,
    TensorBatches,
    build_datamodule,
    clear_cache,
    data_config_from_dict,
    default_config,
    hog_feature_size,
    hog_features,
    read_idx,
)
from hpsearch.datamodules.check import check_all
from hpsearch.datamodules.idx import DIGIT_CLASSES, FASHION_CLASSES, IDX_SPECS, load_idx_images
from hpsearch.datamodules.idx_files import gunzipped_cache_path
from hpsearch.datamodules.paths import CACHE_DIR_ENV
from hpsearch.scripts.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST, VAL = 100, 30, 20
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# Each synthetic image carries its own index in its last pixel, so a test can tell which source
# image ended up where after splitting. Bottom-right, away from the HOG cell a test blanks.
MARK = (-1, -1)


@pytest.fixture(autouse=True)
def _no_system_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a machine with Debian's dataset-fashion-mnist installed, "Fashion-MNIST missing" tests
    # would find /usr/share/datasets/fashion-mnist instead.
    for name, spec in IDX_SPECS.items():
        monkeypatch.setitem(IDX_SPECS, name, dataclasses.replace(spec, system_dirs=()))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Decoded splits are cached per process and HOG/folder features on disk: without a fresh
    # start each test could pass on data another test loaded.
    clear_cache()
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    yield cache
    clear_cache()


# -- synthetic data ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    if magic is None:
        magic = 0x00000803 if array.ndim == 3 else 0x00000801
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_idx_dataset(
    folder: Path, seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST
) -> dict[str, np.ndarray]:
    """Write the four gzip IDX files of a random 28x28 dataset into ``folder``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, MARK[0], MARK[1]] = np.arange(n)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = rng.integers(0, 10, n).astype(np.uint8)
    write_idx_arrays(folder, arrays)
    return arrays


def write_idx_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        (folder / IDX_NAMES[key]).write_bytes(gzip.compress(idx_bytes(array)))


def source_index(x: torch.Tensor) -> np.ndarray:
    """Indices of the synthetic source images that the (N, 1, 28, 28) pixels ``x`` hold."""
    return x[:, 0, MARK[0], MARK[1]].long().numpy()


def mnist_dm(data_dir: Path, **cfg) -> IdxDataModule:
    dm = IdxDataModule(data_config_from_dict({"name": "mnist", "val_size": VAL, **cfg}),
                       data_dir=data_dir)
    dm.setup()
    return dm


@pytest.fixture
def mnist_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "data"
    return root, make_idx_dataset(root / "mnist")


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_chest_xray(root: Path, counts: dict[str, tuple[int, int]]) -> None:
    """Kaggle layout ``root/chest_xray/<split>/{NORMAL,PNEUMONIA}/*.jpeg``, uneven image sizes."""
    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        for cls, n in zip(("NORMAL", "PNEUMONIA"), per_class, strict=True):
            for i in range(n):
                h, w = rng.integers(20, 60, 2)
                array = rng.integers(0, 256, (h, w), dtype=np.uint8)
                write_image(root / "chest_xray" / split / cls / f"img{i}.jpeg", array)


def make_npz(
    path: Path, sizes: dict[str, tuple[int, int]], drop: str = "", short: str = ""
) -> None:
    """MedMNIST-style npz: uint8 (N, 28, 28) images, (N, 1) labels, normal first; ``drop``
    leaves out one array and ``short`` cuts the last element off one."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, (n_normal, n_pneumonia) in sizes.items():
        n = n_normal + n_pneumonia
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.repeat([0, 1], [n_normal, n_pneumonia])[:, None]
    arrays.pop(drop, None)
    if short:
        arrays[short] = arrays[short][:-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


NPZ_SIZES = {"train": (6, 14), "val": (3, 5), "test": (4, 6)}


# -- IDX reading and MNIST / Fashion-MNIST splits ------------------------------------------------


def test_read_idx_detects_gzip_by_content_not_name(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    raw, packed = tmp_path / "images.gz", tmp_path / "images"
    raw.write_bytes(idx_bytes(images))
    packed.write_bytes(gzip.compress(idx_bytes(images)))
    for path in (raw, packed):
        np.testing.assert_array_equal(read_idx(path, "images"), images)


def test_gzip_idx_is_decompressed_once_then_read_from_the_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 256, (3, 28, 28), dtype=np.uint8) for _ in range(2))
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(idx_bytes(first)))
    np.testing.assert_array_equal(read_idx(path, "images"), first)
    cached = gunzipped_cache_path(path)
    assert cached.read_bytes() == idx_bytes(first)
    # Later reads take the decompressed copy (here altered, to see which one is read)...
    cached.write_bytes(idx_bytes(second))
    np.testing.assert_array_equal(read_idx(path, "images"), second)
    # ...until the file changes: a new size or mtime is a new cache entry.
    path.write_bytes(gzip.compress(idx_bytes(first[:2])))
    os.utime(path, ns=(1, 1))
    np.testing.assert_array_equal(read_idx(path, "images"), first[:2])


def test_truncated_gzip_is_reported_and_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))[:-20])
    with pytest.raises(DataError, match="truncated gzip data"):
        read_idx(path, "images")
    assert not gunzipped_cache_path(path).exists()


def test_mnist_split_sizes_shapes_and_pixel_scaling(mnist_dir) -> None:
    root, arrays = mnist_dir
    dm = mnist_dm(root)
    assert dm.split_sizes() == {"train": N_TRAIN - VAL, "val": VAL, "test": N_TEST}
    assert dm.input_shape == (1, 28, 28) and dm.class_names == DIGIT_CLASSES
    train_idx, val_idx = source_index(dm.train_x), source_index(dm.val_x)
    # train and val partition the official training images, none lost or repeated.
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(N_TRAIN))
    for x, y, idx, split in (
        (dm.train_x, dm.train_y, train_idx, "train"),
        (dm.val_x, dm.val_y, val_idx, "train"),
        (dm.test_x, dm.test_y, np.arange(N_TEST), "test"),
    ):
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64
        np.testing.assert_array_equal(x[:, 0].numpy(), arrays[f"{split}_images"][idx])
        np.testing.assert_array_equal(y.numpy(), arrays[f"{split}_labels"][idx])


def test_mnist_split_is_seeded(mnist_dir) -> None:
    root, _ = mnist_dir

    def val_indices(seed: int) -> list[int]:
        clear_cache()  # a fresh decode, not the process cache's answer for the same key
        return source_index(mnist_dm(root, split_seed=seed).val_x).tolist()

    assert val_indices(0) == val_indices(0)
    assert val_indices(0) != val_indices(1)
    # batch_size only batches: the split (and the process cache entry) are shared.
    a = mnist_dm(root, split_seed=3, batch_size=7)
    b = mnist_dm(root, split_seed=3, batch_size=64)
    assert a.val_x is b.val_x


def test_train_subset_keeps_that_many_training_images_and_the_same_validation(mnist_dir):
    root, _ = mnist_dir
    full, subset = mnist_dm(root), mnist_dm(root, train_subset=5)
    assert subset.split_sizes()["train"] == 5
    assert torch.equal(subset.val_x, full.val_x)  # the validation split does not move
    assert set(source_index(subset.train_x)) <= set(source_index(full.train_x))
    with pytest.raises(ValueError, match="train_subset: must be between 1 and"):
        mnist_dm(root, train_subset=N_TRAIN)


def test_val_size_larger_than_training_set_is_a_config_error(mnist_dir) -> None:
    root, _ = mnist_dir
    with pytest.raises(ValueError, match=rf"val_size: must be smaller than the {N_TRAIN}"):
        mnist_dm(root, val_size=N_TRAIN)


def test_fashion_mnist_uses_the_same_reader_and_its_own_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_idx_dataset(root / "mnist", seed=0)
    fashion = make_idx_dataset(root / "fashion-mnist", seed=1)
    dm = mnist_dm(root, name="fashion_mnist")
    assert dm.class_names == FASHION_CLASSES and dm.num_classes == 10
    np.testing.assert_array_equal(dm.test_x[:, 0].numpy(), fashion["test_images"])


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_data_dir_may_be_the_dataset_folder_itself(tmp_path: Path, name: str) -> None:
    folder = tmp_path / {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}[name]
    arrays = make_idx_dataset(folder)
    dm = mnist_dm(folder, name=name)
    np.testing.assert_array_equal(dm.test_y.numpy(), arrays["test_labels"])


@pytest.mark.parametrize(("folder", "other"), [("mnist", "fashion_mnist"), ("data", "mnist")])
def test_files_directly_in_a_folder_of_another_name_are_not_taken(
    tmp_path: Path, folder: str, other: str
) -> None:
    # MNIST and Fashion-MNIST files have the same names: a folder holding one of them must never
    # be served as the other (digits labelled "Trouser" would train without any error).
    make_idx_dataset(tmp_path / folder)
    with pytest.raises(DataError, match="not found"):
        mnist_dm(tmp_path / folder, name=other)


def test_load_idx_images_is_train_then_test(mnist_dir) -> None:
    root, arrays = mnist_dir
    images = load_idx_images("mnist", root)
    assert images.shape == (N_TRAIN + N_TEST, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[N_TRAIN:], arrays["test_images"])


# -- HOG features ------------------------------------------------------------------------------


def hog_reference(images: np.ndarray, orientations: int, ppc: int, cpb: int = 1) -> np.ndarray:
    return np.stack(
        [
            skimage_hog(
                im,
                orientations=orientations,
                pixels_per_cell=(ppc, ppc),
                cells_per_block=(cpb, cpb),
            )
            for im in images
        ]
    )


def hog_test_images() -> np.ndarray:
    """Random images plus shapes whose gradients sit exactly on bin bounds (0, 45, 90 deg)."""
    rng = np.random.default_rng(42)
    uniform = rng.random((6, 28, 28)).astype(np.float32)
    # What the datamodule feeds in: uint8 pixels / 255 in float32.
    quantized = rng.integers(0, 256, (6, 28, 28)).astype(np.float32) / np.float32(255)
    shapes = np.zeros((4, 28, 28), dtype=np.float32)
    shapes[1, 6:20, 8:22] = 1.0  # square: horizontal and vertical edges
    r, c = np.indices((28, 28))
    shapes[2][r > c] = 1.0  # diagonal edge
    shapes[3][(r - 14) ** 2 + (c - 13) ** 2 < 64] = 200 / 255  # disc: every angle
    return np.concatenate([uniform, quantized, shapes])


@pytest.mark.parametrize(("ppc", "orientations"), [(4, 8), (7, 4), (4, 16), (7, 9)])
def test_hog_matches_skimage(ppc: int, orientations: int) -> None:
    images = hog_test_images()
    ours = hog_features(images, orientations, ppc)
    ref = hog_reference(images, orientations, ppc)
    assert ours.shape == ref.shape == (len(images), hog_feature_size(28, orientations, ppc))
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-5


def bound_ramps(orientations: int) -> np.ndarray:
    """Ramps whose gradient points at each bin bound (0 and 180 deg too), or 1e-7 rad beside."""
    offsets = np.array([0, 1e-7, -1e-7, 1e-12, -1e-12])
    angles = np.deg2rad(np.arange(orientations + 1) * 180 / orientations)[:, None] + offsets
    a = angles.reshape(-1, 1, 1)
    r, c = np.indices((28, 28))
    return ((np.sin(a) * r + np.cos(a) * c) / 100).astype(np.float32)


@pytest.mark.parametrize("orientations", [5, 7, 8, 16])
def test_hog_matches_skimage_on_gradients_at_bin_bounds(orientations: int) -> None:
    # Catches a bound rounded differently from skimage's (for 7 bins, float32 bounds put
    # 154.2857 deg in the next bin) and any bin decided on the wrong side of a bound.
    images = bound_ramps(orientations)
    ours = hog_features(images, orientations, 4)
    assert np.abs(ours - hog_reference(images, orientations, 4)).max() < 1e-5


def test_hog_feature_size_at_4px_8_orientations_is_392() -> None:
    assert hog_feature_size(28, 8, 4) == 392
    assert HogMnistConfig().input_shape == (392,)


def test_hog_with_blocks_uint8_input_and_chunking_matches_skimage() -> None:
    images = np.random.default_rng(7).integers(0, 256, (23, 28, 28), dtype=np.uint8)
    ours = hog_features(images, 9, 7, cells_per_block=2, chunk_size=5, num_threads=2)
    assert np.abs(ours - hog_reference(images, 9, 7, cpb=2)).max() < 1e-5


def test_hog_is_vectorized_over_images() -> None:
    """The number of Python-level calls must not grow with the number of images."""

    def calls(n: int) -> int:
        images = np.random.default_rng(0).random((n, 28, 28)).astype(np.float32)
        count = 0

        def profile(frame, event, arg) -> None:
            nonlocal count
            count += event in ("call", "c_call")

        sys.setprofile(profile)
        try:
            hog_features(images, 8, 4, chunk_size=n, num_threads=1)
        finally:
            sys.setprofile(None)
        return count

    assert calls(400) == calls(4)


def hog_dm(data_dir: Path, **cfg) -> HogMnistDataModule:
    dm = HogMnistDataModule(HogMnistConfig(**{"val_size": VAL, **cfg}), data_dir=data_dir)
    dm.setup()
    return dm


def test_hog_datamodule_standardizes_with_training_statistics_only(mnist_dir) -> None:
    root, arrays = mnist_dir
    dm = hog_dm(root)
    images = mnist_dm(root)  # the HOG split must equal the image split of the same seed
    train_idx, val_idx = source_index(images.train_x), source_index(images.val_x)
    np.testing.assert_array_equal(dm.val_y.numpy(), images.val_y.numpy())
    assert dm.train_x.shape == (N_TRAIN - VAL, 392) and dm.train_x.dtype == torch.float32

    raw = hog_features(arrays["train_images"].astype(np.float32) / np.float32(255), 8, 4)
    raw_test = hog_features(arrays["test_images"].astype(np.float32) / np.float32(255), 8, 4)
    mean = raw[train_idx].mean(0, dtype=np.float64)
    std = raw[train_idx].std(0, dtype=np.float64)
    assert std.min() > 1e-3  # random images: every feature varies
    np.testing.assert_allclose(dm.train_x.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(dm.train_x.std(0, correction=0).numpy(), 1.0, atol=1e-4)
    np.testing.assert_allclose(dm.val_x.numpy(), (raw[val_idx] - mean) / std, atol=1e-4)
    np.testing.assert_allclose(dm.test_x.numpy(), (raw_test - mean) / std, atol=1e-4)
    # Validation statistics must not leak in: its own standardization would centre it exactly.
    assert np.abs(dm.val_x.mean(0).numpy()).max() > 0.05


def test_hog_feature_constant_in_training_stays_bounded(tmp_path: Path) -> None:
    # A feature that never varies in training must not blow up where it does vary.
    root = tmp_path / "data"
    arrays = make_idx_dataset(root / "mnist")
    arrays["train_images"][:, :6, :6] = 0  # first HOG cell blank in every training image
    write_idx_arrays(root / "mnist", arrays)
    dm = hog_dm(root)
    first_cell = slice(0, 8)  # features of cell (0, 0), its 8 orientations
    np.testing.assert_array_equal(dm.train_x[:, first_cell].numpy(), 0.0)
    raw_test = hog_features(arrays["test_images"].astype(np.float32) / np.float32(255), 8, 4)
    assert raw_test[:, first_cell].max() > 0.1
    np.testing.assert_allclose(dm.test_x[:, first_cell].numpy(), raw_test[:, first_cell], atol=1e-6)


def test_hog_cache_is_reused_and_keyed_by_params_and_source(
    mnist_dir, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = mnist_dir
    hog_cache = cache_dir / "hog_mnist"
    first = hog_dm(root)
    (cache_file,) = hog_cache.glob("*.npy")
    assert "-o8-p4-c1-" in cache_file.name
    stamp = cache_file.stat().st_mtime_ns

    def no_recompute(*args, **kwargs):
        raise AssertionError("HOG recomputed although the cache file exists")

    with monkeypatch.context() as m:
        m.setattr(hog_module, "hog_features", no_recompute)
        clear_cache()
        second = hog_dm(root)
    torch.testing.assert_close(second.test_x, first.test_x, rtol=0, atol=0)
    assert cache_file.stat().st_mtime_ns == stamp

    hog_dm(root, orientations=4, pixels_per_cell=7)
    other_source = tmp_path / "other"
    make_idx_dataset(other_source / "mnist", seed=5)
    hog_dm(other_source)
    names = sorted(p.name for p in hog_cache.glob("*.npy"))
    assert len(names) == 3 and any("-o4-p7-c1-" in n for n in names)

    cache_file.write_bytes(b"not a numpy file")  # a damaged cache is rebuilt, not trusted
    clear_cache()
    torch.testing.assert_close(hog_dm(root).test_x, first.test_x, rtol=0, atol=0)


# -- pneumonia --------------------------------------------------------------------------------


def test_pneumonia_npz_splits_labels_and_class_weights(tmp_path: Path) -> None:
    make_npz(tmp_path / "pneumoniamnist" / "pneumoniamnist.npz", NPZ_SIZES)
    with np.load(tmp_path / "pneumoniamnist" / "pneumoniamnist.npz") as z:
        train_images = z["train_images"]
    dm = PneumoniaDataModule(PneumoniaConfig(image_size=28), data_dir=tmp_path)
    dm.setup()
    assert dm.split_sizes() == {"train": 20, "val": 8, "test": 10}
    assert {s: dm.class_counts(s) for s in ("train", "val", "test")} == {
        s: list(c) for s, c in NPZ_SIZES.items()
    }
    np.testing.assert_array_equal(dm.train_x[:, 0].numpy(), train_images)
    assert dm.pos_weight == pytest.approx(6 / 14)
    assert dm.class_weights == pytest.approx((20 / 12, 20 / 28))

    clear_cache()
    big = PneumoniaDataModule(PneumoniaConfig(source="npz"), data_dir=tmp_path)  # default 128
    big.setup()
    assert big.train_x.shape == (20, 1, 128, 128) and big.input_shape == (1, 128, 128)
    assert 0.0 <= big.train_x.min() and big.train_x.max() <= 1.0


def folder_dm(root: Path, **cfg) -> PneumoniaDataModule:
    dm = PneumoniaDataModule(PneumoniaConfig(**{"image_size": 16, **cfg}), data_dir=root)
    dm.setup()
    return dm


def test_pneumonia_folder_stratified_validation_from_train(tmp_path: Path) -> None:
    counts = {"train": (8, 24), "val": (1, 1), "test": (3, 5)}
    make_chest_xray(tmp_path, counts)
    make_npz(tmp_path / "pneumoniamnist.npz", NPZ_SIZES)  # "auto" prefers the folder
    dm = folder_dm(tmp_path, val_fraction=0.25)
    assert dm.train_x.shape[1:] == (1, 16, 16) and dm.train_x.dtype == torch.uint8
    # Kaggle's 2-image val/ folder is ignored; a quarter of train/ is carved out, stratified.
    assert dm.class_counts("val") == [2, 6]
    assert dm.class_counts("train") == [6, 18]
    assert dm.class_counts("test") == list(counts["test"])
    assert dm.pos_weight == pytest.approx(6 / 18)
    assert dm.class_weights == pytest.approx((24 / 12, 24 / 36))

    # Default val_fraction (0.1), seeded: same seed same split, another seed another split.
    splits = []
    for seed in (0, 0, 1):
        clear_cache()
        splits.append(folder_dm(tmp_path, split_seed=seed).val_x)
    assert len(splits[0]) == math.ceil(0.1 * 32)
    torch.testing.assert_close(splits[0], splits[1], rtol=0, atol=0)
    assert not torch.equal(splits[0], splits[2])


def test_pneumonia_folder_images_are_gray_and_stretched(tmp_path: Path) -> None:
    rgb = np.zeros((30, 60, 3), dtype=np.uint8)
    rgb[:, :30] = (255, 0, 0)  # pure red left half: luminance 76
    rgb[:, 30:] = (0, 0, 255)  # pure blue right half: luminance 29
    split_dir = tmp_path / "chest_xray"
    for split in ("train", "test"):
        for cls in ("NORMAL", "PNEUMONIA"):
            for i in range(10):
                write_image(split_dir / split / cls / f"x{i}.png", rgb)
    dm = folder_dm(tmp_path)
    img = dm.test_x[0, 0].numpy().astype(np.float64)
    assert img.shape == (16, 16)
    # Stretched, not cropped: both halves survive at their gray levels.
    np.testing.assert_allclose(img[:, :7], 76, atol=1.5)
    np.testing.assert_allclose(img[:, 9:], 29, atol=1.5)


def test_pneumonia_folder_decode_is_cached_on_disk_and_invalidated_by_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_chest_xray(tmp_path, {"train": (10, 10), "test": (2, 2)})
    first = folder_dm(tmp_path)

    def no_decode(*args, **kwargs):
        raise AssertionError("images decoded again although the disk cache is valid")

    with monkeypatch.context() as m:
        m.setattr(pneumonia_module, "decode_images", no_decode)
        clear_cache()
        torch.testing.assert_close(folder_dm(tmp_path).test_x, first.test_x, rtol=0, atol=0)

    write_image(tmp_path / "chest_xray/test/NORMAL/new.jpeg", np.zeros((20, 20), np.uint8))
    clear_cache()
    assert folder_dm(tmp_path).class_counts("test") == [3, 2]


# -- bad input: one clear DataError line naming the file and the problem ------------------------


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _replace(key: str, data: Callable[[dict[str, np.ndarray]], bytes]):
    def corrupt(folder: Path, arrays: dict[str, np.ndarray]) -> None:
        (folder / IDX_NAMES[key]).write_bytes(data(arrays))

    return corrupt


IDX_CORRUPTIONS = {
    # case: (corrupt(folder, arrays), file named in the message, problem named in the message)
    "wrong magic": (
        _replace("train_images", lambda a: idx_bytes(a["train_images"], magic=0x00000801)),
        "train-images",
        "wrong IDX magic number 0x00000801",
    ),
    "labels magic on images": (
        _replace("test_labels", lambda a: idx_bytes(a["test_images"])),
        "t10k-labels",
        "wrong IDX magic number 0x00000803",
    ),
    "fewer pixels than the header says": (
        _replace("train_images", lambda a: idx_bytes(a["train_images"])[:-5]),
        "train-images",
        "truncated",
    ),
    "header cut short": (
        _replace("test_labels", lambda a: idx_bytes(a["test_labels"])[:6]),
        "t10k-labels",
        "truncated",
    ),
    "empty file": (_replace("train_labels", lambda a: b""), "train-labels", "truncated"),
    "gzip stream cut off": (
        _replace("train_images", lambda a: gzip.compress(idx_bytes(a["train_images"]))[:3000]),
        "train-images",
        "truncated",
    ),
    "corrupt gzip": (
        _replace("train_images", lambda a: b"\x1f\x8b" + os.urandom(200)),
        "train-images",
        "cannot read",
    ),
    "count mismatch": (
        _replace("test_labels", lambda a: idx_bytes(a["test_labels"][:-1])),
        "t10k-labels",
        f"{N_TEST} images",
    ),
    "label out of range": (
        _replace("train_labels", lambda a: idx_bytes(np.full(N_TRAIN, 10, np.uint8))),
        "train-labels",
        "label 10 outside 0..9",
    ),
    "one file missing": (
        lambda folder, arrays: (folder / IDX_NAMES["test_labels"]).unlink(),
        "t10k-labels-idx1-ubyte",
        "not found",
    ),
}


@pytest.mark.parametrize("case", IDX_CORRUPTIONS)
def test_bad_idx_file_is_reported(mnist_dir, case: str) -> None:
    root, arrays = mnist_dir
    corrupt, file_fragment, problem = IDX_CORRUPTIONS[case]
    corrupt(root / "mnist", arrays)
    with pytest.raises(DataError) as exc:
        mnist_dm(root)
    message = assert_one_line(exc, file_fragment, problem)
    assert str(root / "mnist") in message


def test_count_mismatch_names_both_files(mnist_dir) -> None:
    root, arrays = mnist_dir
    IDX_CORRUPTIONS["count mismatch"][0](root / "mnist", arrays)
    with pytest.raises(DataError) as exc:
        mnist_dm(root)
    assert_one_line(exc, "mismatch", "t10k-images-idx3-ubyte", f"{N_TEST - 1} labels")


@pytest.mark.parametrize(
    ("name", "how_to_get"),
    [("mnist", "ossci-datasets.s3.amazonaws.com"), ("fashion_mnist", "dataset-fashion-mnist")],
)
def test_missing_idx_dataset_says_which_file_and_how_to_get_it(
    tmp_path: Path, name: str, how_to_get: str
) -> None:
    with pytest.raises(DataError) as exc:
        mnist_dm(tmp_path, name=name)
    assert_one_line(
        exc,
        "train-images-idx3-ubyte",
        "not found",
        str(tmp_path),
        how_to_get,
        f"hpsearch data download --dataset {name} --data-dir {tmp_path}",
    )


def test_missing_pneumonia_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        folder_dm(tmp_path, source="npz")
    assert_one_line(exc, "pneumoniamnist.npz not found", str(tmp_path), "medmnist.com")


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (lambda p: make_npz(p, NPZ_SIZES, drop="val_labels"), ".npz missing key 'val_labels'"),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated archive"), "cannot read .npz"),
        (
            lambda p: make_npz(p, NPZ_SIZES, short="test_labels"),
            "images/labels count mismatch: 10 test_images but 9 test_labels",
        ),
    ],
    ids=["missing key", "corrupt archive", "count mismatch"],
)
def test_bad_npz_is_reported(tmp_path: Path, write, problem: str) -> None:
    path = tmp_path / "pneumoniamnist.npz"
    write(path)
    with pytest.raises(DataError) as exc:
        folder_dm(tmp_path, source="npz")
    assert_one_line(exc, str(path), problem)


@pytest.mark.parametrize(
    ("damage", "where", "problem"),
    [
        (lambda d: [p.unlink() for p in (d / "train/NORMAL").iterdir()], "train/NORMAL", "empty"),
        (
            lambda d: (d / "test/PNEUMONIA/img1.jpeg").write_bytes(b"definitely not a jpeg"),
            "test/PNEUMONIA/img1.jpeg",
            "unreadable image",
        ),
        (
            lambda d: (d / "train/NORMAL/img0.jpeg").write_bytes(
                (d / "train/NORMAL/img0.jpeg").read_bytes()[:300]
            ),
            "train/NORMAL/img0.jpeg",
            "unreadable image",
        ),
        (lambda d: (d / "test/NORMAL").rename(d / "test/OTHER"), "test/NORMAL", "missing class"),
        (lambda d: (d / "test").rename(d / "testing"), "test", "missing split folder"),
    ],
    ids=["empty class folder", "not an image", "truncated jpeg", "no class folder", "no split"],
)
def test_bad_pneumonia_folder_is_reported(tmp_path: Path, damage, where: str, problem: str) -> None:
    make_chest_xray(tmp_path, {"train": (4, 4), "test": (2, 2)})
    damage(tmp_path / "chest_xray")
    with pytest.raises(DataError) as exc:
        folder_dm(tmp_path)
    assert_one_line(exc, str(tmp_path / "chest_xray" / where), problem)


def test_data_check_reports_sizes_counts_and_failures(tmp_path: Path) -> None:
    # The default config holds out 10,000 validation images, so MNIST needs more than that.
    make_idx_dataset(tmp_path / "mnist", n_train=10_010, n_test=N_TEST)
    make_npz(tmp_path / "pneumoniamnist.npz", NPZ_SIZES)
    lines, n_failed = check_all(tmp_path, names=["mnist", "fashion_mnist", "pneumonia"])
    assert n_failed == 1
    assert lines[-1] == "2 of 3 datasets load"
    (fail,) = [ln for ln in lines if ln.startswith("FAIL")]
    assert fail.startswith("FAIL fashion_mnist: Fashion-MNIST file train-images-idx3-ubyte")
    at = lines.index(next(ln for ln in lines if ln.startswith("ok   pneumonia:")))
    facts, header, train, val, test = lines[at + 1 : at + 6]
    assert "input (1, 128, 128)" in facts and f"pos_weight {6 / 14:.4f}" in facts
    assert val.split() == ["val", "8", "3", "5"] and test.split() == ["test", "10", "4", "6"]
    assert header.split() == ["normal", "pneumonia"]
    assert train.split() == ["train", "20", "6", "14"]

    def ends(line: str) -> list[int]:
        return [m.end() for m in re.finditer(r"\S+", line)]

    assert ends(header) == ends(train)[-2:]  # class names right above their counts


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "hpsearch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hpsearch"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_cli_data_check_reports_a_corrupt_file_without_traceback(mnist_dir) -> None:
    root, arrays = mnist_dir
    IDX_CORRUPTIONS["wrong magic"][0](root / "mnist", arrays)
    result = run_cli("data", "check", "--data-dir", str(root))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    (line,) = [ln for ln in output.splitlines() if ln.startswith("FAIL mnist:")]
    assert "train-images-idx3-ubyte.gz" in line and "wrong IDX magic number" in line
    # The HOG features are built from the same files, so they fail too.
    assert any(ln.startswith("FAIL hog_mnist:") and "magic" in ln for ln in output.splitlines())


def test_data_check_reports_an_os_error_as_one_failed_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_idx_dataset(tmp_path / "mnist", n_train=10_010, n_test=N_TEST)
    # A file where the cache folder should be: the HOG cache cannot be created. (A read-only
    # folder would do as well, except for root, who may write there anyway.)
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker))
    lines, n_failed = check_all(tmp_path, names=["hog_mnist", "mnist"])
    assert n_failed == 1 and lines[-1] == "1 of 2 datasets load"
    (fail,) = [ln for ln in lines if ln.startswith("FAIL")]
    assert fail == f"FAIL hog_mnist: {blocker / 'hog_mnist'}: Not a directory"
    assert any(ln.startswith("ok   mnist:") for ln in lines)


# -- download ---------------------------------------------------------------------------------


@contextlib.contextmanager
def idx_mirror(files: dict[str, bytes], cut: str = "") -> Iterator[str]:
    """A local HTTP mirror serving ``files``; the transfer of file ``cut`` stops halfway."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            if name not in files:
                self.send_error(404)
                return
            body = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if name == cut else body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def download(data_dir: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = cli_main(["data", "download", "--dataset", "mnist", "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_data_download_offline_fails_with_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as s:  # a port nobody listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(IDX_SPECS["mnist"].mirror_env, f"http://127.0.0.1:{port}/")
    code, out, err = download(tmp_path / "data", capsys)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(
        "hpsearch: error: could not download MNIST file train-images-idx3-ubyte.gz "
        f"(http://127.0.0.1:{port}/train-images-idx3-ubyte.gz: "
    )
    assert "offline?" in line and "HPSEARCH_MNIST_MIRROR" in line
    assert files_in(tmp_path) == []


def test_data_download_cut_short_keeps_no_partial_file_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    arrays = make_idx_dataset(tmp_path / "mirror")
    files = {p.name: p.read_bytes() for p in (tmp_path / "mirror").iterdir()}
    data_dir = tmp_path / "data"
    with idx_mirror(files, cut=IDX_NAMES["test_images"]) as url:
        monkeypatch.setenv(IDX_SPECS["mnist"].mirror_env, url)
        code, _, err = download(data_dir, capsys)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("hpsearch: error: could not download MNIST file t10k-images")
    # The two files fetched before are complete; the broken one left no (temporary) file.
    assert files_in(data_dir) == sorted([IDX_NAMES["train_images"], IDX_NAMES["train_labels"]])

    with idx_mirror(files) as url:
        monkeypatch.setenv(IDX_SPECS["mnist"].mirror_env, url)
        code, out, _ = download(data_dir, capsys)
        assert code == 0 and out == f"mnist: downloaded into {data_dir / 'mnist'}\n"
        assert download(data_dir, capsys)[:2] == (0, f"mnist: already in {data_dir / 'mnist'}\n")
    assert files_in(data_dir) == sorted(IDX_NAMES.values())
    images = load_idx_images("mnist", data_dir)
    np.testing.assert_array_equal(images[:N_TRAIN], arrays["train_images"])


# -- batches ----------------------------------------------------------------------------------


def epoch_labels(batches: TensorBatches) -> list[list[int]]:
    out = []
    for xb, yb in batches:
        assert torch.equal(xb[:, 0], yb.float() * 10)  # x and y stay aligned
        out.append(yb.tolist())
    return out


def sample_tensors(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n)
    return (y.float() * 10).unsqueeze(1).repeat(1, 3), y


def test_batches_shuffle_is_a_permutation_with_last_batch_sizes() -> None:
    batches = TensorBatches(*sample_tensors(10), batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3
    epoch = epoch_labels(batches)
    assert [len(b) for b in epoch] == [4, 4, 2]
    flat = sum(epoch, [])
    assert sorted(flat) == list(range(10)) and flat != list(range(10))

    dropped = TensorBatches(*sample_tensors(10), batch_size=4, shuffle=True, drop_last=True)
    assert len(dropped) == 2 and [len(b) for b in epoch_labels(dropped)] == [4, 4]

    ordered = epoch_labels(TensorBatches(*sample_tensors(10), batch_size=4))
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batches_are_deterministic_per_seed_and_reshuffle_each_epoch() -> None:
    def epochs(seed: int, n: int = 3) -> list[list[list[int]]]:
        batches = TensorBatches(*sample_tensors(50), batch_size=8, shuffle=True, seed=seed)
        return [epoch_labels(batches) for _ in range(n)]

    a = epochs(seed=5)
    assert a == epochs(seed=5)
    assert a[0] != a[1] != a[2]
    assert a != epochs(seed=6)
    resumed = TensorBatches(*sample_tensors(50), batch_size=8, shuffle=True, seed=5)
    resumed.set_epoch(2)
    assert epoch_labels(resumed) == a[2]


def test_batches_shard_disjointly_across_ranks() -> None:
    def shard(rank: int) -> list[int]:
        batches = TensorBatches(*sample_tensors(10), 2, shuffle=True, rank=rank, world_size=3)
        return sum(epoch_labels(batches), [])

    shards = [shard(r) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len(set(sum(shards, []))) == 9


def test_batches_scale_pixels_to_float_and_keep_float_inputs() -> None:
    values = [0, 51, 255]
    pixels = torch.tensor(values, dtype=torch.uint8).reshape(3, 1, 1, 1)
    for shuffle in (False, True):
        xb, yb = next(iter(TensorBatches(pixels, torch.arange(3), 3, shuffle=shuffle)))
        assert xb.dtype == torch.float32 and xb.shape == (3, 1, 1, 1)
        assert xb.flatten().tolist() == pytest.approx([values[i] / 255 for i in yb.tolist()])
    features = torch.tensor([[0.5], [-2.0]])
    xb, _ = next(iter(TensorBatches(features, torch.arange(2), 2)))
    assert torch.equal(xb, features)


def test_datamodule_batches_are_the_decoded_images_in_0_1(mnist_dir) -> None:
    root, arrays = mnist_dir
    dm = mnist_dm(root, batch_size=16)
    images = torch.cat([xb for xb, _ in dm.test_dataloader()])
    assert images.dtype == torch.float32
    np.testing.assert_array_equal(images[:, 0].numpy(),
                                  arrays["test_images"] / np.float32(255))


def test_datamodule_loaders_shuffle_train_only(mnist_dir) -> None:
    root, _ = mnist_dir
    dm = mnist_dm(root, batch_size=16)
    dm.seed = 4
    train = dm.train_dataloader()
    first = torch.cat([yb for _, yb in train])
    assert train.shuffle and train.seed == 4 and not torch.equal(first, dm.train_y)
    assert torch.equal(first.sort().values, dm.train_y.sort().values)
    val = dm.val_dataloader()
    assert not val.shuffle and len(val) == 1  # evaluation batches are large
    assert torch.equal(torch.cat([yb for _, yb in val]), dm.val_y)


# -- real datasets ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_idx_datasets(real_data_dir: Path, name: str) -> None:
    dm = build_datamodule(default_config(name), data_dir=real_data_dir)
    dm.setup()
    assert dm.split_sizes() == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert dm.train_x.shape == (50_000, 1, 28, 28) and dm.train_x.dtype == torch.uint8
    assert dm.train_x.min() == 0 and dm.train_x.max() == 255
    assert sum(dm.class_counts("test")) == 10_000
    if name == "fashion_mnist":
        assert dm.class_names == FASHION_CLASSES
        assert dm.class_counts("test") == [1_000] * 10


@pytest.mark.slow
def test_real_pneumoniamnist(real_data_dir: Path) -> None:
    if not (real_data_dir / "pneumoniamnist" / "pneumoniamnist.npz").is_file():
        pytest.skip(f"pneumoniamnist/pneumoniamnist.npz not found in {real_data_dir}")
    dm = folder_dm(real_data_dir, source="npz", image_size=28)
    assert dm.split_sizes() == {"train": 4_708, "val": 524, "test": 624}
    assert dm.class_counts("train") == [1_214, 3_494]
    assert dm.class_counts("test") == [234, 390]
    assert dm.pos_weight == pytest.approx(1_214 / 3_494)


@pytest.mark.slow
def test_real_hog_mnist(real_data_dir: Path) -> None:
    dm = hog_dm(real_data_dir, val_size=10_000)
    assert dm.input_shape == (392,)
    assert dm.train_x.shape == (50_000, 392) and dm.test_x.shape == (10_000, 392)
    assert torch.isfinite(dm.test_x).all()
    images = read_idx(real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")[:200]
    images = images.astype(np.float32) / np.float32(255)
    for ppc, orientations in ((4, 8), (7, 9)):
        diff = hog_features(images, orientations, ppc) - hog_reference(images, orientations, ppc)
        assert np.abs(diff).max() < 1e-5


@pytest.mark.slow
def test_cli_data_check_on_real_data(real_data_dir: Path) -> None:
    result = run_cli("data", "check", "--data-dir", str(real_data_dir))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "4 of 4 datasets load" in output
    lines = output.splitlines()
    assert any(ln.startswith("ok   hog_mnist:") for ln in lines)
    assert "features 392" in output
    test_rows = [ln.split() for ln in lines if ln.strip().startswith("test")]
    # mnist, fashion_mnist, hog_mnist, pneumonia: split size then per-class counts
    assert ["test", "624", "234", "390"] in test_rows
    assert sum(row[1] == "10000" for row in test_rows) == 3




def test_a_dataset_registered_twice_is_refused_naming_both_modules() -> None:
    from typing import Literal

    from hpsearch.datamodules import DATASETS, IdxConfig, register_dataset

    class Mnist2(IdxConfig):
        name: Literal["mnist"] = "mnist"

    with pytest.raises(ValueError, match=rf"dataset 'mnist' is registered twice \(by {__name__} "
                                         r"and hpsearch.datamodules.idx\)"):
        register_dataset(IdxDataModule)(Mnist2)
    assert DATASETS["mnist"].config.__module__ == "hpsearch.datamodules.idx"

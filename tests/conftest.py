"""Shared fixtures: where the real datasets are, one Ray instance per session, and a
per-session cache folder so tests never write to the user's ~/.cache."""

from __future__ import annotations

import gzip
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# Fixtures that start Ray or read the real datasets (directly or through another fixture):
# a test using one must be marked slow, so `make test-fast` (-m "not slow") runs none.
HEAVY_FIXTURES = frozenset({"real_data_dir", "ray_session", "s3_server"})


def unmarked_heavy_tests(items: list[pytest.Item]) -> list[str]:
    """The tests among ``items`` that use a heavy fixture without the ``slow`` marker."""
    return [f"{item.nodeid} (uses {', '.join(sorted(HEAVY_FIXTURES & set(item.fixturenames)))})"
            for item in items
            if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
            and item.get_closest_marker("slow") is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = unmarked_heavy_tests(items)
    if unmarked:
        raise pytest.UsageError("tests that start Ray or read the real datasets must be "
                                f"marked slow: {'; '.join(unmarked)}")


@pytest.fixture(autouse=True)
def _fast_tests_use_no_ray_and_no_real_data(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
):
    """A test not marked slow sees no real datasets, and fails if it starts Ray."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path_factory.getbasetemp() / "no-real-data"))
    ray_before = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    yield
    if not ray_before and "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized(), (
            f"{request.node.nodeid} started Ray: mark it slow")


def shared_datasets() -> Path:
    return Path(os.environ.get("HPSEARCH_DATA_DIR") or REPO.parent / "shared" / "datasets")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["HPSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("hpsearch-cache"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    root = shared_datasets()
    if not (root / "mnist").is_dir():
        pytest.skip(f"real datasets not found at {root} (set HPSEARCH_DATA_DIR)")
    return root


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def mnist_subset_dir(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MNIST subset (the first 2,000 training and 500 test images) as IDX files, so
    sweeps in tests go through the real loading code on real pixels, quickly."""
    return _idx_subset(real_data_dir, "mnist", tmp_path_factory.mktemp("mnist-subset"))


def _idx_subset(real_data_dir: Path, folder: str, root: Path) -> Path:
    from hpsearch.datamodules.idx import read_idx

    src, out = real_data_dir / folder, root / folder
    out.mkdir()
    for stem, n in (("train", 2000), ("t10k", 500)):
        images = read_idx(src / f"{stem}-images-idx3-ubyte.gz")[:n]
        labels = read_idx(src / f"{stem}-labels-idx1-ubyte.gz")[:n]
        _write_idx(out / f"{stem}-images-idx3-ubyte.gz", images)
        _write_idx(out / f"{stem}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def real_subsets_dir(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real subsets of every dataset: MNIST and Fashion-MNIST (2,000 train / 500 test) and
    PneumoniaMNIST (the first 600 / 150 / 200 of its splits), the first 240 / 100 of its
    train and test splits also as a Kaggle-layout ``chest_xray`` folder."""
    root = tmp_path_factory.mktemp("real-subsets")
    for folder in ("mnist", "fashion-mnist"):
        _idx_subset(real_data_dir, folder, root)
    with np.load(real_data_dir / "pneumoniamnist" / "pneumoniamnist.npz") as full:
        sizes = {"train": 600, "val": 150, "test": 200}
        arrays = {f"{split}_{kind}": full[f"{split}_{kind}"][:n]
                  for split, n in sizes.items() for kind in ("images", "labels")}
    (root / "pneumoniamnist").mkdir()
    np.savez(root / "pneumoniamnist" / "pneumoniamnist.npz", **arrays)
    _kaggle_layout(arrays, root / "chest_xray")
    return root


def _kaggle_layout(arrays: dict[str, np.ndarray], root: Path) -> None:
    """The same real X-rays in Kaggle's layout (``train|test/NORMAL|PNEUMONIA/*.png``), for
    ``source: folder``; the loader resizes them to the space's image size."""
    from PIL import Image

    for split, n in (("train", 240), ("test", 100)):  # a folder's 128-px trials are slow
        images, labels = arrays[f"{split}_images"][:n], arrays[f"{split}_labels"][:n].ravel()
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / ("NORMAL", "PNEUMONIA")[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")


def _synthetic_mnist_datamodule() -> Any:
    import torch

    from hpsearch.datamodules import Splits, build_datamodule, data_config_from_dict

    cfg = data_config_from_dict({"name": "mnist", "val_size": 16, "batch_size": 16})
    dm = build_datamodule(cfg, None)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    for name, tensor in zip(Splits._fields, (x[:48], y[:48], x[48:], y[48:], x[48:], y[48:]),
                            strict=True):
        setattr(dm, name, tensor)
    return dm


@pytest.fixture
def synthetic_mnist() -> Callable[[], Any]:
    """Makes a fresh MNIST datamodule holding 64 random 28x28 images (48 train, 16 val)."""
    return _synthetic_mnist_datamodule


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, for the whole session (``--storage s3://...``)."""
    from s3_server import start_s3_server

    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()

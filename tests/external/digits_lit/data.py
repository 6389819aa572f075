"""scikit-learn's 1,797 8x8 digit images, split 60/20/20 by a seeded permutation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class DigitsData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 64, split_seed: int = 0,
                 prepare_log: str | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.split_seed = split_seed
        self.prepare_log = prepare_log  # a file that gets a line per prepare_data call

    def prepare_data(self) -> None:
        from sklearn.datasets import load_digits

        load_digits()  # a real dataset would be downloaded here
        if self.prepare_log:
            with Path(self.prepare_log).open("a") as f:
                f.write("prepared\n")

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(digits.target, dtype=torch.long)
        order = torch.from_numpy(np.random.default_rng(self.split_seed).permutation(len(y)))
        n_train, n_val = int(0.6 * len(y)), int(0.2 * len(y))
        parts = np.split(order.numpy(), [n_train, n_train + n_val])
        self.train_set, self.val_set, self.test_set = (
            TensorDataset(x[idx], y[idx]) for idx in parts)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)

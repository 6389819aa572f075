"""A user's own code, outside hpsearch: a LightningModule and a LightningDataModule over
scikit-learn's bundled 8x8 digits (offline). hpsearch sweeps it by naming the classes in a
space file (``tests/external/digits.yaml``)."""

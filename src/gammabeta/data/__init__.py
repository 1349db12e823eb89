"""Datasets for gammabeta: MNIST-1D, scikit-learn digits, MNIST/Fashion-MNIST, user files."""

from __future__ import annotations

from gammabeta.data.dataset import Dataset, split, validation_split
from gammabeta.data.digits import load_digits
from gammabeta.data.files import load_file
from gammabeta.data.idx import load_mnist, read_idx, write_idx
from gammabeta.data.loader import DataLoader
from gammabeta.data.mnist1d import load_mnist1d
from gammabeta.data.registry import DATASET_NAMES, load_dataset

__all__ = [
    "DATASET_NAMES",
    "DataLoader",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_file",
    "load_mnist",
    "load_mnist1d",
    "read_idx",
    "split",
    "validation_split",
    "write_idx",
]

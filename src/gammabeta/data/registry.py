"""One entry point, ``load_dataset``, for the built-in datasets and user files."""

from __future__ import annotations

import os
from pathlib import Path

from gammabeta.data.dataset import Dataset
from gammabeta.data.digits import load_digits
from gammabeta.data.files import load_file
from gammabeta.data.idx import load_mnist
from gammabeta.data.mnist1d import load_mnist1d
from gammabeta.errors import ConfigError

__all__ = ["load_dataset", "DATASET_NAMES"]

_ALIASES = {
    "mnist1d": "mnist1d",
    "digits": "digits",
    "mnist": "mnist",
    "fashion": "fashion",
    "fashion-mnist": "fashion",
    "fashion_mnist": "fashion",
}
DATASET_NAMES = tuple(_ALIASES)


def load_dataset(
    name_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a dataset by name (see ``DATASET_NAMES``) or from a .npz/.csv path.

    ``seed`` seeds any train/test split the loader makes (digits, user files with one
    split, MNIST with only one split present); MNIST-1D always uses its published seed.
    ``data_dir`` and ``download`` apply to MNIST and Fashion-MNIST.
    """
    if not isinstance(name_or_path, str | os.PathLike) or not os.fspath(name_or_path).strip():
        raise ConfigError(f"data={name_or_path!r}; expected one of {', '.join(DATASET_NAMES)} "
                          "or a path to a .npz or .csv file")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r}; expected a whole number >= 0")
    key = os.fspath(name_or_path)
    canonical = _ALIASES.get(key.strip().lower())
    if canonical == "mnist1d":
        return load_mnist1d(cache_dir=cache_dir)
    if canonical == "digits":
        return load_digits(seed=seed)
    if canonical in ("mnist", "fashion"):
        return load_mnist(data_dir, kind=canonical, download=download, cache_dir=cache_dir,
                          seed=seed)
    path = Path(key).expanduser()
    if path.suffix.lower() in (".npz", ".csv") or path.exists():
        return load_file(path, seed=seed)
    raise ConfigError(
        f"unknown dataset {key!r}; expected one of {', '.join(DATASET_NAMES)} "
        "or a path to a .npz or .csv file"
    )

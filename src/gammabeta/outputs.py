"""Output folders that are explicit: named after what distinguishes a run, never replaced
silently, locked while in use, and never outside the root a user chose.

- :func:`run_folder_name` gives ``gammabeta train``'s default folder from the options that
  differ from the defaults (``runs/mnist1d-papercnn-norm=none-seed0``), so two commands that
  differ only in ``--norm`` do not share a folder.
- :func:`check_run_folder` refuses a folder that already holds a run (naming its files and
  ``--overwrite``/``--resume``) before any data is read.
- :func:`locked` holds an exclusive ``flock`` on a folder while a run or a study writes into
  it; a second process gets a one-line error instead of doing the same work twice.
- :func:`safe_name` refuses names that would leave their root (``..``, ``/``, ``~``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, OutputError

__all__ = ["RUN_FILES", "run_folder_name", "check_run_folder", "locked", "safe_name",
           "remove_stale_temporaries"]

# What ``gammabeta train`` writes into its folder (and nothing else there is touched).
RUN_FILES = ("model.safetensors", "metrics.json", "curves.png", "train_state.safetensors",
             "diagnostics.json", "diagnostics.png")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]+")
_SHOWN = ("data", "model", "seed", "data_dir", "download")


def safe_name(name: str, what: str) -> str:
    """``name`` if it is a plain folder name (letters, digits, ``._+=,-``, not starting with a
    dot), else :class:`ConfigError` naming ``what`` and the value."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 120:
        raise ConfigError(f"{what}={name!r}; expected a plain folder name (letters, digits "
                          "and . _ + = , -; not starting with '.'; at most 120 characters)")
    return name


def run_folder_name(config: dict) -> str:
    """``DATA-MODEL[-key=value...]-seedN``: every option that differs from its default.

    Long names keep their start and end with a hash of the options in between.
    """
    from .config import TrainConfig

    defaults = TrainConfig().to_dict()
    data = Path(str(config.get("data", "data"))).stem or "data"
    parts = [data, str(config.get("model"))]
    for key, value in config.items():
        if key in _SHOWN or value == defaults.get(key):
            continue
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
        parts.append(f"{key}={text}")
    parts.append(f"seed{config.get('seed', 0)}")
    name = _UNSAFE.sub("_", "-".join(parts)).strip("._-") or "run"
    if len(name) > 100:
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
        name = f"{name[:60]}-{digest.hexdigest()[:10]}-seed{config.get('seed', 0)}"
    return name


def existing_run_files(folder: Path) -> list[str]:
    """The files of :data:`RUN_FILES` present in ``folder``."""
    return [f for f in RUN_FILES if (folder / f).exists()]


def read_small_text(path: Path, what: str, limit: int = 1 << 20) -> str:
    """The UTF-8 text of a small regular file (a TOML config or study file); a FIFO, a device
    or a file over ``limit`` bytes is refused before it is read."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ConfigError(f"{what} {path}: is not a regular file; expected a TOML file")
    size = path.stat().st_size
    if size > limit:
        raise ConfigError(f"{what} {path}: {size:,} bytes; a TOML file of options is at most "
                          f"{limit:,}")
    return path.read_text(encoding="utf-8-sig")  # a byte-order mark is not TOML: dropped


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Delete temp files that a killed process left beside :data:`RUN_FILES` (``.NAME.*.tmp``
    from :func:`gammabeta.io.atomic_write`); call it holding the folder's lock."""
    gone = []
    for name in RUN_FILES:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            gone.append(tmp.name)
    return gone


def check_run_folder(folder: Path, overwrite: bool, flag: str = "--out") -> None:
    """Refuse ``folder`` if it is a file, or holds an earlier run and ``overwrite`` is off."""
    if folder.is_symlink() and not folder.exists():
        raise OutputError(f"{flag} {folder}: is a symbolic link to {os.readlink(folder)}, "
                          "which does not exist")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder}: is a file, not a folder")
    if (folder / "study.json").exists():
        raise OutputError(f"{flag} {folder} is a study's folder (it holds study.json); choose "
                          f"another {flag}")
    if folder.is_dir() and not overwrite:
        found = existing_run_files(folder)
        if found:
            raise OutputError(
                f"{flag} {folder} holds an earlier run ({', '.join(found)}); pass --overwrite "
                f"to replace it, --resume {folder} to continue it, or choose another {flag}")


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[Path]:
    """Create ``folder`` if needed and hold an exclusive lock on it for the block.

    The lock is ``flock`` on the folder itself (nothing is left behind; the kernel releases
    it when the process dies). A second holder gets :class:`OutputError` at once.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:
        raise OutputError(f"cannot use {folder} as the output folder: {e.strerror or e}") \
            from e
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            raise OutputError(f"{folder} is in use by another gammabeta command (a train or "
                              "study run holds its lock); wait for it to finish or choose "
                              "another output folder") from None
        yield folder
    finally:
        os.close(fd)

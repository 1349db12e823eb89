"""PyTorch for parity tests: required in CI (a missing torch fails there), optional locally."""

from __future__ import annotations

import os

import pytest


def require_torch():
    """Return the torch module; in CI (``CI`` set) an ImportError fails the test run."""
    if os.environ.get("CI"):
        import torch  # noqa: PLC0415 - a hard failure in CI is the point

        return torch
    return pytest.importorskip("torch")

"""Figures (matplotlib, headless): training curves. Not imported by the core library."""

from __future__ import annotations

import io

from .io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Render ``fig`` to PNG in memory, then write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: dict, path, title: str = "") -> None:
    """Loss and accuracy per epoch (train and held-out) side by side, saved as PNG."""
    plt = _pyplot()
    epochs = history.get("epoch", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history.get("train_loss", []), label="train")
    if "val_loss" in history:
        ax1.plot(epochs, history["val_loss"], label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [100 * a for a in history.get("train_accuracy", [])], label="train")
    if "val_accuracy" in history:
        ax2.plot(epochs, [100 * a for a in history["val_accuracy"]], label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)

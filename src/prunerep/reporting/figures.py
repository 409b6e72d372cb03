"""Figures shared by the notebooks (matplotlib/seaborn, saved as PNG by `save_figure`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> plt.Figure:
    """Train loss and train/val accuracy per epoch, one colour per run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, history) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(epochs, [h["train_loss"] for h in history], color=color, marker="o", ms=3, label=name)
        ax_acc.plot(epochs, [h["train_acc"] for h in history], color=color, ls="--", alpha=0.6)
        if all("val_acc" in h for h in history):
            ax_acc.plot(epochs, [h["val_acc"] for h in history], color=color, marker="o", ms=3, label=f"{name} (val)")
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)  — dashed: train")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

"""Loss-curve plots (PNG) for training runs; matplotlib with the headless Agg backend."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_history(history: list[dict], path: Path, title: str) -> Path:
    """Train and held-out loss (nats/char) against training minutes."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    minutes = [h["minutes"] for h in history]
    ax.plot(minutes, [h["train_loss"] for h in history], label="train", marker=".")
    ax.plot(minutes, [h["val_loss"] for h in history], label="held-out", marker=".")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

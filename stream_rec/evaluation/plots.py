"""Figures of an evaluation report: each model's rolling hit rate over the stream (``evaluate --plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_rolling"]


def plot_rolling(report: dict[str, Any], out: str | Path) -> Path:
    """Draw ``report["rolling"]`` (from :func:`~stream_rec.evaluation.prequential.evaluate`), one line per model,
    to ``out``.

    The file type follows the suffix (png, svg, pdf). Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    rolling = report["rolling"]
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    try:
        for name, curve in rolling["models"].items():
            ax.plot(rolling["at"], curve, label=name, linewidth=1.4)
        ax.set_xlabel("scored events so far")
        ax.set_ylabel(f"HR@{rolling['k']}, last {rolling['window']:,} scored events")
        title = f"{Path(report['dataset']).name}: " if report.get("dataset") else ""
        ax.set_title(f"{title}prequential hit rate over the stream")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        path = Path(out)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path

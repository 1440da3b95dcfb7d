"""What every figure of the project shares: headless backend, colours, saving.

Importing this module selects matplotlib's Agg backend, so figures render
on machines without a display (training servers, CI, Bazel sandboxes). It is
the only viz module that imports pyplot; the others build their figures
through `grid` / `new_figure` and write them through `save_figure`, which
writes a temporary name in the target folder and then renames it (a reader
never sees half a PNG) and always closes the figure (long evaluation runs do
not pile up open figures). The conventions are described in docs/figures.md.
"""

from __future__ import annotations

import math
import os

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lma_tf import atomic, textsafe  # noqa: E402

DPI = 100
STRAIN_LIMIT = 0.2  # colour scale -0.2..+0.2, as in the DENSE literature
STRAIN_CMAP = "RdBu_r"  # red = stretch (+), blue = shortening (-)
SCAR_COLOUR = "tab:purple"  # scar bands beside strain matrices
TOS_CMAP = "turbo"  # early (17 ms) blue ... late red
SCAR_CMAP = "Purples"
MISSING_COLOUR = "lightgrey"  # a sector or segment with no value
# Scar sectors have TOS 17 ms, the dark end of TOS_CMAP: outline them in a
# colour that stands out against it.
SCAR_OUTLINE_COLOUR = "magenta"


def save_figure(fig: Figure, path: str, dpi: int = DPI) -> str:
    """Saves `fig` atomically (format from the extension, PNG by default).

    The figure is closed afterwards, whether saving worked or not. Returns
    `path`.
    """
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def output_path(folder: str, stem: object, suffix: str = ".png") -> str:
    """`folder/{safe stem}{suffix}` for a file named after data (an id).

    The stem goes through `textsafe.safe_name` and the result is checked to
    stay inside `folder` (`textsafe.inside`), so an id like `../x` or
    `a/../../b` can never write elsewhere.

    Raises:
      UsageError: the name would leave `folder` (e.g. through a symlink).
    """
    name = textsafe.safe_name(stem) + suffix
    textsafe.inside(folder, name)
    return os.path.join(folder, name)


def grid(
    n: int, max_cols: int = 3, panel: tuple[float, float] = (4.5, 3.5)
) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels, at most `max_cols` per row; spare cells hidden."""
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(panel[0] * cols, panel[1] * rows),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty pyplot figure (closed again by `save_figure`)."""
    return plt.figure(figsize=figsize)


def colormap(name: str, missing: bool = False) -> matplotlib.colors.Colormap:
    """The registered colormap `name`; with `missing`, NaN drawn MISSING_COLOUR."""
    cmap = matplotlib.colormaps[name]
    return cmap.with_extremes(bad=MISSING_COLOUR) if missing else cmap


def rgba(colour: str) -> np.ndarray:
    """(4,) RGBA of a matplotlib colour name."""
    return np.array(matplotlib.colors.to_rgba(colour))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D mask (no wrap-around)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2])]


def sector_vector(name: str, value, num_sectors: int) -> np.ndarray | None:
    """`value` as a float (num_sectors,) vector; None stays None.

    Raises:
      ValueError: naming `name`, when the shape is not (num_sectors,).
    """
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (num_sectors,):
        raise ValueError(f"{name} has shape {arr.shape}, expected ({num_sectors},)")
    return arr

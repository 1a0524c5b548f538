"""Figures of the paper, for any fitted detector (matplotlib is optional).

- :func:`plot_qualitative`: input, pseudo-healthy reconstruction(s), anomaly map, predicted
  mask and ground truth, one row per image (the paper's Figure 2).
- :func:`plot_parameter_grid`: a metric over the ``noise_level x mask_threshold`` grid of a
  fitted :class:`~sklearn.model_selection.GridSearchCV` (Figure 3, left).
- :func:`plot_image_scores`: box plots of an image-level score on healthy and diseased
  images for several settings (Figure 3, right).
- :func:`plot_training_history`: training and held-out losses of a fitted detector
  (``history_``), to see whether training has plateaued.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
display needed); save it with ``fig.savefig(path)``. Install matplotlib with
``pip install "skberdiff[plot]"``.
"""

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_images, check_int, check_maps

__all__ = ["plot_qualitative", "plot_parameter_grid", "plot_image_scores",
           "plot_training_history"]


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "skberdiff.plotting needs matplotlib: pip install 'skberdiff[plot]'."
        ) from exc
    return Figure(figsize=figsize)


def plot_qualitative(X: ArrayLike, reconstructions: dict, anomaly_maps: ArrayLike,
                     masks: ArrayLike, y_true: ArrayLike | None = None, *, channel: int = -1,
                     channel_name: str | None = None, rows=None, title: str | None = None):
    """Qualitative panel: input, reconstructions, anomaly map, mask and ground truth.

    Parameters
    ----------
    X : array-like of shape (n, c, h, w)
        Input images.
    reconstructions : dict of str to array-like of shape (n, c, h, w)
        Named reconstructions (e.g. ``{"masked": ..., "autoencoder alone": ...}``).
    anomaly_maps : array-like of shape (n, h, w)
        Anomaly maps shown in the map column.
    masks : array-like of shape (n, h, w)
        Predicted segmentations.
    y_true : array-like of shape (n, h, w), default=None
        Ground-truth masks (column omitted when None).
    channel : int, default=-1
        Channel of the images shown (the last one, FLAIR in BRATS order).
    channel_name : str, default=None
        Its name in the column title.
    rows : sequence of int, default=None
        Images to show (default: all).
    title : str, default=None
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((2, 1, 8, 8))
    >>> fig = plot_qualitative(X, {"x_hat": X}, X[:, 0], X[:, 0] > 0.5, X[:, 0] > 0.9)
    >>> len(fig.axes)
    10
    """
    X = check_images(X)
    maps = check_maps(anomaly_maps, name="anomaly_maps")
    recon = {name: check_images(v, name=f"reconstructions[{name!r}]")
             for name, v in reconstructions.items()}
    masks = np.asarray(masks, dtype=bool)
    truth = None if y_true is None else np.asarray(y_true, dtype=bool)
    for what, array in [("anomaly_maps", maps), ("masks", masks), ("y_true", truth)] + [
            (f"reconstructions[{k!r}]", v) for k, v in recon.items()]:
        if array is not None and len(array) != X.shape[0]:
            raise ValueError(f"{what} holds {len(array)} images but X holds {X.shape[0]}.")
    rows = list(range(X.shape[0])) if rows is None else _check_rows(rows, X.shape[0])
    if not rows:
        raise ValueError("rows selects no image.")
    name = channel_name or f"channel {channel % X.shape[1]}"
    columns = [f"input ({name})"] + [f"x_hat {k}" for k in recon] + ["anomaly map", "mask"]
    if truth is not None:
        columns.append("ground truth")
    fig = _figure((1.7 * len(columns), 1.8 * len(rows) + (0.3 if title else 0)))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, i in enumerate(rows):
        panels = [(X[i, channel], "gray", (0, 1))]
        panels += [(v[i, channel], "gray", (0, 1)) for v in recon.values()]
        panels += [(maps[i], "inferno", (None, None)), (masks[i], "gray", (0, 1))]
        if truth is not None:
            panels.append((truth[i], "gray", (0, 1)))
        for c, (ax, (image, cmap, (vmin, vmax))) in enumerate(zip(axes[r], panels)):
            ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _grid_results(search):
    results = getattr(search, "cv_results_", search)
    if not isinstance(results, dict) or "params" not in results:
        raise TypeError("Pass a fitted GridSearchCV or its cv_results_ dict.")
    return results


def plot_parameter_grid(search, *, metric: str = "score", rows: str = "noise_level",
                        columns: str = "mask_threshold", ax=None, title: str | None = None,
                        column_labels: dict | None = None):
    """Heat map of a search's mean test score over two parameters (Figure 3, left).

    Parameters
    ----------
    search : GridSearchCV or dict
        A fitted search, or its ``cv_results_`` (any dict with ``params`` and
        ``mean_test_<metric>`` lists).
    metric : str, default="score"
        Scorer name (``"score"`` for a single-metric search, e.g. ``"dice"`` for
        ``scoring=pixel_scores``).
    rows, columns : str, default="noise_level", "mask_threshold"
        Parameters on the two axes (``"det__noise_level"`` in a Pipeline also works).
    ax : matplotlib.axes.Axes, default=None
        Where to draw; a new figure by default.
    title : str, default=None
        Axes title (default: the metric).
    column_labels : dict, default=None
        Tick labels for column values (e.g. ``{0.0: "0 (no mask)"}``).

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> results = {"params": [{"noise_level": L, "mask_threshold": P}
    ...                       for L in (100, 200) for P in (0.0, 0.5)],
    ...            "mean_test_score": [0.1, 0.3, 0.2, 0.4]}
    >>> fig = plot_parameter_grid(results)
    >>> fig.axes[0].get_ylabel()
    'noise_level'
    """
    results = _grid_results(search)
    key = f"mean_test_{metric}"
    if key not in results:
        raise KeyError(f"{key!r} is not in the search results; metrics present: "
                       f"{sorted(k[10:] for k in results if k.startswith('mean_test_'))}.")
    params = results["params"]
    row_values = sorted({p[rows] for p in params})
    col_values = sorted({p[columns] for p in params})
    values = np.full((len(row_values), len(col_values)), np.nan)
    for p, v in zip(params, results[key]):
        values[row_values.index(p[rows]), col_values.index(p[columns])] = v
    if ax is None:
        fig = _figure((1.1 * len(col_values) + 2.2, 0.6 * len(row_values) + 1.6))
        ax = fig.subplots()
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    labels = column_labels or {}
    ax.set_xticks(range(len(col_values)), [
        labels.get(v, f"{v:g}" if isinstance(v, float) else str(v)) for v in col_values],
        fontsize=8)
    ax.set_yticks(range(len(row_values)), [str(v) for v in row_values])
    ax.set_xlabel(columns)
    ax.set_ylabel(rows)
    ax.set_title(title or metric, fontsize=10)
    mean = np.nanmean(values)
    for i in range(len(row_values)):
        for j in range(len(col_values)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="w" if values[i, j] < mean else "k")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_image_scores(groups: dict, *, ylabel: str = "image anomaly score",
                      reference_lines: dict | None = None, ax=None, title: str | None = None):
    """Box plots of image-level scores, healthy beside diseased, per setting (Figure 3, right).

    Parameters
    ----------
    groups : dict of str to (array-like, array-like)
        Setting label -> (scores of healthy images, scores of diseased images), higher =
        more anomalous (e.g. ``-det.score_samples(X)``).
    ylabel : str, default="image anomaly score"
        Axis label.
    reference_lines : dict of str to float, default=None
        Setting label -> a value drawn as a dashed line over its pair of boxes (e.g. the
        expected share of injected flips).
    ax : matplotlib.axes.Axes, default=None
        Where to draw; a new figure by default.
    title : str, default=None
        Axes title.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_image_scores({"L=200": (rng.random(10), 1 + rng.random(10))})
    >>> len(fig.axes)
    1
    """
    if not groups:
        raise ValueError("groups is empty.")
    if ax is None:
        fig = _figure((max(3.5, 1.9 * len(groups) + 1.5), 3.6))
        ax = fig.subplots()
    else:
        fig = ax.figure
    positions, data, colors = [], [], []
    for k, (label, (healthy, diseased)) in enumerate(groups.items()):
        for j, (values, color) in enumerate(((healthy, "tab:blue"), (diseased, "tab:orange"))):
            values = np.asarray(values, dtype=np.float64).ravel()
            if values.size == 0 or not np.isfinite(values).all():
                raise ValueError(f"scores of {label!r} must be finite and non-empty.")
            positions.append(3 * k + j)
            data.append(values)
            colors.append(color)
        if reference_lines and label in reference_lines:
            ax.hlines(reference_lines[label], 3 * k - 0.4, 3 * k + 1.4, colors="grey",
                      linestyles="dashed", linewidth=1)
    parts = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True)
    for patch, color in zip(parts["boxes"], colors):
        patch.set_facecolor(color)
        patch.set_alpha(0.7)
    ax.set_xticks([3 * k + 0.5 for k in range(len(groups))], list(groups))
    ax.set_ylabel(ylabel)
    ax.plot([], [], color="tab:blue", lw=6, alpha=0.7, label="healthy")
    ax.plot([], [], color="tab:orange", lw=6, alpha=0.7, label="diseased")
    if reference_lines:
        ax.plot([], [], color="grey", ls="dashed", label="reference")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_history(history: dict, *, keys=("loss", "validation_loss",
                                                   "reconstruction"), title: str | None = None):
    """Loss curves of a fitted detector's ``history_``, one panel per network.

    Parameters
    ----------
    history : dict
        ``det.history_``: ``{"autoencoder": [...], "diffusion": [...]}`` lists of records
        with a ``"step"`` and loss values.
    keys : sequence of str, default=("loss", "validation_loss", "reconstruction")
        Record keys drawn when present (``validation_loss`` is the diffusion loss on the
        held-out calibration images).
    title : str, default=None
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> history = {"diffusion": [{"step": 10, "loss": 0.9, "validation_loss": 0.95},
    ...                          {"step": 20, "loss": 0.7, "validation_loss": 0.8}]}
    >>> len(plot_training_history(history).axes)
    1
    """
    panels = [(name, records) for name, records in history.items() if records]
    if not panels:
        raise ValueError("history holds no records.")
    fig = _figure((4.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, records) in zip(axes, panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=key, lw=1.2 if key == "validation_loss" else 0.8,
                        marker="o" if key == "validation_loss" else None, ms=3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _check_rows(rows, n):
    return [check_int(r, "rows", low=0, high=n - 1) for r in rows]

"""Tests of skberdiff.plotting: every figure builds, saves and shows the right values."""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from skberdiff.plotting import (  # noqa: E402
    plot_image_scores,
    plot_parameter_grid,
    plot_qualitative,
    plot_training_history,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_saves_png(fig, tmp_path, name="figure.png"):
    assert isinstance(fig, Figure)
    path = tmp_path / name
    fig.savefig(path)
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture
def panel_data(rng):
    X = rng.random((3, 2, 8, 8)).astype(np.float32)
    x_hat = np.clip(X + 0.1, 0, 1)
    maps = np.abs(X - x_hat).mean(axis=1)
    return X, {"masked": x_hat, "autoencoder alone": x_hat * 0.5}, maps, maps > 0.05, X[:, 0] > 0.9


def _grid_results(rows=(100, 200, 300), columns=(0.0, 0.25, 0.5)):
    """cv_results_-like dict, params in shuffled order, score = row index * 10 + column index."""
    params, scores = [], []
    pairs = [(i, j) for i in range(len(rows)) for j in range(len(columns))]
    for k in np.random.default_rng(1).permutation(len(pairs)):
        i, j = pairs[k]
        params.append({"noise_level": rows[i], "mask_threshold": columns[j]})
        scores.append(i * 10 + j)
    return {"params": params, "mean_test_score": np.array(scores, dtype=float)}


def _cell_texts(ax):
    """``{(row, column): text}`` of the annotations in a heat map."""
    return {(int(round(t.get_position()[1])), int(round(t.get_position()[0]))): t.get_text()
            for t in ax.texts}


# --------------------------------------------------------------------------------------
# plot_qualitative
# --------------------------------------------------------------------------------------


def test_plot_qualitative_axes_titles_and_png(panel_data, tmp_path):
    X, recon, maps, masks, truth = panel_data
    fig = plot_qualitative(X, recon, maps, masks, truth, channel_name="FLAIR", title="demo")
    # 3 rows x (input + 2 reconstructions + map + mask + ground truth).
    assert len(fig.axes) == 3 * 6
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["input (FLAIR)", "x_hat masked", "x_hat autoencoder alone",
                      "anomaly map", "mask", "ground truth"]
    assert all(ax.get_title() == "" for ax in fig.axes[6:])
    assert fig._suptitle.get_text() == "demo"
    _assert_saves_png(fig, tmp_path)


def test_plot_qualitative_without_truth_and_selected_rows(panel_data, tmp_path):
    X, recon, maps, masks, _ = panel_data
    fig = plot_qualitative(X, {"masked": recon["masked"]}, maps, masks, rows=[2, np.int64(0)],
                           channel=0)
    assert len(fig.axes) == 2 * 4
    assert fig.axes[0].get_title() == "input (channel 0)"
    # Row order follows rows: the first panel shows image 2, the fifth image 0.
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), X[2, 0])
    np.testing.assert_array_equal(fig.axes[4].images[0].get_array(), X[0, 0])
    _assert_saves_png(fig, tmp_path)


def test_plot_qualitative_default_channel_is_the_last(panel_data):
    X, recon, maps, masks, _ = panel_data
    fig = plot_qualitative(X, recon, maps, masks)
    assert fig.axes[0].get_title() == "input (channel 1)"
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), X[0, 1])


@pytest.mark.parametrize(
    "rows, error, match",
    [([3], ValueError, r"rows must be in \[0, 2\], got 3"),
     ([0, -1], ValueError, r"rows must be in \[0, 2\], got -1"),
     ([], ValueError, "rows selects no image"),
     ([True], TypeError, "rows must be an integer, got bool"),
     ([0.5], TypeError, "rows must be an")],
)
def test_plot_qualitative_rejects_bad_rows(panel_data, rows, error, match):
    X, recon, maps, masks, _ = panel_data
    with pytest.raises(error, match=match):
        plot_qualitative(X, recon, maps, masks, rows=rows)


def test_plot_qualitative_validates_images(panel_data):
    X, recon, maps, masks, _ = panel_data
    with pytest.raises(ValueError, match=r"X must have shape \(n, c, h, w\)"):
        plot_qualitative(X[0], recon, maps, masks)
    with pytest.raises(ValueError, match=r"anomaly_maps must be maps of shape"):
        plot_qualitative(X, recon, X, masks)
    with pytest.raises(ValueError, match=r"reconstructions\['masked'\] contains NaN"):
        plot_qualitative(X, {"masked": np.full_like(X, np.nan)}, maps, masks)


def test_plot_qualitative_rejects_reconstructions_of_another_length(panel_data):
    X, recon, maps, masks, _ = panel_data
    with pytest.raises(ValueError, match="reconstructions"):
        plot_qualitative(X, {"masked": recon["masked"][:1]}, maps, masks)


# --------------------------------------------------------------------------------------
# plot_parameter_grid
# --------------------------------------------------------------------------------------


def test_plot_parameter_grid_places_each_value_in_its_cell(tmp_path):
    fig = plot_parameter_grid(_grid_results())
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the heat map and its colour bar
    assert ax.get_ylabel() == "noise_level" and ax.get_xlabel() == "mask_threshold"
    assert ax.get_title() == "score"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["100", "200", "300"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.25", "0.5"]
    assert _cell_texts(ax) == {(i, j): f"{i * 10 + j:.3f}" for i in range(3) for j in range(3)}
    np.testing.assert_array_equal(ax.images[0].get_array(),
                                  [[0, 1, 2], [10, 11, 12], [20, 21, 22]])
    _assert_saves_png(fig, tmp_path)


def test_plot_parameter_grid_missing_cells_have_no_text():
    results = _grid_results()
    keep = [k for k, p in enumerate(results["params"])
            if (p["noise_level"], p["mask_threshold"]) != (200, 0.25)]
    results = {"params": [results["params"][k] for k in keep],
               "mean_test_score": results["mean_test_score"][keep]}
    texts = _cell_texts(plot_parameter_grid(results).axes[0])
    assert (1, 1) not in texts and len(texts) == 8


def test_plot_parameter_grid_options_and_existing_axes(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    out = plot_parameter_grid(_grid_results(), ax=ax, title="Dice",
                              column_labels={0.0: "0 (no mask)"})
    assert out is fig and out.axes[0] is ax
    assert ax.get_title() == "Dice"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0 (no mask)", "0.25", "0.5"]
    _assert_saves_png(out, tmp_path)


class _GridEstimator(BaseEstimator):
    """A cheap estimator whose score is a known function of the two grid parameters."""

    def __init__(self, noise_level=100, mask_threshold=0.0):
        self.noise_level = noise_level
        self.mask_threshold = mask_threshold

    def fit(self, X, y=None):
        return self

    def score(self, X, y=None):
        return self.noise_level / 100 + self.mask_threshold


def test_plot_parameter_grid_with_a_fitted_grid_search(tmp_path):
    search = GridSearchCV(_GridEstimator(), {"noise_level": [300, 100, 200],
                                             "mask_threshold": [0.5, 0.0]}, cv=2)
    search.fit(np.zeros((4, 1)))
    fig = plot_parameter_grid(search)
    texts = _cell_texts(fig.axes[0])
    assert texts == {(i, j): f"{(i + 1) + 0.5 * j:.3f}" for i in range(3) for j in range(2)}
    _assert_saves_png(fig, tmp_path)


def test_plot_parameter_grid_object_with_cv_results_and_pipeline_names():
    results = _grid_results()
    results["params"] = [{f"det__{k}": v for k, v in p.items()} for p in results["params"]]
    results["mean_test_dice"] = results.pop("mean_test_score")
    results["mean_test_auprc"] = np.zeros(len(results["params"]))
    search = SimpleNamespace(cv_results_=results)
    fig = plot_parameter_grid(search, metric="dice", rows="det__noise_level",
                              columns="det__mask_threshold")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "det__noise_level" and ax.get_title() == "dice"
    assert _cell_texts(ax)[(2, 1)] == "21.000"


def test_plot_parameter_grid_missing_metric_names_available_ones():
    results = _grid_results()
    results["mean_test_dice"] = results.pop("mean_test_score")
    results["mean_test_auprc"] = np.zeros(len(results["params"]))
    with pytest.raises(KeyError, match=r"'mean_test_score' is not in the search results; "
                                       r"metrics present: \['auprc', 'dice'\]"):
        plot_parameter_grid(SimpleNamespace(cv_results_=results))


@pytest.mark.parametrize("search", [None, {"mean_test_score": [1.0]}, [1, 2],
                                    SimpleNamespace(best_score_=1.0)])
def test_plot_parameter_grid_needs_search_results(search):
    with pytest.raises(TypeError, match="Pass a fitted GridSearchCV or its cv_results_ dict"):
        plot_parameter_grid(search)


def test_plot_parameter_grid_column_labels_for_int_columns():
    fig = plot_parameter_grid(_grid_results(), rows="mask_threshold", columns="noise_level",
                              column_labels={100: "L=100"})
    assert fig.axes[0].get_xticklabels()[0].get_text() == "L=100"


# --------------------------------------------------------------------------------------
# plot_image_scores
# --------------------------------------------------------------------------------------


def test_plot_image_scores_boxes_ticks_and_png(rng, tmp_path):
    groups = {"L=100": (rng.random(10), 1 + rng.random(12)),
              "L=200": (rng.random(8).tolist(), 2 + rng.random(9))}
    fig = plot_image_scores(groups, ylabel="-score_samples", title="scores",
                            reference_lines={"L=200": 0.5})
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L=100", "L=200"]
    np.testing.assert_allclose(ax.get_xticks(), [0.5, 3.5])
    assert ax.get_ylabel() == "-score_samples" and ax.get_title() == "scores"
    assert len(ax.patches) == 4  # healthy and diseased box per setting
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["healthy", "diseased",
                                                                   "reference"]
    assert len(ax.collections) == 1  # the dashed reference line
    _assert_saves_png(fig, tmp_path)


def test_plot_image_scores_on_existing_axes(rng):
    fig = Figure()
    ax = fig.subplots()
    out = plot_image_scores({"a": (rng.random(3), rng.random(3))}, ax=ax)
    assert out is fig
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["healthy", "diseased"]


@pytest.mark.parametrize(
    "groups, match",
    [({}, "groups is empty"),
     ({"L=200": ([], [1.0, 2.0])}, r"scores of 'L=200' must be finite and non-empty"),
     ({"L=200": ([0.1, 0.2], [])}, r"scores of 'L=200' must be finite and non-empty"),
     ({"a": ([0.1], [0.2]), "b": ([0.1, np.nan], [0.2])}, r"scores of 'b' must be finite"),
     ({"c": ([0.1], [np.inf])}, r"scores of 'c' must be finite")],
)
def test_plot_image_scores_rejects_empty_or_nan_groups(groups, match):
    with pytest.raises(ValueError, match=match):
        plot_image_scores(groups)


# --------------------------------------------------------------------------------------
# plot_training_history
# --------------------------------------------------------------------------------------


def _labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_plot_training_history_draws_validation_loss(tmp_path):
    history = {
        "autoencoder": [{"step": s, "loss": 1 / s, "reconstruction": 2 / s} for s in (1, 2, 3)],
        "diffusion": [{"step": 10, "loss": 0.9, "validation_loss": 0.95},
                      {"step": 20, "loss": 0.7}, {"step": 30, "loss": 0.6,
                                                  "validation_loss": 0.8}],
    }
    fig = plot_training_history(history, title="training")
    assert len(fig.axes) == 2
    ae, diff = fig.axes
    assert ae.get_title() == "autoencoder" and diff.get_title() == "diffusion"
    assert _labels(ae) == ["loss", "reconstruction"]
    assert _labels(diff) == ["loss", "validation_loss"]
    val = diff.get_lines()[1]
    np.testing.assert_array_equal(val.get_xdata(), [10, 30])
    np.testing.assert_array_equal(val.get_ydata(), [0.95, 0.8])
    assert val.get_marker() == "o"
    assert fig._suptitle.get_text() == "training"
    _assert_saves_png(fig, tmp_path)


def test_plot_training_history_without_validation_loss_and_empty_panels():
    history = {"autoencoder": [], "diffusion": [{"step": 1, "loss": 1.0},
                                                {"step": 2, "loss": 0.5}]}
    fig = plot_training_history(history)
    assert len(fig.axes) == 1
    assert _labels(fig.axes[0]) == ["loss"]


def test_plot_training_history_custom_keys():
    history = {"diffusion": [{"step": 1, "loss": 1.0, "validation_loss": 2.0}]}
    fig = plot_training_history(history, keys=("validation_loss",))
    assert _labels(fig.axes[0]) == ["validation_loss"]


@pytest.mark.parametrize("history", [{}, {"autoencoder": [], "diffusion": []}])
def test_plot_training_history_needs_records(history):
    with pytest.raises(ValueError, match="history holds no records"):
        plot_training_history(history)

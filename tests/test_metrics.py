"""Tests for skberdiff.metrics."""

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator
from sklearn.metrics import average_precision_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skberdiff.metrics import (
    auprc_scorer,
    dice_score,
    dice_scorer,
    image_auroc,
    image_auroc_scorer,
    image_average_precision,
    image_average_precision_scorer,
    image_scores,
    make_detection_scorer,
    make_pixel_scorer,
    pixel_auprc,
    pixel_scores,
    psnr,
    select_dice_threshold,
)
from skberdiff.postprocessing import paper_postprocess

mask_pairs = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda shape: st.tuples(arrays(np.bool_, shape), arrays(np.bool_, shape))
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


class FakeDetector(BaseEstimator):
    """Segments channel 0 of X at ``threshold``; its map is channel 0 itself."""

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def fit(self, X, y=None):
        self.calls_ = []
        return self

    def detect(self, X, outputs=("anomaly_map", "mask")):
        self.calls_.append((X, tuple(outputs)))
        maps = np.asarray(X, dtype=np.float32)[:, 0]
        # The brightest pixel makes the image more anomalous: higher = more normal.
        return SimpleNamespace(anomaly_map=maps, mask=maps > self.threshold,
                               score_samples=-maps.reshape(len(maps), -1).max(1))


@pytest.fixture
def lesion_data(rng):
    X = rng.random((6, 2, 8, 8)) * 0.4
    y = np.zeros((6, 8, 8), dtype=bool)
    for i in range(6):
        y[i, i : i + 3, 2:5] = True
    X[:, 0][y] += 0.5  # lesions are bright in channel 0, but not all above 0.7
    X[:, 0, 0, 0] = 0.6  # one false positive per image at threshold 0.5
    return X, y


# --- dice ---------------------------------------------------------------------------


def test_dice_hand_example_per_image_pooled_and_array():
    y_true = np.zeros((2, 6, 6), dtype=bool)
    y_pred = np.zeros((2, 6, 6), dtype=bool)
    y_true[0, :4, :4] = True  # 16 pixels, found exactly
    y_pred[0, :4, :4] = True
    y_true[1, :2, :2] = True  # 4 pixels, missed
    y_pred[1, 4:, 4:] = True  # 4 wrong pixels
    assert_allclose(dice_score(y_true, y_pred, average=None), [1.0, 0.0])
    assert dice_score(y_true, y_pred) == pytest.approx(0.5)
    # Pooled: 2 * 16 / (20 + 20) weights the large lesion more.
    assert dice_score(y_true, y_pred, average="pooled") == pytest.approx(0.8)


@pytest.mark.parametrize(
    "gt_pixels, pred_pixels, empty_score, expected",
    [
        (0, 0, 1.0, 1.0),  # correct "nothing there"
        (0, 0, 0.25, 0.25),
        (0, 3, 1.0, 0.0),  # false positive on a healthy image
        (3, 0, 1.0, 0.0),  # missed lesion
    ],
)
def test_dice_with_empty_masks(gt_pixels, pred_pixels, empty_score, expected):
    y_true = np.zeros((1, 4, 4), dtype=bool)
    y_pred = np.zeros((1, 4, 4), dtype=bool)
    y_true[0, 0, :gt_pixels] = True
    y_pred[0, 1, :pred_pixels] = True
    for average in ("per_image", "pooled"):
        assert dice_score(y_true, y_pred, average=average, empty_score=empty_score) == expected


@settings(max_examples=40, deadline=None)
@given(pair=mask_pairs)
def test_dice_is_symmetric_bounded_and_one_only_for_equal_masks(pair):
    a, b = pair
    scores = dice_score(a, b, average=None)
    assert_array_equal(scores, dice_score(b, a, average=None))
    assert ((scores >= 0) & (scores <= 1)).all()
    assert_array_equal(dice_score(a, a, average=None), 1.0)
    either_nonempty = a.any(axis=(1, 2)) | b.any(axis=(1, 2))
    equal = (a == b).all(axis=(1, 2))
    assert_array_equal((scores == 1.0)[either_nonempty], equal[either_nonempty])
    assert 0.0 <= dice_score(a, b, average="pooled") <= 1.0


def test_dice_accepts_channel_axis_and_integer_masks():
    y = np.zeros((2, 1, 4, 4), dtype=np.int64)
    y[:, 0, 1, 1] = 2
    assert dice_score(y, y[:, 0] > 0) == 1.0


@pytest.mark.parametrize(
    "func, args, match",
    [
        (dice_score, (np.zeros((2, 4, 4)), np.zeros((2, 4, 5))), r"\(2, 4, 4\).*\(2, 4, 5\)"),
        (pixel_auprc, (np.ones((2, 4, 4)), np.zeros((3, 4, 4))), r"\(2, 4, 4\).*\(3, 4, 4\)"),
        (psnr, (np.ones((1, 2, 4, 4)), np.ones((1, 1, 4, 4))), r"\(1, 2, 4, 4\).*\(1, 1, 4, 4\)"),
    ],
)
def test_mismatched_shapes_name_both(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


@pytest.mark.parametrize("func", [dice_score, pixel_auprc])
def test_unknown_average_is_rejected(func):
    with pytest.raises(ValueError, match="average must be one of"):
        func(np.ones((1, 2, 2)), np.ones((1, 2, 2)), average="macro")


# --- AUPRC ---------------------------------------------------------------------------


def test_auprc_of_a_perfect_map_is_one(rng):
    y = rng.random((3, 8, 8)) < 0.2
    y[:, 0, 0] = True
    maps = y + 0.1 * rng.random(y.shape)  # every lesion pixel scores higher
    assert pixel_auprc(y, maps) == pytest.approx(1.0)
    assert pixel_auprc(y, maps, average="pooled") == pytest.approx(1.0)


def test_auprc_of_a_constant_map_is_the_positive_rate():
    y = np.zeros((2, 4, 5), dtype=bool)
    y[0, 0, :2] = True  # rate 0.1
    y[1, :2, :] = True  # rate 0.5
    maps = np.ones((2, 4, 5))
    assert_allclose(pixel_auprc(y, maps, average=None), [0.1, 0.5])
    assert pixel_auprc(y, maps) == pytest.approx(0.3)
    assert pixel_auprc(y, maps, average="pooled") == pytest.approx(12 / 40)


def test_auprc_matches_sklearn_per_image_and_pooled(rng):
    y = rng.random((3, 6, 6)) < 0.3
    maps = rng.random((3, 6, 6)) + 0.3 * y
    expected = [average_precision_score(y[i].ravel(), maps[i].ravel()) for i in range(3)]
    assert_allclose(pixel_auprc(y, maps, average=None), expected, rtol=1e-6)
    assert pixel_auprc(y, maps) == pytest.approx(np.mean(expected), rel=1e-6)
    assert pixel_auprc(y, maps, average="pooled") == pytest.approx(
        average_precision_score(y.ravel(), maps.ravel()), rel=1e-6
    )


def test_auprc_skips_empty_ground_truth_with_one_warning():
    y = np.zeros((4, 4, 4), dtype=bool)
    y[0, 0, 0] = True
    y[1, 1, 1] = True
    maps = np.zeros((4, 4, 4))
    maps[0, 0, 0] = 1.0  # AUPRC 1
    maps[1] = 1.0  # constant: AUPRC 1/16
    with pytest.warns(UserWarning, match="skipped 2 of 4 image") as record:
        score = pixel_auprc(y, maps)
    assert len(record) == 1
    assert score == pytest.approx((1.0 + 1 / 16) / 2)
    per_image = pixel_auprc(y, maps, average=None)
    assert_allclose(per_image[:2], [1.0, 1 / 16])
    assert np.isnan(per_image[2:]).all()


@pytest.mark.parametrize("average", ["per_image", "pooled"])
def test_auprc_without_any_anomalous_pixel_raises(average):
    with pytest.raises(ValueError, match="no image in y_true has an anomalous pixel"):
        pixel_auprc(np.zeros((2, 3, 3)), np.ones((2, 3, 3)), average=average)


def test_auprc_array_without_any_anomalous_pixel_is_all_nan():
    assert np.isnan(pixel_auprc(np.zeros((2, 3, 3)), np.ones((2, 3, 3)), average=None)).all()


# --- PSNR ----------------------------------------------------------------------------


def test_psnr_hand_values():
    x = np.full((2, 2, 2, 2), 0.5)
    x[1] = 1.0
    x_hat = x - 0.05  # RMSE 0.05 everywhere
    # 20 log10(0.5 / 0.05) = 20 and 20 log10(1 / 0.05) = 26.02
    assert_allclose(psnr(x, x_hat, average=None), [20.0, 20 * np.log10(20)])
    assert psnr(x, x_hat) == pytest.approx((20.0 + 20 * np.log10(20)) / 2)
    assert_allclose(psnr(x, x_hat, data_range=1.0, average=None), 20 * np.log10(20))


def test_psnr_of_identical_images_is_infinite():
    x = np.random.default_rng(0).random((2, 1, 4, 4))
    assert psnr(x, x) == np.inf
    assert_array_equal(psnr(x, x, average=None), [np.inf, np.inf])


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (-np.ones((1, 1, 2, 2)), {}, "negative maximum"),
        (np.ones((1, 1, 2, 2)), {"data_range": 0.0}, "data_range must be positive"),
        (np.ones((1, 1, 2, 2)), {"average": "pooled"}, "average must be one of"),
    ],
)
def test_psnr_rejects_bad_peaks_and_averages(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        psnr(x, x * 0.5, **kwargs)


# --- image AUROC ---------------------------------------------------------------------


def test_image_auroc_higher_score_is_more_anomalous():
    assert image_auroc([False, False, True, True], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert image_auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "labels, scores, match",
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "all 3 are anomalous"),
        ([0, 0], [0.1, 0.2], "all 2 are normal"),
        ([1, -1, 1], [0.1, 0.2, 0.3], "pass labels == -1"),
        ([0, 1], [0.1, 0.2, 0.3], r"\(2,\).*\(3,\)"),
        ([0, 1], [0.1, np.nan], "NaN"),
    ],
)
def test_image_auroc_errors(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        image_auroc(labels, scores)


# --- scorers -------------------------------------------------------------------------


def _double_channel_zero(X):
    X = X.copy()
    X[:, 0] *= 2.0
    return X


@pytest.mark.parametrize("in_pipeline", [False, True])
def test_scorers_equal_the_metrics_on_the_detector_output(lesion_data, in_pipeline):
    X, y = lesion_data
    detector = FakeDetector(threshold=0.5).fit(X)
    estimator = detector
    X_seen = X
    if in_pipeline:
        estimator = make_pipeline(FunctionTransformer(_double_channel_zero), detector)
        X_seen = _double_channel_zero(X)
    maps = X_seen[:, 0].astype(np.float32)
    expected_dice = dice_score(y, maps > 0.5)
    expected_auprc = pixel_auprc(y, maps)
    assert dice_scorer(estimator, X, y) == pytest.approx(expected_dice)
    assert auprc_scorer(estimator, X, y) == pytest.approx(expected_auprc)
    detector.calls_.clear()
    scores = pixel_scores(estimator, X, y)
    assert scores == pytest.approx({"dice": expected_dice, "auprc": expected_auprc})
    assert len(detector.calls_) == 1
    assert_array_equal(detector.calls_[0][0], X_seen)
    assert set(detector.calls_[0][1]) == {"anomaly_map", "mask"}


def test_pipeline_transform_changes_the_score(lesion_data):
    # Guards the unwrapping: doubling channel 0 pushes background above the threshold.
    X, y = lesion_data
    plain = dice_scorer(FakeDetector().fit(X), X, y)
    piped = dice_scorer(
        make_pipeline(FunctionTransformer(_double_channel_zero), FakeDetector()).fit(X), X, y
    )
    assert piped < plain


def test_single_metric_scorers_ask_only_for_the_output_they_use(lesion_data):
    X, y = lesion_data
    detector = FakeDetector().fit(X)
    dice_scorer(detector, X, y)
    auprc_scorer(detector, X, y)
    assert [outputs for _, outputs in detector.calls_] == [("mask",), ("anomaly_map",)]


def test_make_pixel_scorer_pooled_matches_the_metrics_and_pickles(lesion_data):
    X, y = lesion_data
    detector = FakeDetector().fit(X)
    scorer = pickle.loads(pickle.dumps(make_pixel_scorer(["dice", "auprc"], average="pooled")))
    maps = X[:, 0].astype(np.float32)
    assert scorer(detector, X, y) == pytest.approx(
        {
            "dice": dice_score(y, maps > 0.5, average="pooled"),
            "auprc": pixel_auprc(y, maps, average="pooled"),
        }
    )
    assert len(detector.calls_) == 1
    assert make_pixel_scorer("dice")(detector, X, y) == pytest.approx(dice_scorer(detector, X, y))


def test_make_pixel_scorer_passes_empty_score():
    X = np.zeros((2, 1, 4, 4))
    y = np.zeros((2, 4, 4), dtype=bool)
    detector = FakeDetector().fit(X)
    assert make_pixel_scorer("dice", empty_score=0.0)(detector, X, y) == 0.0
    assert dice_scorer(detector, X, y) == 1.0


@pytest.mark.parametrize(
    "metric, average, match",
    [
        ("iou", "per_image", "metric must be one of"),
        ((), "per_image", "metric must be one of"),
        ("dice", None, "average must be one of"),
    ],
)
def test_make_pixel_scorer_validates(metric, average, match):
    with pytest.raises(ValueError, match=match):
        make_pixel_scorer(metric, average=average)


def test_scorers_need_ground_truth(lesion_data):
    X, _ = lesion_data
    with pytest.raises(ValueError, match="need ground truth"):
        pixel_scores(FakeDetector().fit(X), X, None)
    with pytest.raises(ValueError, match="need pixel masks"):
        pixel_scores(FakeDetector().fit(X), X, np.ones(len(X)))


def test_pixel_scores_drives_a_grid_search(lesion_data):
    X, y = lesion_data
    search = GridSearchCV(
        FakeDetector(),
        {"threshold": [0.3, 0.55, 0.95]},
        scoring=pixel_scores,
        refit=False,
        cv=KFold(2),
        error_score="raise",
    ).fit(X, y)
    best = search.cv_results_["params"][np.argmax(search.cv_results_["mean_test_dice"])]
    assert best == {"threshold": 0.55}
    # AUPRC does not depend on the threshold.
    assert np.ptp(search.cv_results_["mean_test_auprc"]) == pytest.approx(0.0)


# --- threshold selection -----------------------------------------------------------


def test_select_dice_threshold_picks_the_best_candidate():
    rng = np.random.default_rng(0)
    y = np.zeros((3, 24, 24), bool)
    y[:, 6:14, 6:14] = True
    maps = rng.uniform(0, 1, y.shape) + 2.0 * y
    threshold, dice = select_dice_threshold(maps, y)
    assert 0.9 < threshold < 2.0
    assert dice == pytest.approx(1.0)
    # Noisier lesions: the chosen threshold is at least as good as any fixed one tried.
    maps = rng.uniform(0, 1, y.shape) + 0.6 * y
    threshold, dice = select_dice_threshold(maps, y)
    for t in (0.3, 0.6, 0.9):
        assert dice >= dice_score(y, paper_postprocess(maps, t, median_size=None)) - 1e-12


def test_select_dice_threshold_pooled_without_component_removal():
    y = np.zeros((2, 8, 8), bool)
    y[0, 1, 1] = True  # a one-pixel lesion survives only with min_size=0
    maps = y.astype(float) + 0.01 * np.arange(128).reshape(2, 8, 8) / 128
    t, dice = select_dice_threshold(maps, y, min_size=0, average="pooled")
    assert dice == pytest.approx(1.0) and t < 1.0
    _, dice10 = select_dice_threshold(maps, y, min_size=10, average="pooled")
    assert dice10 < 1.0
    with pytest.raises(ValueError, match="region selects no pixel"):
        select_dice_threshold(maps, y, np.zeros_like(y))


# --- image-level scorers -----------------------------------------------------------


def _screening_data(rng):
    """Healthy images (dim) and anomalous ones (one bright pixel), with masks and labels."""
    X = rng.random((8, 1, 6, 6)) * 0.3
    y = np.zeros((8, 6, 6), bool)
    for i in range(4, 8):
        y[i, 2, 3] = True
        X[i, 0, 2, 3] = 0.9
    return X, y, y.reshape(8, -1).any(1).astype(int)


def test_image_scorers_use_the_users_sign(rng):
    X, masks, labels = _screening_data(rng)
    detector = FakeDetector().fit(X)
    assert image_auroc_scorer(detector, X, labels) == pytest.approx(1.0)
    assert image_auroc_scorer(detector, X, masks) == pytest.approx(1.0)  # masks -> labels
    assert image_average_precision_scorer(detector, X, labels) == pytest.approx(1.0)
    assert image_scores(detector, X, labels) == {"image_auroc": 1.0,
                                                 "image_average_precision": 1.0}
    # scikit-learn's "roc_auc" string ranks by decision_function (higher = more normal),
    # the outlier convention, so on 1 = anomalous labels it reads 1 - AUROC.
    from sklearn.metrics import roc_auc_score

    normality = detector.detect(X).score_samples
    assert roc_auc_score(labels, normality) == pytest.approx(0.0)


def test_image_scorer_fails_if_it_ignores_the_anomaly(rng):
    X, _, labels = _screening_data(rng)
    flipped = np.r_[labels[4:], labels[:4]]  # labels that contradict the images
    assert image_auroc_scorer(FakeDetector().fit(X), X, flipped) == pytest.approx(0.0)


def test_image_scorers_drive_a_grid_search(rng):
    X, _, labels = _screening_data(rng)
    search = GridSearchCV(FakeDetector(), {"threshold": [0.3, 0.5]}, scoring=image_scores,
                          refit=False, cv=KFold(2, shuffle=True, random_state=0),
                          error_score="raise").fit(X, labels)
    assert np.all(search.cv_results_["mean_test_image_auroc"] == 1.0)


def test_detection_scorer_combines_pixel_and_image_metrics_in_one_pass(rng):
    X, masks, _ = _screening_data(rng)
    detector = FakeDetector().fit(X)
    scorer = pickle.loads(pickle.dumps(make_detection_scorer(("dice", "auprc", "image_auroc"))))
    scores = scorer(detector, X, masks)
    assert set(scores) == {"dice", "auprc", "image_auroc"}
    assert len(detector.calls_) == 1
    assert set(detector.calls_[0][1]) == {"mask", "anomaly_map", "score"}
    with pytest.raises(ValueError, match="metric must be one of"):
        make_detection_scorer("accuracy")


def test_image_labels_are_checked(rng):
    X, _, labels = _screening_data(rng)
    detector = FakeDetector().fit(X)
    with pytest.raises(ValueError, match="1/True for anomalous"):
        image_auroc_scorer(detector, X, 2 * labels - 1)
    with pytest.raises(ValueError, match="7 labels but X has 8"):
        image_auroc_scorer(detector, X, labels[:7])


def test_image_average_precision_matches_sklearn():
    labels, scores = [0, 0, 1, 1, 0], [0.1, 0.4, 0.35, 0.8, 0.2]
    assert image_average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores))
    with pytest.raises(ValueError, match="needs both normal and anomalous"):
        image_average_precision([1, 1], [0.2, 0.3])

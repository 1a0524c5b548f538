import importlib.util
import inspect
import os
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy import ndimage

from skberdiff import datasets
from skberdiff.datasets import (
    CHANNEL_NAMES,
    LESION_KINDS,
    SIZE_PRESETS,
    make_mni_benchmark,
    make_oct_like,
    make_toy_images,
)

requires_nilearn = pytest.mark.skipif(
    importlib.util.find_spec("nilearn") is None, reason="make_mni_benchmark needs nilearn"
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("nilearn")
    return make_mni_benchmark(size="tiny", return_lesion_free=True, random_state=0)


@pytest.fixture(scope="module")
def tiny_64():
    pytest.importorskip("nilearn")
    # Enough lesion slices to see every kind at a size where masks are well resolved.
    return make_mni_benchmark(
        size="tiny",
        image_size=64,
        n_train=6,
        n_val_lesion=4,
        n_test_lesion=16,
        n_test_healthy=4,
        return_lesion_free=True,
        random_state=1,
    )


# ---------------------------------------------------------------------------------------
# make_mni_benchmark: structure
# ---------------------------------------------------------------------------------------


def _pooled_auprc(y, maps):
    from skberdiff.metrics import pixel_auprc

    return pixel_auprc(y, maps, average="pooled")


def test_shapes_dtypes_and_ranges(tiny):
    assert tiny.X_train.shape == (8, 4, 32, 32)
    assert tiny.X_val.shape == (4, 4, 32, 32)
    assert tiny.y_val.shape == (4, 32, 32)
    assert tiny.X_test.shape == (8, 4, 32, 32)
    assert tiny.y_test.shape == (8, 32, 32)
    for name in ("X_train", "X_val", "X_test", "X_val_lesion_free", "X_test_lesion_free"):
        X = tiny[name]
        assert X.dtype == np.float32, name
        assert X.min() >= 0.0 and X.max() <= 1.0, name
        assert np.isfinite(X).all(), name
    assert tiny.y_val.dtype == bool and tiny.y_test.dtype == bool
    assert tiny.is_anomalous_test.dtype == bool
    assert_array_equal(tiny.is_anomalous_test, [True] * 4 + [False] * 4)
    assert tiny.channel_names == CHANNEL_NAMES == ("t1", "t1ce", "t2_like", "flair_like")
    assert tiny.slice_z_train.shape == (8,)
    assert len(tiny.lesions_test) == 8


def test_masks_nonempty_for_lesions_and_empty_for_healthy(tiny):
    assert tiny.y_val.any(axis=(1, 2)).all()
    assert tiny.y_test[tiny.is_anomalous_test].any(axis=(1, 2)).all()
    assert not tiny.y_test[~tiny.is_anomalous_test].any()
    kinds = tiny.lesion_kind_test
    assert all(k == "none" for k in kinds[~tiny.is_anomalous_test])
    for kind in kinds[tiny.is_anomalous_test]:
        assert set(kind.split("+")) <= set(LESION_KINDS)


def test_images_look_like_skull_stripped_brains(tiny):
    for X in (tiny.X_train, tiny.X_test):
        brain = X.max(axis=1) > 0
        fraction = brain.mean(axis=(1, 2))
        # A 197 x 233 mm brain slice in a 256 mm frame.
        assert ((fraction > 0.15) & (fraction < 0.75)).all()
        # Background (frame corners) is exactly zero, like BRATS.
        assert not brain[:, :3, :3].any()
        # CSF is bright in T2 and dark in FLAIR: the channels are not copies of each other.
        t2, flair = X[:, 2][brain], X[:, 3][brain]
        assert np.corrcoef(t2, flair)[0, 1] < 0.9


def test_lesions_lie_inside_the_brain(tiny, tiny_64):
    for data in (tiny, tiny_64):
        for X, y in ((data.X_val, data.y_val), (data.X_test, data.y_test)):
            brain = X.max(axis=1) > 0
            assert not (y & ~brain).any()


def test_lesions_change_the_image_only_near_the_mask(tiny_64):
    lesion = tiny_64.is_anomalous_test
    X, free = tiny_64.X_test[lesion], tiny_64.X_test_lesion_free[lesion]
    y = tiny_64.y_test[lesion]
    difference = np.abs(X - free).sum(axis=1)
    for d, m in zip(difference, y, strict=True):
        assert d[m].mean() > 0.01
        # The same subject and noise: far from the lesion nothing changes.
        far = ~ndimage.binary_dilation(m, iterations=4)
        assert d[far].mean() < 0.1 * d[m].mean()
    # Lesion-free versions of healthy slices are the slices themselves.
    assert_array_equal(
        tiny_64.X_test_lesion_free[~tiny_64.is_anomalous_test],
        tiny_64.X_test[~tiny_64.is_anomalous_test],
    )


@requires_nilearn
@pytest.mark.parametrize("kind", LESION_KINDS)
def test_each_lesion_kind(kind):
    data = make_mni_benchmark(
        size="tiny",
        image_size=64,
        n_train=0,
        n_val_lesion=0,
        n_test_lesion=3,
        n_test_healthy=0,
        lesion_mix={kind: 1.0},
        max_lesions=1,
        return_lesion_free=True,
        random_state=2,
    )
    assert list(data.lesion_kind_test) == [kind] * 3
    y = data.y_test
    assert y.any(axis=(1, 2)).all()
    signed = (data.X_test - data.X_test_lesion_free)[:, :, y.any(axis=0)]
    change = np.stack(
        [(data.X_test - data.X_test_lesion_free)[i][:, y[i]].mean(axis=1) for i in range(3)]
    )
    if kind == "oedema":
        assert (change[:, 2] > 0).all()  # bright in T2
    elif kind == "core":
        assert (change[:, 0] < 0).all()  # dark in T1
    elif kind == "ring":
        ring_max = [(data.X_test - data.X_test_lesion_free)[i, 1][y[i]].max() for i in range(3)]
        assert min(ring_max) > 0  # an enhancing rim in T1ce
    else:
        # Mass effect: anatomy moves, the mean intensity barely does.
        assert np.abs(signed).max() > 0.05
        for info in data.lesions_test:
            assert info[0]["contrast"] == 0.0 and 0.5 <= info[0]["amplitude"] <= 0.85


def test_healthy_subjects_are_distinct(tiny):
    X = tiny.X_train.reshape(len(tiny.X_train), -1)
    distances = np.abs(X[:, None] - X[None]).mean(axis=2)
    off_diagonal = distances[~np.eye(len(X), dtype=bool)]
    assert off_diagonal.min() > 0.005
    assert len(np.unique(tiny.slice_z_train)) == len(tiny.slice_z_train)
    lo, hi = tiny.params["slice_range"]
    assert (tiny.slice_z_train >= lo).all() and (tiny.slice_z_train < hi).all()


def test_description_is_honest(tiny):
    text = tiny.description
    assert "NOT comparable" in text and "BRATS" in text
    assert "Fonov" in text and "Louis Collins" in text
    module_doc = inspect.getdoc(datasets)
    assert "Louis Collins" in module_doc and "Fonov" in module_doc


# ---------------------------------------------------------------------------------------
# make_mni_benchmark: seeding and parameters
# ---------------------------------------------------------------------------------------


def test_same_random_state_gives_identical_arrays(tiny):
    again = make_mni_benchmark(size="tiny", return_lesion_free=True, random_state=0)
    for name in ("X_train", "X_val", "y_val", "X_test", "y_test", "X_test_lesion_free"):
        assert_array_equal(tiny[name], again[name], err_msg=name)
    assert_array_equal(tiny.lesion_kind_test, again.lesion_kind_test)


def test_other_random_state_differs(tiny):
    other = make_mni_benchmark(size="tiny", random_state=1)
    assert not np.array_equal(tiny.X_train, other.X_train)
    assert not np.array_equal(tiny.y_test, other.y_test)


@requires_nilearn
def test_generator_seed_does_not_touch_global_state():
    state = np.random.get_state()[1].copy()
    make_mni_benchmark(
        size="tiny",
        n_train=1,
        n_val_lesion=1,
        n_test_lesion=1,
        n_test_healthy=1,
        random_state=np.random.default_rng(3),
    )
    assert_array_equal(np.random.get_state()[1], state)


def test_splits_have_independent_streams(tiny):
    more = make_mni_benchmark(size="tiny", n_train=3, random_state=0)
    assert_array_equal(more.X_test, tiny.X_test)
    assert_array_equal(more.X_train, tiny.X_train[:3])


@requires_nilearn
def test_explicit_sizes_override_the_preset():
    data = make_mni_benchmark(
        size="tiny",
        n_train=2,
        n_val_lesion=1,
        n_test_lesion=2,
        n_test_healthy=0,
        image_size=48,
        random_state=0,
    )
    assert data.X_train.shape == (2, 4, 48, 48)
    assert data.X_val.shape == (1, 4, 48, 48)
    assert data.X_test.shape == (2, 4, 48, 48)
    assert data.is_anomalous_test.all()
    assert data.generation_time_s > 0


@requires_nilearn
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": "huge"}, "size must be one of"),
        ({"difficulty": "impossible"}, "difficulty must be one of"),
        ({"lesion_mix": {"tumour": 1.0}}, "lesion_mix keys"),
        ({"lesion_mix": {"oedema": -1.0}}, r"lesion_mix\['oedema'\] must be in \[0.0, inf\)"),
        ({"lesion_mix": {"oedema": 0.0}}, "positive sum"),
        ({"lesion_mix": {}}, "lesion_mix"),
        ({"lesion_contrast": (0.5, 0.1)}, "lesion_contrast"),
        ({"lesion_radius_mm": (0.1, 10.0)}, r"lesion_radius_mm\[0\]"),
        ({"slice_range": (0, 300)}, "slice_range"),
        ({"slice_range": (100, 80)}, "slice_range"),
        ({"image_size": 8}, "image_size"),
        ({"image_size": 512}, "image_size"),
        ({"n_train": -1}, "n_train"),
        ({"max_lesions": 0}, "max_lesions"),
        ({"iso_flair_probability": 2.0}, "iso_flair_probability"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mni_benchmark(**{"size": "tiny", **kwargs})


@requires_nilearn
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_train": 2.5}, "n_train must be an integer"),
        ({"image_size": True}, "image_size must be an integer"),
        ({"max_lesions": "2"}, "max_lesions must be an integer"),
        ({"iso_flair_probability": "0.3"}, "iso_flair_probability must be a real number"),
        ({"lesion_mix": {"oedema": "1"}}, r"lesion_mix\['oedema'\] must be a real number"),
        ({"lesion_contrast": ("a", 0.5)}, r"lesion_contrast\[0\] must be a real number"),
    ],
)
def test_parameters_of_the_wrong_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        make_mni_benchmark(**{"size": "tiny", **kwargs})


def test_size_presets_layout():
    keys = ["n_train", "n_val_lesion", "n_test_lesion", "n_test_healthy", "image_size"]
    assert list(SIZE_PRESETS) == ["tiny", "small", "default"]
    for preset in SIZE_PRESETS.values():
        assert list(preset) == keys
        assert all(isinstance(v, int) for v in preset.values())
    assert SIZE_PRESETS["tiny"] == dict(zip(keys, (8, 4, 4, 4, 32), strict=True))
    assert SIZE_PRESETS["small"] == dict(zip(keys, (128, 32, 64, 64, 64), strict=True))
    assert SIZE_PRESETS["default"] == dict(zip(keys, (200, 50, 100, 100, 256), strict=True))


def test_size_presets_drive_the_default_sizes(tiny, monkeypatch):
    preset = SIZE_PRESETS["tiny"]
    size = preset["image_size"]
    assert tiny.X_train.shape == (preset["n_train"], 4, size, size)
    assert tiny.X_val.shape == (preset["n_val_lesion"], 4, size, size)
    assert tiny.is_anomalous_test.sum() == preset["n_test_lesion"]
    assert (~tiny.is_anomalous_test).sum() == preset["n_test_healthy"]
    assert {k: tiny.params[k] for k in preset} == preset
    # The generator reads the table at call time: an edited preset changes the defaults
    # exactly as the same explicit arguments would.
    custom = {"n_train": 2, "n_val_lesion": 1, "n_test_lesion": 2, "n_test_healthy": 1,
              "image_size": 48}
    explicit = make_mni_benchmark(size="tiny", random_state=0, **custom)
    monkeypatch.setitem(SIZE_PRESETS, "tiny", custom)
    from_preset = make_mni_benchmark(size="tiny", random_state=0)
    assert from_preset.X_train.shape == (2, 4, 48, 48)
    assert {k: from_preset.params[k] for k in custom} == custom
    for name in ("X_train", "X_val", "y_val", "X_test", "y_test"):
        assert_array_equal(from_preset[name], explicit[name], err_msg=name)


@requires_nilearn
def test_calibration_script_runs_on_tiny(capsys):
    path = os.path.join(ROOT, "benchmarks", "calibrate_datasets.py")
    spec = importlib.util.spec_from_file_location("calibrate_datasets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["tiny"])
    out = capsys.readouterr().out
    assert "size='tiny' image_size=32 random_state=0" in out
    assert "threshold baseline (" in out and "oracle |x - x_lesion_free|" in out
    assert report["channel"] in CHANNEL_NAMES
    assert 0.0 <= report["baseline_auprc"] <= 1.0
    assert report["oracle_auprc"] > 0.85
    assert set(report["per_kind"]) <= set(LESION_KINDS)
    assert sum(v["n"] for v in report["per_kind"].values()) == SIZE_PRESETS["tiny"][
        "n_test_lesion"
    ]


@requires_nilearn
def test_verbose_reports_time(capsys):
    make_mni_benchmark(
        size="tiny", n_train=1, n_val_lesion=1, n_test_lesion=1, n_test_healthy=1, verbose=1
    )
    assert "slices at 32x32" in capsys.readouterr().out


def test_missing_nilearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nilearn", None)
    monkeypatch.setitem(sys.modules, "nilearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "skberdiff\[datasets\]"'):
        make_mni_benchmark(size="tiny")


@requires_nilearn
def test_threshold_baseline_does_not_solve_the_default_mix():
    """The calibration the module docstring reports, at the CPU demo size (a few seconds)."""
    from skberdiff.baselines import IntensityThresholdBaseline

    data = make_mni_benchmark(size="small", return_lesion_free=True, random_state=0)
    lesion = data.is_anomalous_test
    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    auprc = _pooled_auprc(data.y_test[lesion], baseline.anomaly_map(data.X_test[lesion]))
    oracle_map = np.abs(data.X_test - data.X_test_lesion_free)[lesion].sum(axis=1)
    oracle = _pooled_auprc(data.y_test[lesion], oracle_map)
    assert auprc < 0.7
    assert oracle > 0.85
    assert data.y_test[lesion].mean() > 0.005


@requires_nilearn
@pytest.mark.slow
def test_calibration_at_full_size():
    from skberdiff.baselines import IntensityThresholdBaseline

    data = make_mni_benchmark(return_lesion_free=True, random_state=0)
    lesion = data.is_anomalous_test
    baseline = IntensityThresholdBaseline().fit(data.X_val, data.y_val, X_healthy=data.X_train)
    auprc = _pooled_auprc(data.y_test[lesion], baseline.anomaly_map(data.X_test[lesion]))
    oracle_map = np.abs(data.X_test - data.X_test_lesion_free)[lesion].sum(axis=1)
    assert auprc < 0.7
    assert _pooled_auprc(data.y_test[lesion], oracle_map) > 0.85
    easy = make_mni_benchmark(size="small", difficulty="easy", random_state=0)
    lesion = easy.is_anomalous_test
    baseline = IntensityThresholdBaseline().fit(easy.X_val, easy.y_val, X_healthy=easy.X_train)
    easy_auprc = _pooled_auprc(easy.y_test[lesion], baseline.anomaly_map(easy.X_test[lesion]))
    assert easy_auprc > auprc + 0.3


# ---------------------------------------------------------------------------------------
# make_toy_images
# ---------------------------------------------------------------------------------------


def test_toy_images_shapes_and_masks():
    X, masks = make_toy_images(
        10, image_size=32, n_channels=2, anomaly_fraction=0.3, random_state=0
    )
    assert X.shape == (10, 2, 32, 32) and X.dtype == np.float32
    assert masks.shape == (10, 32, 32) and masks.dtype == bool
    assert X.min() >= 0.0 and X.max() <= 1.0
    anomalous = masks.any(axis=(1, 2))
    assert anomalous.sum() == 3
    assert (masks.sum(axis=(1, 2))[anomalous] >= 5).all()
    # Channels are different mixes of the same anatomy.
    assert not np.allclose(X[:, 0], X[:, 1])
    # Anomalies lie inside the head.
    assert (X.max(axis=1)[masks] > 0.05).all()


def test_toy_images_anomalies_are_visible():
    X, masks = make_toy_images(20, image_size=32, anomaly_fraction=1.0, random_state=1)
    X0, _ = make_toy_images(20, image_size=32, anomaly_fraction=0.0, random_state=1)
    assert masks.any(axis=(1, 2)).all()
    # Against the typical intensity at the same place, the spots stand out strongly.
    for x, m in zip(X[:, 0], masks, strict=True):
        assert abs(x[m].mean() - np.median(X0[:, 0][:, m])) > 0.1


def test_toy_images_deterministic_and_normal_by_default():
    X1, m1 = make_toy_images(3, random_state=5)
    X2, m2 = make_toy_images(3, random_state=5)
    assert_array_equal(X1, X2)
    assert not m1.any()
    assert X1.shape == (3, 1, 32, 32)
    assert not np.array_equal(X1[0], X1[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"anomaly_fraction": 1.5}, "anomaly_fraction"),
        ({"image_size": 4}, "image_size"),
        ({"n_channels": 0}, "n_channels"),
    ],
)
def test_toy_images_invalid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_toy_images(**{"n_samples": 2, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_samples": 2.0}, "n_samples"), ({"anomaly_fraction": "0.5"}, "anomaly_fraction")],
)
def test_toy_images_wrong_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        make_toy_images(**{"n_samples": 2, **kwargs})


# ---------------------------------------------------------------------------------------
# make_oct_like
# ---------------------------------------------------------------------------------------


def test_oct_like_layers_and_no_masks_by_default():
    X, masks = make_oct_like(3, image_size=64, random_state=0)
    assert X.shape == (3, 1, 64, 64) and X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert not masks.any()
    # A dark vitreous on top, a bright RPE band lower down: the row profile is layered.
    profile = X[:, 0].mean(axis=(0, 2))
    assert profile[:8].mean() < 0.15
    assert profile.max() > 3 * profile[:8].mean()


def test_oct_like_drusen_lift_the_rpe():
    X, masks = make_oct_like(4, image_size=128, drusen=True, random_state=1)
    X0, _ = make_oct_like(4, image_size=128, drusen=False, random_state=1)
    assert masks.any(axis=(1, 2)).all()
    # Drusen are thin, elevated, below the inner retina: masked rows are in the lower part.
    rows = np.nonzero(masks.any(axis=(0, 2)))[0]
    assert rows.min() > 20
    # The image differs from the drusen-free one where the drusen are.
    assert np.abs(X - X0)[:, 0][masks].mean() > 0.05


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"image_size": 8}, ValueError, "image_size"),
        ({"image_size": 32.0}, TypeError, "image_size"),
    ],
)
def test_oct_like_invalid(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_oct_like(**{"n_samples": 2, **kwargs})


def test_oct_like_deterministic():
    a, ma = make_oct_like(2, image_size=32, drusen=True, random_state=3)
    b, mb = make_oct_like(2, image_size=32, drusen=True, random_state=3)
    assert_array_equal(a, b)
    assert_array_equal(ma, mb)

"""Tests of the Table 1 / Figure 3 runner in benchmarks/table1.py (not part of the package)."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("nilearn")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "table1.py")
ROWS = {"masked", "unmasked", "masked_paper_posterior", "masked_marginal_posterior",
        "autoencoder_only", "autoencoder_only_x8", "intensity_threshold"}


def _load_script():
    sys.path.insert(0, os.path.dirname(SCRIPT))
    spec = importlib.util.spec_from_file_location("table1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table1 = _load_script()


def _numbers(obj, path="$"):
    """Yield (path, value) for every number in a JSON document."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _numbers(value, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The runner in tiny mode, with a spy on every threshold selection."""
    out = tmp_path_factory.mktemp("table1")
    calls = []
    original = table1.select_dice_threshold

    def spy(maps, y_true, *args, **kwargs):
        calls.append(np.array(y_true, copy=True))
        return original(maps, y_true, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(table1, "select_dice_threshold", spy)
        results = table1.run_table1(preset="tiny", out=str(out), cache=False, verbose=0,
                                    measure_memory=False, seed=0)
    with open(out / "table1.json") as fh:
        assert json.load(fh)["methods"].keys() == results["methods"].keys()
    return results, out, calls


def test_json_keeps_its_keys_and_adds_image_auroc(tiny_run):
    results, _, _ = tiny_run
    assert {"config", "data", "machine", "training", "validation", "methods",
            "paired_differences", "timings", "figures"} <= set(results)
    assert ROWS <= set(results["methods"])
    n_lesion = results["data"]["n_test_lesion"]
    for name, method in results["methods"].items():
        for metric in ("dice_val", "dice_healthy_q99", "dice_reference_minmax", "auprc",
                       "auprc_reference_minmax"):
            assert len(method["per_slice"][metric]) == n_lesion, (name, metric)
            assert 0.0 <= method["summary"][metric]["mean"] <= 1.0
        assert method["cost"]["time_per_image_s"]["mean"] > 0
    for name in ("masked", "unmasked", "masked_paper_posterior", "masked_marginal_posterior"):
        assert 0.0 <= results["methods"][name]["image_auroc"] <= 1.0
        assert results["methods"][name]["speedup_vs_reference_loop_batch1"] > 0
    defaults = results["config"]["defaults"]
    assert results["methods"]["masked"]["alias_of"] == \
        f"masked_{defaults['posterior']}_posterior"
    assert results["methods"]["unmasked"]["mask_threshold"] == 0.0
    assert "not comparable" in results["data"]["note"]


def test_validation_grid_covers_both_posteriors_and_every_score(tiny_run):
    results, _, _ = tiny_run
    grid = results["validation"]["grid"]
    cells = {(c["posterior"], c["noise_level"], c["mask_threshold"]) for c in grid["cells"]}
    assert len(cells) == len(grid["posteriors"]) * len(grid["noise_levels"]) * len(
        grid["mask_thresholds"])
    for cell in grid["cells"]:
        assert {"masked_fraction", "masked_unflipped_fraction", "denoising_loss",
                "map_mean"} <= set(cell["image_auroc"])
    assert results["validation"]["step_skipping_chosen"] in {
        s["n_steps"] for s in results["validation"]["step_skipping"]}
    assert set(results["validation"]["image_auroc_by_posterior_at_default"]) == \
        set(grid["posteriors"])


def test_every_number_is_finite(tiny_run):
    results, _, _ = tiny_run
    numbers = list(_numbers(results))
    assert len(numbers) > 100
    bad = [(path, value) for path, value in numbers if not math.isfinite(value)]
    assert not bad, bad[:5]


def test_outputs_written(tiny_run):
    results, out, _ = tiny_run
    markdown = (out / "table1.md").read_text()
    assert "| Method | Noise | Dice ↑ | AUPRC ↑ | PSNR ↑ | image AUROC ↑ | Time ↓ | Mem ↓ |" \
        in markdown
    assert markdown == table1.format_markdown(results)
    assert {"fig3_left_paper", "fig3_left_marginal", "fig3_right", "qualitative",
            "training_history"} <= set(results["figures"])
    for path in results["figures"].values():
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_dice_thresholds_are_chosen_on_validation_slices_only(tiny_run):
    _, _, calls = tiny_run
    data = table1.make_data(table1.BENCHMARK_PRESETS["tiny"], 0)
    assert len(calls) > 10
    for y_true in calls:
        assert np.array_equal(y_true, data.y_val)


def test_validation_only_never_touches_test_slices(tmp_path, monkeypatch):
    seen = []
    original = table1.evaluate_on_test
    monkeypatch.setattr(table1, "evaluate_on_test",
                        lambda *a, **k: seen.append(1) or original(*a, **k))
    results = table1.run_table1(preset="tiny", out=str(tmp_path), cache=False, verbose=0,
                                validation_only=True, figures=False, seed=1)
    assert not seen and "methods" not in results
    assert (tmp_path / "validation.json").exists()


def test_calibration_slices_are_not_training_slices():
    settings = table1.BENCHMARK_PRESETS["tiny"]
    data = table1.make_data(settings, 0)
    assert len(data.X_cal) == settings["n_calibration"]
    flat_train = data.X_train.reshape(len(data.X_train), -1)
    for image in data.X_cal.reshape(len(data.X_cal), -1):
        assert not (flat_train == image).all(axis=1).any()


def test_paired_differences_are_masked_minus_method():
    methods = {"masked": {"per_slice": {"dice_val": [0.5, 0.7], "auprc": [0.4, 0.6]}},
               "other": {"per_slice": {"dice_val": [0.4, 0.5], "auprc": [0.4, 0.8]}}}
    diff = table1.paired_differences(methods)["other"]
    assert diff["dice_val"]["mean"] == pytest.approx(0.15)
    assert diff["auprc"]["mean"] == pytest.approx(-0.1)
    assert diff["auprc"]["sem"] == pytest.approx(np.std([0.0, -0.2], ddof=1) / np.sqrt(2))


def test_script_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "--validation-only" in result.stdout


def test_autoencoder_regime_script_reports_the_diagnostics(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "autoencoder_regime", os.path.join(ROOT, "benchmarks", "autoencoder_regime.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "regime.json"
    assert module.main(["--configs", '[{"name": "t", "preset": "tiny"}]', "--iterations", "3",
                        "--n-train", "16", "--out", str(out), "--quiet"]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["downsampling_factor"] == 4 and row["latent_bits"] == 16 * 16 * 16
    assert np.isfinite(row["lesion_retention"]) and row["psnr_healthy"] > 0
    assert 0 <= row["auprc_autoencoder_alone_val"] <= 1


def test_summary_of_several_runs(tiny_run):
    spec = importlib.util.spec_from_file_location(
        "summarize", os.path.join(ROOT, "benchmarks", "summarize.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results, _, _ = tiny_run
    text = module.summarize([results, results])
    assert "| autoencoder_only |" in text and "Paired differences" in text
    validation = text.split("Validation choices")[1].split("Validation grid")[0]
    assert validation.count("\n| 0 |") == 2  # one validation row per run
    grid = text.split("Validation grid")[1].split("Validation image AUROC")[0]
    assert "paper posterior:" in grid and "marginal posterior:" in grid
    cell = results["validation"]["grid"]["cells"][0]
    assert f"{cell['auprc_minus_autoencoder']['mean']:+.3f}" in grid
    default = results["methods"]["masked"]["alias_of"]
    tested = text.split("Test image AUROC")[1]
    assert f"| map_max | {results['methods'][default]['image_auroc_all_scores']['map_max']:.3f}" \
        in tested
    assert "speed-up over reference loop" in text
    minutes = sum(r[-1]["elapsed_s"] for r in results["training"]["history"].values()) / 60
    assert f"training time {minutes:.1f} / {minutes:.1f} min." in text


def test_a_full_run_reuses_the_grid_of_an_earlier_validation_run(tmp_path, monkeypatch):
    calls = []
    original = table1.diffusion_outputs

    def counting(det, X, **params):
        calls.append(params)
        return original(det, X, **params)

    monkeypatch.setattr(table1, "diffusion_outputs", counting)
    kwargs = dict(preset="tiny", out=str(tmp_path), verbose=0, figures=False, seed=2,
                  measure_memory=False)
    first = table1.run_table1(validation_only=True, **kwargs)
    n_first = len(calls)
    calls.clear()
    second = table1.run_table1(**kwargs)
    assert second["validation"]["grid"]["cells"] == first["validation"]["grid"]["cells"]
    n_cells = len(first["validation"]["grid"]["cells"])
    n_rows = len([m for m in second["methods"].values()
                  if "noise_level" in m and "alias_of" not in m])
    assert len(calls) == n_first - n_cells + n_rows  # no grid cell again; test rows added


def test_cross_retention_of_cached_runs(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "cross_retention", os.path.join(ROOT, "benchmarks", "cross_retention.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from skberdiff.diagnostics import lesion_retention

    direct = {}
    for seed in (0, 1):
        det = table1.run_table1(preset="tiny", out=str(tmp_path / f"seed{seed}"), cache=True,
                                verbose=0, seed=seed, fit_only=True)
        data = table1.make_data(table1.resolve_settings("tiny"), seed)
        direct[seed] = lesion_retention(det, data.X_val, data.y_val,
                                        X_lesion_free=data.X_val_lesion_free)
    table = module.cross_retention([0, 1], str(tmp_path / "seed{seed}"), preset="tiny")
    assert set(table) == {"autoencoder_0", "autoencoder_1"}
    for seed in (0, 1):
        assert table[f"autoencoder_{seed}"][f"data_{seed}"] == pytest.approx(direct[seed])
        assert all(np.isfinite(v) for v in table[f"autoencoder_{seed}"].values())
    with pytest.raises(FileNotFoundError, match="no trained networks for seed 5"):
        module.cross_retention([5], str(tmp_path / "seed{seed}"), preset="tiny")


def test_draws_are_validated_and_one_draw_is_the_grid_cell(tiny_run):
    results, _, _ = tiny_run
    defaults = results["config"]["defaults"]
    draws = {d["n_draws"]: d for d in results["validation"]["draws"]}
    assert set(draws) == {1, 2}
    cell = next(c for c in results["validation"]["grid"]["cells"]
                if (c["posterior"], c["noise_level"], c["mask_threshold"])
                == (defaults["posterior"], defaults["noise_level"], defaults["mask_threshold"]))
    assert draws[1]["auprc"] == cell["auprc"]
    assert all(0 <= d["auprc"] <= 1 and d["seconds_per_image"] > 0 for d in draws.values())

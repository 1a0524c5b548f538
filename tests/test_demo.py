import json

import numpy as np

from skberdiff.demo import main, run_demo


def test_demo_runs_end_to_end_in_a_tiny_configuration(tmp_path):
    results = run_demo(output_dir=tmp_path, image_size=32, n_train=24, autoencoder_iterations=3,
                       diffusion_iterations=3, noise_level=10, device="cpu", verbose=0)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    for key in ("dice", "auprc", "image_auroc", "image_auroc_masked_fraction"):
        assert 0.0 <= saved[key] <= 1.0 and np.isclose(saved[key], results[key])
    for key in ("dice", "auprc"):
        assert 0.0 <= saved["autoencoder_alone"][key] <= 1.0
    assert saved["parameters"]["noise_level"] == 10


def test_demo_command_line_help(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "--n-train" in out and "--diffusion-iterations" in out

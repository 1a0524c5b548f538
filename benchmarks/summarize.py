"""Summarise several ``table1.json`` runs (one per seed) as Markdown tables.

Usage::

    python benchmarks/summarize.py results/small_seed{0,1,2}/table1.json > summary.md

Prints, for every method, the per-seed mean pixel AUPRC and Dice (threshold from the
validation slices), PSNR and image AUROC; the paired differences of the default masked row
against every other row per seed (mean ± standard error over the same test slices, and
whether the difference exceeds two standard errors); the validation choices of each seed
(best grid cell, step skipping, draws); and the validation image AUROC of every image
score and posterior at the default setting.
"""

import json
import sys

import numpy as np

ORDER = ("intensity_threshold", "autoencoder_only_x8", "autoencoder_only", "unmasked",
         "masked_paper_posterior", "masked_marginal_posterior", "masked_step_skipping")


def _load(paths):
    runs = []
    for path in paths:
        with open(path) as fh:
            runs.append(json.load(fh))
    return runs


def _cell(values, digits=3):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return " / ".join(f"{v:.{digits}f}" for v in values)


def _validation_grid(runs):
    """Validation pixel AUPRC of every grid cell minus the autoencoder alone, mean over seeds."""
    cells = {}
    for r in runs:
        for c in r["validation"]["grid"]["cells"]:
            if c.get("n_draws", 1) != 1:
                continue
            key = (c["posterior"], c["noise_level"], c["mask_threshold"])
            cells.setdefault(key, []).append(c["auprc_minus_autoencoder"]["mean"])
    lines = ["", "Validation grid: pixel AUPRC minus the autoencoder alone (paired over the "
                 "validation lesion slices), mean over seeds:"]
    for posterior in dict.fromkeys(k[0] for k in cells):
        levels = sorted({k[1] for k in cells if k[0] == posterior})
        thresholds = sorted({k[2] for k in cells if k[0] == posterior})
        lines += ["", f"{posterior} posterior:", "",
                  "| L \\ P | " + " | ".join(f"{p:g}" for p in thresholds) + " |",
                  "|---" * (len(thresholds) + 1) + "|"]
        for level in levels:
            row = [cells.get((posterior, level, p)) for p in thresholds]
            lines.append(f"| {level} | " + " | ".join(
                "-" if v is None else f"{np.mean(v):+.3f}" for v in row) + " |")
    return lines


def _training_minutes(run):
    """Training wall time: from the histories when they record it (``elapsed_s``), else the
    fit time of this run (which is only a cache load when the networks were trained before)."""
    history = run["training"].get("history", {})
    last = [records[-1].get("elapsed_s") for records in history.values() if records]
    if last and all(v is not None for v in last):
        return sum(last) / 60
    return None


def _training_note(runs):
    minutes = [_training_minutes(r) for r in runs]
    if all(m is None for m in minutes):
        return ("training time not recorded (these runs predate the elapsed_s record of "
                "the training histories; see the run logs).")
    return f"training time {_cell(minutes, 1)} min."


def summarize(runs):
    """Markdown text of the summary of ``runs`` (loaded table1.json dicts)."""
    seeds = [r["config"]["seed"] for r in runs]
    lines = [f"Seeds {', '.join(map(str, seeds))} (values listed per seed, in that order).", ""]
    defaults = runs[0]["config"]["defaults"]
    lines += ["Default configuration: " + ", ".join(f"{k}={v}" for k, v in defaults.items()),
              ""]
    lines += ["| Method | pixel AUPRC | Dice | PSNR | image AUROC | s / image (batch 1) | "
              "speed-up over reference loop |", "|---|---|---|---|---|---|---|"]
    names = [n for n in ORDER if all(n in r["methods"] for r in runs)]
    for name in names:
        ms = [r["methods"][name] for r in runs]
        lines.append(
            f"| {name} | {_cell([m['summary']['auprc']['mean'] for m in ms])} | "
            f"{_cell([m['summary']['dice_val']['mean'] for m in ms])} | "
            f"{_cell([m['summary'].get('psnr', {}).get('mean') for m in ms], 2)} | "
            f"{_cell([m.get('image_auroc') for m in ms])} | "
            f"{_cell([m.get('cost', {}).get('time_per_image_s', {}).get('mean') for m in ms])} | "
            f"{_cell([m.get('speedup_vs_reference_loop_batch1') for m in ms], 1)} |")
    lines += ["", f"Paired differences, default masked ({runs[0]['methods']['masked']['alias_of']})"
                  " minus each method, pixel AUPRC (mean ± s.e. over the same test slices; "
                  "* = more than two standard errors):", "",
              "| Masked minus | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---" * (len(seeds) + 1) + "|"]
    for name in names:
        cells = []
        for r in runs:
            d = r["paired_differences"].get(name, {}).get("auprc")
            if d is None:
                cells.append("-")
                continue
            star = "*" if abs(d["mean"]) > 2 * d["sem"] else ""
            cells.append(f"{d['mean']:+.4f} ± {d['sem']:.4f}{star}")
        if any(c != "-" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Validation choices (never the test slices):", "",
              "| seed | best grid cell (posterior, L, P): AUPRC | autoencoder alone | "
              "step skipping chosen | n_draws (AUPRC) |", "|---|---|---|---|---|"]
    for r in runs:
        v = r["validation"]
        b = v["grid"]["best_by_validation_auprc"]
        draws = ", ".join(f"{d['n_draws']}: {d['auprc']:.3f}" for d in v.get("draws", []))
        lines.append(f"| {r['config']['seed']} | {b['posterior']}, {b['noise_level']}, "
                     f"{b['mask_threshold']:g}: {b['auprc']:.3f} | "
                     f"{v['autoencoder_only']['auprc']:.3f} | {v['step_skipping_chosen']} | "
                     f"{draws} |")
    lines += _validation_grid(runs)
    table = [r["validation"]["image_auroc_by_posterior_at_default"] for r in runs]
    scores = sorted({s for t in table for values in t.values() for s in values})
    lines += ["", "Validation image AUROC (lesion validation slices against healthy "
                  "calibration slices) at the default L and P, mean over seeds:", "",
              "| posterior | " + " | ".join(scores) + " |", "|---" * (len(scores) + 1) + "|"]
    for posterior in table[0]:
        row = [np.mean([t[posterior][s] for t in table if s in t.get(posterior, {})])
               for s in scores]
        lines.append(f"| {posterior} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    default = runs[0]["methods"]["masked"]["alias_of"]
    tests = [r["methods"][default].get("image_auroc_all_scores", {}) for r in runs]
    if all(tests):
        lines += ["", f"Test image AUROC of every image score ({default}, 64 diseased against "
                      "64 healthy test slices), per seed:", "",
                  "| image score | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|---" * (len(seeds) + 1) + "|"]
        for score in scores:
            lines.append(f"| {score} | " + " | ".join(
                f"{t[score]:.3f}" if score in t else "-" for t in tests) + " |")
    reg = [r["training"]["regime"] for r in runs]
    blind = [x["heldout_diffusion_loss"]["content_blind_bits"] for x in reg]
    lines += ["", "Regime diagnostics (validation): lesion retention "
              f"{_cell([x['lesion_retention'] for x in reg])}, autoencoder PSNR "
              f"{_cell([x['autoencoder_psnr'] for x in reg], 2)} dB, held-out diffusion loss "
              f"{_cell([x['heldout_diffusion_loss']['model_bits'] for x in reg], 4)} bits "
              f"(content-blind {_cell(blind, 4)}); "
              + _training_note(runs)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Print the summary of the table1.json files given as arguments."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__)
        return 2
    print(summarize(_load(paths)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

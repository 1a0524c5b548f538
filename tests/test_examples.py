"""Run every script of ``examples/`` (the documentation's gallery) the way a user would.

The docs build only renders the gallery (``plot_gallery = False`` in ``docs/conf.py``);
these tests are where the examples are executed. Each runs in a fresh working directory
with matplotlib's non-interactive Agg backend and an empty network cache, so it trains its
own networks as it would when run alone. Examples that take more than about 30 s on two
busy CPU cores are marked slow (``pytest -m slow``).
"""

import ast
import os
import runpy
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("plot_*.py"))

# The two longest (about 23 s each in this test on 2 busy CPU cores, 45-60 s as standalone
# scripts); the four others take 10-18 s here. Check with pytest --durations=0.
SLOW_EXAMPLES = {"plot_grid_search.py", "plot_image_screening.py"}


def _params():
    return [pytest.param(path, id=path.stem,
                         marks=[pytest.mark.slow] if path.name in SLOW_EXAMPLES else [])
            for path in EXAMPLES]


def test_examples_exist_and_slow_list_is_current():
    assert EXAMPLES, f"no plot_*.py script in {EXAMPLES_DIR}"
    assert (EXAMPLES_DIR / "README.rst").is_file(), "sphinx-gallery needs examples/README.rst"
    assert SLOW_EXAMPLES <= {path.name for path in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_has_a_gallery_title(path):
    """sphinx-gallery takes the title from an underlined first line of the docstring."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.name} has no module docstring"
    lines = docstring.strip().splitlines()
    assert len(lines) >= 3 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0]), (
        f"{path.name}: the docstring must start with a title underlined with '='"
    )


@pytest.mark.parametrize("path", _params())
def test_example_runs(path, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("nilearn")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from skberdiff import clear_network_cache

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # plt.show() would warn that Agg cannot show figures; the figures are checked below.
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    clear_network_cache()
    plt.close("all")
    try:
        runpy.run_path(os.fspath(path), run_name="__main__")
        assert plt.get_fignums(), f"{path.name} drew no figure for the gallery"
    finally:
        plt.close("all")
        clear_network_cache()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert not leftovers, f"{path.name} left files in the working directory: {leftovers}"

"""Sphinx configuration of the skberdiff documentation.

Build (offline, warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Three environment variables change the build:

``SKBERDIFF_DOCS_RUN_EXAMPLES=1``
    Execute the gallery scripts of ``examples/`` while building (minutes on a CPU). By
    default the gallery pages are rendered from the scripts without running them; the
    examples are executed by ``tests/test_examples.py`` instead.
``SKBERDIFF_DOCS_INTERSPHINX=online``
    Use the projects' published inventories (needs internet) instead of the small offline
    lists in ``docs/_inventories``. Useful to spot a link that the lists lack.
``SKBERDIFF_DOCS_VALIDATE=1``
    Report public objects that lack a docstring or an Examples section (numpydoc's GL08
    and EX01 checks) as warnings.
"""

import os
import sys
from datetime import date
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_inventories"))
# Build against the working tree even when skberdiff is not installed in this environment.
sys.path.insert(0, str(ROOT))

import inventories  # noqa: E402  (docs/_inventories/inventories.py)

import skberdiff  # noqa: E402

# -- Project -------------------------------------------------------------------------------
project = "skberdiff"
author = "the skberdiff developers"
copyright = f"2024-{date.today().year}, {author}"
release = skberdiff.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

# Two pages are Markdown written by other authors and may not exist yet:
# docs/distributed.md (multi-GPU training) and docs/benchmark_results.md (measured
# benchmark numbers). They are read through myst-parser when it is installed and the file
# exists, and left out of the build otherwise.
try:
    import myst_parser  # noqa: F401
except ImportError:
    HAVE_MYST = False
else:
    HAVE_MYST = True
    extensions.append("myst_parser")
    myst_enable_extensions = ["colon_fence", "dollarmath"]
    myst_heading_anchors = 3
# page name -> its placeholder in the toctrees of the .rst sources
OPTIONAL_PAGES = {
    "distributed": "@DISTRIBUTED_PAGE@",
    "benchmark_results": "@BENCHMARK_RESULTS_PAGE@",
}
PRESENT_PAGES = {name for name in OPTIONAL_PAGES
                 if HAVE_MYST and (DOCS / f"{name}.md").is_file()}

source_suffix = {".rst": "restructuredtext"}
if HAVE_MYST:
    source_suffix[".md"] = "markdown"

root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_static",  # raw measurements (JSON, the Markdown tables the benchmark writes)
    "_inventories",
    "Thumbs.db",
    ".DS_Store",
    # sphinx-gallery writes these beside the generated pages; they are not pages.
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.pickle",
    "auto_examples/*.md5",
    "auto_examples/*.codeobj.json",
    "sg_execution_times.rst",
]
# Links to an optional page exist only when the page does: _fill_placeholders() below
# fills its toctree placeholder and keeps one branch of each ".. @if <page>" /
# ".. @else" / ".. @endif" block. (Sphinx's ".. only::" cannot do this: references are
# resolved before "only" blocks are dropped.)
exclude_patterns += [f"{name}.md" for name in OPTIONAL_PAGES if name not in PRESENT_PAGES]

default_role = "py:obj"
pygments_style = "sphinx"
nitpicky = False
suppress_warnings = [
    # The distributed page is another author's Markdown; its heading levels are its own.
    "myst.header",
    # Module docstrings end with a References list (a bibliography) that their text does
    # not cite; numpydoc only marks citations of function and class docstrings as used.
    "ref.citation",
]

# -- autodoc / autosummary / numpydoc ----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"  # numpydoc "Parameters" sections already give the types
autodoc_member_order = "bysource"
autoclass_content = "class"

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
# Every documented function and method documents all its parameters (PR01) and what it
# returns (RT01); with "-W" a gap fails the build. SKBERDIFF_DOCS_VALIDATE=1 also reports
# objects without a docstring (GL08) or an Examples section (EX01).
numpydoc_validation_checks = {"PR01", "RT01"}
if os.environ.get("SKBERDIFF_DOCS_VALIDATE", "") not in ("", "0"):
    numpydoc_validation_checks |= {"GL08", "EX01"}
numpydoc_validation_exclude = {
    r"\.__init__$", r"\.set_\w+_request$",
    # torch.nn.Module plumbing documented by PyTorch
    r"\.forward$", r"\.extra_repr$", r"\.train$",
    # scikit-learn plumbing documented by scikit-learn
    r"\.get_params$", r"\.set_params$", r"\.fit_transform$", r"\.get_metadata_routing$",
    r"\.set_output$", r"\.fit_predict$", r"\.score$",
    # dataclass records: fields are documented under "Attributes", which PR01 ignores
    r"\.(DetectionResult|LatentRestoration|RestorationResult|TrainingResult|BratsCase"
    r"|VolumeMeta|SliceSet|OctImages|DistributedContext)$",
}
numpydoc_xref_aliases = {
    # outside projects (resolved through intersphinx)
    "ndarray": "numpy.ndarray",
    "dtype": "numpy.dtype",
    "Generator": "numpy.random.Generator",
    "RandomState": "numpy.random.RandomState",
    "Bunch": "sklearn.utils.Bunch",
    "Pipeline": "sklearn.pipeline.Pipeline",
    "joblib.Memory": "joblib.Memory",
    "torch.Tensor": "torch.Tensor",
    "Tensor": "torch.Tensor",
    "torch.device": "torch.device",
    "nn.Module": "torch.nn.Module",
    "torch.nn.Module": "torch.nn.Module",
    "Path": "pathlib.Path",
    "pathlib.Path": "pathlib.Path",
    "path-like": "os.PathLike",
    # skberdiff
    "MaskedBernoulliDiffusionDetector": "skberdiff.MaskedBernoulliDiffusionDetector",
    "DetectionResult": "skberdiff.DetectionResult",
    "LatentRestoration": "skberdiff.LatentRestoration",
    "IntensityScaler": "skberdiff.preprocessing.IntensityScaler",
    "PadCrop": "skberdiff.preprocessing.PadCrop",
    "VolumeMeta": "skberdiff.io.VolumeMeta",
    "BratsCase": "skberdiff.io.BratsCase",
    "SliceSet": "skberdiff.io.SliceSet",
    "OctImages": "skberdiff.io.OctImages",
    "BernoulliSchedule": "skberdiff.diffusion.BernoulliSchedule",
    "CounterRNG": "skberdiff.diffusion.CounterRNG",
    "RestorationResult": "skberdiff.diffusion.RestorationResult",
    "TrainingResult": "skberdiff.training.TrainingResult",
    "LPIPS": "skberdiff.nn.LPIPS",
    "BinaryAutoencoder": "skberdiff.nn.BinaryAutoencoder",
    "EpsUNet": "skberdiff.nn.EpsUNet",
    "skberdiff.nn.BinaryAutoencoder": "skberdiff.nn.BinaryAutoencoder",
    "skberdiff.nn.EpsUNet": "skberdiff.nn.EpsUNet",
    "skberdiff.diffusion.BernoulliSchedule": "skberdiff.diffusion.BernoulliSchedule",
}

# -- intersphinx: offline ------------------------------------------------------------------
# The lists in docs/_inventories are compiled to objects.inv files inside the build folder
# and intersphinx reads only those local files: no network access at build time.
_INVENTORY_DIR = DOCS / "_build" / "_inventories"
_inventories = inventories.compile_all(_INVENTORY_DIR)
if os.environ.get("SKBERDIFF_DOCS_INTERSPHINX", "").lower() == "online":
    intersphinx_mapping = {key: (url, None) for key, (url, _) in _inventories.items()}
else:
    intersphinx_mapping = {key: (url, path) for key, (url, path) in _inventories.items()}
intersphinx_timeout = 5
# Only explicit, qualified references go to other projects; a bare :ref:`label` or
# :doc:`page` always means a page of this site.
intersphinx_disabled_reftypes = ["std:doc", "std:label"]

# -- sphinx-gallery ----------------------------------------------------------------------------
# Examples train small networks: executing all of them takes minutes on a CPU, so the
# default build only renders them. tests/test_examples.py runs every script.
_run_examples = os.environ.get("SKBERDIFF_DOCS_RUN_EXAMPLES", "") not in ("", "0")
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": "True" if _run_examples else "False",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"skberdiff": None},
    "doc_module": ("skberdiff",),
    "backreferences_dir": None,
    "show_memory": False,
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "image_scrapers": ("matplotlib",),
}

# -- HTML ----------------------------------------------------------------------------------
try:
    import pydata_sphinx_theme  # noqa: F401
except ImportError:  # the docs extra installs it; fall back to Sphinx's built-in theme
    html_theme = "alabaster"
    html_theme_options = {}
else:
    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_prev_next": True,
        "secondary_sidebar_items": ["page-toc"],
        "footer_start": ["copyright"],
        "footer_end": ["sphinx-version"],
    }
html_title = f"skberdiff {release}"
html_short_title = "skberdiff"
html_show_sourcelink = False
html_last_updated_fmt = None


# -- hooks ---------------------------------------------------------------------------------
# Modules that other authors are adding while this site grows. They are documented with
# plain autodoc (no generated stub pages), so the API page builds with or without them;
# the "@OPTIONAL_MODULES_API@" placeholder of api.rst becomes one section per module that
# exists.
OPTIONAL_MODULES = {
    "skberdiff.distributed": "multi-GPU and multi-node helpers",
}


def _module_section(name, title):
    heading = f"{name}: {title}"
    return (f"\n{heading}\n{'-' * len(heading)}\n\n"
            f".. automodule:: {name}\n   :members:\n")


def _has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _select_branches(text):
    """Keep the ``.. @if page`` or the ``.. @else`` branch, depending on the page."""
    out, keep = [], [True]
    for line in text.splitlines(keepends=True):
        marker = line.strip()
        if marker.startswith(".. @if "):
            keep.append(keep[-1] and marker[len(".. @if "):].strip() in PRESENT_PAGES)
        elif marker == ".. @else":
            keep[-1] = keep[-2] and not keep[-1]
        elif marker == ".. @endif":
            keep.pop()
        elif keep[-1]:
            out.append(line)
    if len(keep) != 1:
        raise ValueError("unbalanced '.. @if' / '.. @endif' markers")
    return "".join(out)


def _fill_placeholders(app, docname, source):
    """Fill the placeholders of optional pages and modules with what exists."""
    text = source[0]
    for name, placeholder in OPTIONAL_PAGES.items():
        if placeholder in text:
            text = text.replace(placeholder, f"/{name}" if name in PRESENT_PAGES else "")
    if ".. @if " in text:
        text = _select_branches(text)
    if "@OPTIONAL_MODULES_API@" in text:
        sections = [_module_section(name, title) for name, title in OPTIONAL_MODULES.items()
                    if _has_module(name)]
        text = text.replace("@OPTIONAL_MODULES_API@", "".join(sections))
    source[0] = text


def _skip_member(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods scikit-learn generates for metadata routing.

    They are documented by scikit-learn, and their docstrings refer to labels of
    scikit-learn's own site.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("source-read", _fill_placeholders)
    app.connect("autodoc-skip-member", _skip_member)

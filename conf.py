"""Sphinx configuration for the crossentropy_ref book (sources in docs/)."""

import hashlib
import os
import sys
from importlib.metadata import version as _version
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # local Sphinx extensions (not the kernel's path)

project = "crossentropy_ref"
author = "the crossentropy_ref developers"
copyright = "2026, the crossentropy_ref developers"
release = _version("crossentropy_ref")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_copybutton",
    "sphinx_design",
    "local_mathjax",
]

exclude_patterns = ["_build", "**/.ipynb_checkpoints", "_ext", "_tools"]
nitpicky = True

# --- execution -------------------------------------------------------------
# myst-nb's cache keys on cell source only, so a changed package would replay
# stale outputs. Key the cache directory on the package source and the
# versions of what the pages import.
def _source_key() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "crossentropy_ref").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    for dist in ("numpy", "torch", "mpmath", "matplotlib"):
        h.update(f"{dist}=={_version(dist)}".encode())
    return h.hexdigest()[:16]


SOURCE_KEY = _source_key()
nb_execution_mode = os.environ.get("NB_EXECUTION_MODE", "cache")  # CI sets "force"
nb_execution_cache_path = str(ROOT / "_build" / ".jupyter_cache" / SOURCE_KEY)
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_output_stderr = "warn"
nb_merge_streams = True
# ipykernel logs "Kernel is running over TCP without encryption" to the terminal
# on every kernel start, and myst-nb's kernel manager reads no Jupyter config
# files. So the build finds its python3 kernelspec first in docs/_jupyter: the
# usual one, plus --IPKernelApp.log_level=ERROR. That only concerns the kernel
# process's own log; what a cell prints to stderr still fails the build.
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(ROOT / "docs" / "_jupyter")] + [p for p in [os.environ.get("JUPYTER_PATH")] if p]
)
myst_enable_extensions = ["amsmath", "dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- API reference ---------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- doctest ---------------------------------------------------------------
doctest_test_doctest_blocks = "default"  # also run the >>> Examples autodoc pulls from docstrings
doctest_global_setup = """
import numpy as np
import crossentropy_ref
np.set_printoptions(precision=8, suppress=False)
"""

# --- HTML ------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "crossentropy_ref"
html_static_path = ["docs/_static"]
html_theme_options = {"show_toc_level": 2}
html_favicon = "docs/_static/favicon.svg"
html_css_files = ["site.css"]
# Light or dark as the reader's system prefers (without it the theme logs a console error).
html_context = {"default_mode": "auto"}
# The site loads nothing from other hosts: docs/_ext/local_mathjax.py serves
# MathJax from _static/ (`make html` installs it into .mathjax/ first). The
# site's public URL, where known, gives the 404 page its <base>: Read the Docs
# sets READTHEDOCS_CANONICAL_URL, .github/workflows/pages.yml sets BOOK_BASE_URL.
html_baseurl = os.environ.get("READTHEDOCS_CANONICAL_URL") or os.environ.get("BOOK_BASE_URL", "")

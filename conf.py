"""Sphinx configuration for the crossentropy_ref book (sources in docs/)."""

import hashlib
import os
import shutil
import sys
from importlib.metadata import distributions
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
    "sphinx.ext.viewcode",  # the package's source, highlighted, linked from the API pages
    "numpydoc",
    "sphinx_copybutton",
    "sphinx_design",
    "local_mathjax",
    "notebook_downloads",
    "nav_wbr",  # line breaks inside long code names in the sidebars
    "solutions",  # an exercise's solution, prose and code cells, behind one toggle
    "repo_files",  # the repository's files that pages cite, readable on the site
    "translations",  # English and zh_TW: the language switcher, hreflang, the zh-tw/ folder
    "search_zh",  # the zh_TW build's search (Sphinx 9.0.4's is broken; jieba's cache)
]

exclude_patterns = ["_build", "**/.ipynb_checkpoints", "_ext", "_tools"]
nitpicky = True

# --- execution -------------------------------------------------------------
# myst-nb's cache keys on cell source only, so a changed package would replay
# stale outputs. Key the cache directory on everything else a page reads: the
# package, the benchmark code and results, the test modules a page imports,
# and the version of every installed distribution.
EXECUTION_INPUTS = ["crossentropy_ref", "benchmarks", "tests"]


def _source_key() -> str:
    h = hashlib.sha256()
    for top in EXECUTION_INPUTS:
        for path in sorted(p for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(path.relative_to(ROOT).as_posix().encode())
            h.update(path.read_bytes())
    # A set: run as `python -m sphinx`, the current folder is on sys.path, and
    # the package's own egg-info there lists it a second time.
    for dist in sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()}):
        h.update(dist.encode())
    return h.hexdigest()[:16]


# The cache lives outside _build, so that `make clean` keeps it. When a new key
# is first used, all but the three newest older keys' folders are removed.
CACHE_ROOT = ROOT / ".jupyter_cache"
SOURCE_KEY = _source_key()
nb_execution_mode = os.environ.get("NB_EXECUTION_MODE", "cache")  # CI sets "force"
# Where no cache for these sources exists yet (CI's fresh clone, the Pages
# runner), "force" and "cache" both execute every page; "cache" also records
# the results, which the zh_TW build (make html-zh) then replays instead of
# executing every page a second time. Where one exists, "force" stays force.
if nb_execution_mode == "force" and not (CACHE_ROOT / SOURCE_KEY).exists():
    nb_execution_mode = "cache"
nb_execution_cache_path = str(CACHE_ROOT / SOURCE_KEY)
if nb_execution_mode == "cache" and not (CACHE_ROOT / SOURCE_KEY).exists():
    for stale in sorted(CACHE_ROOT.glob("*"), key=lambda p: p.stat().st_mtime)[:-3]:
        shutil.rmtree(stale, ignore_errors=True)
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_output_stderr = "warn"
nb_merge_streams = True
# `make html` runs two kernels at once (sphinx-build -j); one thread each for
# BLAS, OpenMP and torch keeps them from fighting over the two cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# `make doctest` runs the doctests of the docstrings and {doctest} blocks, none
# of which needs a page's outputs, so it does not execute the pages
# (NB_EXECUTION_MODE=off). Then the glue roles have nothing to show and the
# cells have no kernel language: those two warnings, and only in that mode,
# are expected.
if nb_execution_mode == "off":
    suppress_warnings = ["mystnb.glue", "myst-nb.lexer"]
# ipykernel logs "Kernel is running over TCP without encryption" to the terminal
# on every kernel start, and myst-nb's kernel manager reads no Jupyter config
# files. So the build finds its python3 kernelspec first in docs/_jupyter: the
# usual one, plus --IPKernelApp.log_level=ERROR. That only concerns the kernel
# process's own log; what a cell prints to stderr still fails the build.
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(ROOT / "docs" / "_jupyter")] + [p for p in [os.environ.get("JUPYTER_PATH")] if p]
)
myst_enable_extensions = ["amsmath", "dollarmath", "colon_fence", "deflist", "substitution"]
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

# --- the repository --------------------------------------------------------
# The site cannot know where its source lives, but its builds do: the Pages
# workflow sets BOOK_REPO_URL (${{ github.server_url }}/${{ github.repository }})
# and Read the Docs sets READTHEDOCS_GIT_CLONE_URL. When one is set, the
# theme's repository button and the Install section name it; an offline
# build (neither set) shows neither. index.md's `{only} book_repo` block and
# its {{ repo_url }} / {{ repo_link }} substitutions use it.


def _repo_url(raw: str) -> str:
    """https://host/owner/name from a clone URL (https or git@host:owner/name.git)."""
    url = raw.strip()
    if url.startswith("git@") and ":" in url:
        host, _, path = url[len("git@") :].partition(":")
        url = f"https://{host}/{path}"
    return url.removesuffix("/").removesuffix(".git")


REPO_URL = _repo_url(os.environ.get("BOOK_REPO_URL") or os.environ.get("READTHEDOCS_GIT_CLONE_URL", ""))
if REPO_URL:
    tags.add("book_repo")  # noqa: F821 (Sphinx provides `tags` to conf.py)
myst_substitutions = {
    "repo_url": REPO_URL,
    "repo_link": f"[{REPO_URL.split('://', 1)[-1]}]({REPO_URL})" if REPO_URL else "",
}
repo_files_url = REPO_URL  # docs/_ext/repo_files.py: "this file in the repository"

# --- languages -------------------------------------------------------------
# English, and the student's path in Traditional Chinese (docs/_ext/translations.py):
# BOOK_LANGUAGE=zh_TW (make html-zh) or a Read the Docs translation project
# (READTHEDOCS_LANGUAGE=zh-tw) builds the zh_TW book from docs/locales.
import translations  # noqa: E402 (docs/_ext, on the path above)

language = translations.sphinx_language(
    os.environ.get("BOOK_LANGUAGE") or os.environ.get("READTHEDOCS_LANGUAGE") or "en"
)
locale_dirs = ["locales/"]  # docs/locales/zh_TW/LC_MESSAGES/<page>.po (sphinx-intl's layout)
gettext_compact = False  # one catalog per page
gettext_location = False  # no line numbers: a changed sentence changes one entry
gettext_uuid = False
# Words of the book that jieba would cut in two, for the zh_TW search index.
html_search_options = {"dict": str(ROOT / "docs" / "locales" / "zh_TW" / "search-words.txt")}

# --- HTML ------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "crossentropy_ref"
html_static_path = ["docs/_static"]
templates_path = ["docs/_templates"]
html_theme_options = {
    "show_toc_level": 2,
    # One search box: the sidebar's. The header's copy (pydata's default
    # navbar_persistent) would be a second box on desktop; on a phone the
    # article header keeps its search button.
    "navbar_persistent": [],
    # The header's repository button, only when the build knows the address.
    "repository_url": REPO_URL,
    "use_repository_button": bool(REPO_URL),
    # The same page in the other language, then the theme's own buttons.
    "article_header_end": ["language-switcher.html", "article-header-buttons.html"],
}
# The Install section's commands are parsed-literal blocks (they carry the
# repository's address), which the copy button does not cover by default.
copybutton_selector = "div.highlight pre, pre.literal-block"
html_favicon = "docs/_static/favicon.svg"
html_css_files = ["site.css"]
# Plain text, not LaTeX, for the formulas that search results quote.
html_js_files = ["search_math.js"]
# Light or dark as the reader's system prefers (without it the theme logs a console error).
html_context = {"default_mode": "auto"}
# The site loads nothing from other hosts: docs/_ext/local_mathjax.py serves
# MathJax from _static/ (`make html` installs it into .mathjax/ first). The
# site's public URL, where known, gives the 404 page its <base>: Read the Docs
# sets READTHEDOCS_CANONICAL_URL (one project per language),
# .github/workflows/pages.yml sets BOOK_BASE_URL (the English root; zh_TW is in zh-tw/).
_site_root = os.environ.get("BOOK_BASE_URL", "")
html_baseurl = os.environ.get("READTHEDOCS_CANONICAL_URL") or (
    _site_root and _site_root.rstrip("/") + "/" + translations.LANGUAGES[language].path
)
# On a phone a long display equation is wider than the column. MathJax 4
# breaks it into lines at its operators instead of letting it overflow (the
# reader can still choose scrolling or scaling in MathJax's menu).
mathjax4_config = {"output": {"displayOverflow": "linebreak"}}

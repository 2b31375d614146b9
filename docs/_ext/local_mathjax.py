"""Serve MathJax from the site itself, never from a CDN.

Out of the box, sphinx.ext.mathjax (Sphinx 9) puts a <script> for MathJax 4
from a CDN into every page with math, and MathJax 4 then fetches its fonts
from a CDN as well. This extension instead

* points ``mathjax_path`` at ``_static/mathjax/tex-chtml.js`` and adds
  ``loader.paths.fonts`` to ``mathjax4_config`` so that MathJax looks for its
  fonts next to itself;
* copies the parts of the npm packages ``mathjax`` and
  ``@mathjax/mathjax-newcm-font`` that the book uses (listed in ``SHIPPED``
  below: about 5 MB of their 70 MB) from ``.mathjax/`` into the output's
  ``_static/mathjax/``;
* stops the build with an error when that copy is missing or has the wrong
  versions, or when the configuration would load MathJax from another host.
  There is no fallback to a CDN.

``python docs/_ext/fetch_mathjax.py`` (run by ``make html``) installs the
packages; it holds the versions. The extension also writes a ``<base>`` into
the 404 page, which hosts serve at any depth (see ``_fix_404``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from sphinx.errors import ConfigError, ExtensionError
from sphinx.util import logging  # before sphinx.ext.mathjax, which needs it imported

from sphinx.ext.mathjax import MATHJAX_URL  # isort: skip

import fetch_mathjax

logger = logging.getLogger(__name__)

STATIC_DIR = "mathjax"  # the copy lives in <outdir>/_static/mathjax/
ENTRY = "tex-chtml.js"  # TeX input, CommonHTML output, the newcm font's code included
FONT_DIR = "fonts"  # [mathjax]/fonts/mathjax-newcm-font/... (MathJax's [fonts] path)

# What the site ships: (npm package, glob inside the package, directory under
# _static/mathjax/ that receives the matches, keeping their paths below it).
SHIPPED = [
    ("mathjax", "LICENSE", "."),
    ("mathjax", ENTRY, "."),
    # TeX packages that the autoload extension pulls in on first use of
    # macros such as \boldsymbol, \cancel or \mathclap.
    ("mathjax", "input/tex/extensions/*.js", "."),
    # tex-chtml.js includes the context menu (right-click on math), the
    # explorer and speech; the menu loads these two on demand.
    ("mathjax", "a11y/assistive-mml.js", "."),
    ("mathjax", "a11y/complexity.js", "."),
    # Speech (on by default in MathJax 4): the speech rule engine runs in a web
    # worker with English rules and Nemeth braille. The other 14 languages the
    # menu offers are left out.
    ("mathjax", "sre/speech-worker.js", "."),
    ("mathjax", "sre/mathmaps/base.json", "."),
    ("mathjax", "sre/mathmaps/en.json", "."),
    ("mathjax", "sre/mathmaps/nemeth.json", "."),
    # The font: web fonts, and the glyph tables loaded by character range.
    # The browser downloads only the few woff2 files a page needs; the SVG
    # output and the sources (svg/, cjs/, mjs/, about 45 MB) are left out.
    ("@mathjax/mathjax-newcm-font", "chtml/woff2/*.woff2", f"{FONT_DIR}/mathjax-newcm-font"),
    ("@mathjax/mathjax-newcm-font", "chtml/dynamic/*.js", f"{FONT_DIR}/mathjax-newcm-font"),
]

FIX_MESSAGE = (
    "The book serves MathJax from its own site and never from a CDN. Install it "
    "with `python docs/_ext/fetch_mathjax.py` (needs npm; `make html` runs it)."
)


def _source_dir(app) -> Path:
    configured = app.config.local_mathjax_dir
    return Path(app.confdir, configured).resolve() if configured else fetch_mathjax.DEFAULT_DEST


def shipped_files(source: Path) -> list[tuple[Path, Path]]:
    """(file in node_modules, path relative to _static/mathjax) for everything the site ships.

    Raises ExtensionError when an entry of SHIPPED matches nothing.
    """
    files = []
    for package, pattern, target in SHIPPED:
        root = source / "node_modules" / package
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise ExtensionError(f"local_mathjax: {root / pattern} is missing. {FIX_MESSAGE}")
        files += [(p, Path(target) / p.relative_to(root)) for p in matches]
    return files


def _is_remote(url: str) -> bool:
    return url.startswith("//") or bool(urlsplit(url).scheme)


def _configure(app, config) -> None:
    """config-inited: point MathJax at the local copy, and refuse anything remote."""
    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = f"{STATIC_DIR}/{ENTRY}"
    if _is_remote(config.mathjax_path):
        raise ConfigError(
            f"mathjax_path = {config.mathjax_path!r} loads MathJax from another host. {FIX_MESSAGE}"
        )
    for name in ("mathjax_config", "mathjax2_config", "mathjax3_config"):
        if getattr(config, name):
            # Each writes its own `window.MathJax = ...`, replacing the font path below.
            raise ConfigError(f"local_mathjax: set mathjax4_config, not {name} (MathJax 4).")
    mj = dict(config.mathjax4_config or {})
    loader = dict(mj.get("loader", {}))
    paths = dict(loader.get("paths", {}))
    # MathJax 4's default for [fonts] is a CDN; this puts it next to tex-chtml.js.
    paths.setdefault("fonts", f"[mathjax]/{FONT_DIR}")
    for key, value in paths.items():
        if _is_remote(value):
            raise ConfigError(f"mathjax4_config loader.paths[{key!r}] = {value!r} is another host.")
    loader["paths"] = paths
    mj["loader"] = loader
    config.mathjax4_config = mj


def _uses_local_mathjax(app) -> bool:
    builder = app.builder
    return (
        builder.format == "html"
        and getattr(builder, "math_renderer_name", None) == "mathjax"
        and app.config.mathjax_path == f"{STATIC_DIR}/{ENTRY}"
    )


def _check_installed(app) -> None:
    """builder-inited: fail now, loudly, if the local MathJax is missing or wrong."""
    if not _uses_local_mathjax(app):
        return
    source = _source_dir(app)
    wrong = fetch_mathjax.problems(source)
    try:
        if wrong:
            raise ExtensionError(
                f"local_mathjax: MathJax is not installed in {source} "
                f"({'; '.join(wrong)}). {FIX_MESSAGE}"
            )
        shipped_files(source)  # every entry of SHIPPED is there
    except ExtensionError as error:
        logger.error(str(error))  # one plain line before Sphinx's report of the exception
        raise


def _copy(app, exception) -> None:
    """build-finished: copy the shipped files into <outdir>/_static/mathjax/."""
    if exception is not None or not _uses_local_mathjax(app):
        return
    dest = Path(app.outdir, "_static", STATIC_DIR)
    if dest.exists():
        shutil.rmtree(dest)  # nothing stale from an older list survives
    files = shipped_files(_source_dir(app))
    for src, rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    size = sum(src.stat().st_size for src, _ in files)
    logger.info(f"local_mathjax: {len(files)} files ({size / 1e6:.1f} MB) in _static/{STATIC_DIR}/")


def _fix_404(app, exception) -> None:
    """build-finished: give 404.html a <base> so it works wherever the host serves it.

    Hosts (GitHub Pages, Read the Docs, `python -m http.server` does not)
    answer a missing /a/b/c.html with the site's 404.html, whose relative
    links were written for the site root. A <base> naming the root's path
    fixes them: the path of html_baseurl when it is set (conf.py takes it from
    the environment on Read the Docs and GitHub Pages), else "/" and the
    language's folder (translations.py: "/zh-tw/" for the zh_TW build).
    """
    page = Path(app.outdir, "404.html")
    if exception is not None or app.builder.format != "html" or not page.is_file():
        return
    html = page.read_text(encoding="utf-8")
    if "<base " in html:
        return
    offline_root = "/" + getattr(app.config, "translation_path", "")
    root = urlsplit(app.config.html_baseurl or offline_root).path or "/"
    if not root.endswith("/"):
        root += "/"
    head = html.find("<head>")
    if head < 0:
        raise ExtensionError("local_mathjax: 404.html has no <head>")
    at = head + len("<head>")
    page.write_text(f'{html[:at]}\n<base href="{root}">{html[at:]}', encoding="utf-8")


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.add_config_value("local_mathjax_dir", "", "env", types=frozenset({str}))
    # After sphinx.ext.mathjax's own config defaults are in place.
    app.connect("config-inited", _configure, priority=900)
    app.connect("builder-inited", _check_installed)
    app.connect("build-finished", _copy)
    app.connect("build-finished", _fix_404)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

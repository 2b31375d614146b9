"""Offer every executable page as a Jupyter notebook (.ipynb) beside its .md.

The pages are MyST markdown notebooks. For each one, jupytext converts the
source into an .ipynb under the site's ``_sources/`` folder, and the theme's
download menu lists it (sphinx-book-theme shows ".ipynb" when the page
context has ``ipynb_source``). The notebook has no outputs: a reader runs it
in Jupyter, in an environment with the package's ``docs`` extra. Converting
the source, rather than copying myst-nb's executed notebook, works the same
whether or not this build executed the page (Read the Docs' command in CI
reuses ``make html``'s environment and executes nothing).
"""

from __future__ import annotations

from pathlib import Path

import jupytext
from sphinx.application import Sphinx


def _is_notebook(path: Path) -> bool:
    head = path.read_text(encoding="utf-8")[:400]
    return head.startswith("---") and "file_format: mystnb" in head


def add_ipynb(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if doctree is None or app.builder.format != "html":
        return
    source = Path(app.env.doc2path(pagename))
    if source.suffix != ".md" or not _is_notebook(source):
        return
    notebook = jupytext.read(source, fmt="md:myst")
    target = Path(app.outdir, "_sources", pagename).with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, target, fmt="ipynb")
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app: Sphinx) -> dict:
    # Before the theme builds its download menu (priority 501).
    app.connect("html-page-context", add_ipynb, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

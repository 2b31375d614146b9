"""The repository's files that a page cites, readable on the site itself.

A page that says "the tests (`tests/test_accuracy.py`) check this" or "`make
bench` runs `benchmarks/bench.py`" should let the reader open the file. The
role

    {repo-file}`tests/test_accuracy.py`

renders the path as inline code that links to ``_repo/tests/test_accuracy.py.html``,
a page of the site with the file's source, highlighted, as the build found
it: offline, with no repository host needed. (The package's own modules have
such pages through sphinx.ext.viewcode as well, linked from the API pages.)
``{repo-file}`the benchmark <benchmarks/bench.py>``` links other text.

When the build knows the repository's address (``repo_files_url``, set in
conf.py from BOOK_REPO_URL), each page also links to the file there. A path
that is not a file of the repository, or that leaves it, stops the build.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxRole

logger = logging.getLogger(__name__)

PREFIX = "_repo"  # the pages live in <outdir>/_repo/<path>.html
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<path>[^<>]+)>$", re.S)
_LEXERS = {".py": "python", ".toml": "toml", ".json": "json", ".yml": "yaml", ".yaml": "yaml"}


class repo_file_ref(nodes.Inline, nodes.Element):
    """A link to the site's copy of a repository file (resolved when written)."""


def _root(app) -> Path:
    return Path(app.confdir).resolve()  # conf.py sits at the repository's root


class RepoFileRole(SphinxRole):
    def run(self):
        match = _TITLED.match(self.text)
        title, path = (match["title"], match["path"]) if match else (None, self.text)
        path = path.strip()
        root = _root(self.env.app)
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            msg = self.inliner.reporter.error(f"repo-file: {path!r} is not a file of the repository",
                                              line=self.lineno)
            return [self.inliner.problematic(self.rawtext, self.rawtext, msg)], [msg]
        rel = target.relative_to(root).as_posix()
        files = self.env.__dict__.setdefault("repo_files", {})
        files.setdefault(self.env.docname, set()).add(rel)
        node = repo_file_ref(path=rel)
        if title is None:
            node += nodes.literal(rel, rel)
        else:
            node += nodes.inline(title, title)
        return [node], []


def _visit_html(self, node):
    uri = self.builder.get_relative_uri(self.builder.current_docname, f"{PREFIX}/{node['path']}")
    self.body.append(f'<a class="reference internal repo-file" href="{html.escape(uri)}">')


def _depart_html(self, node):
    self.body.append("</a>")


def _pass(self, node):
    pass


def _purge(app, env, docname):
    getattr(env, "repo_files", {}).pop(docname, None)


def _merge(app, env, docnames, other):
    mine = env.__dict__.setdefault("repo_files", {})
    for docname, paths in getattr(other, "repo_files", {}).items():
        if docname in docnames:
            mine.setdefault(docname, set()).update(paths)


def _pages(app):
    """html-collect-pages: one page per cited file."""
    if app.builder.format != "html":
        return
    cited = sorted({p for paths in getattr(app.env, "repo_files", {}).values() for p in paths})
    root = _root(app)
    highlighter = app.builder.highlighter
    for rel in cited:
        # As sphinx.ext.viewcode does for modules: a page newer than its file
        # is left as it is (`make clean` renders every page again).
        page = Path(app.outdir, PREFIX, rel + ".html")
        if page.is_file() and page.stat().st_mtime > (root / rel).stat().st_mtime:
            continue
        source = (root / rel).read_text(encoding="utf-8")
        lexer = _LEXERS.get(Path(rel).suffix, "text" if Path(rel).name != "Makefile" else "make")
        code = highlighter.highlight_block(source, lexer, linenos=False)
        where = ""
        if app.config.repo_files_url:
            url = f"{app.config.repo_files_url}/blob/HEAD/{rel}"
            where = (f'<p>This is the file as this copy of the book was built from it; '
                     f'<a class="reference external" href="{html.escape(url)}">the repository</a> '
                     f'has the current one.</p>')
        else:
            where = "<p>This is the file as this copy of the book was built from it.</p>"
        # On a phone the path wraps after a slash or an underscore, not mid-word.
        title = html.escape(rel).replace("/", "/<wbr>").replace("_", "_<wbr>")
        body = f"<h1>{title}</h1>\n{where}\n{code}"
        yield f"{PREFIX}/{rel}", {"title": rel, "body": body, "parents": []}, "page.html"
    if cited:
        logger.info(f"repo_files: {len(cited)} cited files in {PREFIX}/")


def _check(app, env):
    """env-check-consistency: every cited file still exists."""
    root = _root(app)
    for docname, paths in getattr(env, "repo_files", {}).items():
        for rel in paths:
            if not (root / rel).is_file():
                raise ExtensionError(f"{docname}: cites {rel}, which is gone")


def setup(app):
    app.add_config_value("repo_files_url", "", "html", types=frozenset({str}))
    app.add_node(repo_file_ref, html=(_visit_html, _depart_html), text=(_pass, _pass),
                 latex=(_pass, _pass))
    app.add_role("repo-file", RepoFileRole())
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _check)
    app.connect("html-collect-pages", _pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}

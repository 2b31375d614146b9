"""The book in two languages: English at the site's root, Traditional Chinese under zh-tw/.

The zh_TW build (`make html-zh`, or a Read the Docs translation project) is
the same sources with Sphinx's gettext catalogs, docs/locales/zh_TW/LC_MESSAGES
(one .po file per translated page, kept in step by `make po` and checked by
tests/test_translations.py). PAGES lists the translated pages; every other
page is English in both builds.

This extension:

* gives every page a link to the same page in the other language (a button in
  the article header, docs/_templates/language-switcher.html) and ``hreflang``
  alternates in its <head>;
* keeps the zh_TW build's notebook outputs (myst-nb's "jupyter_execute"
  folder, which myst-nb puts beside the output folder) out of the English
  site when the zh_TW site is built inside it, as _build/html/zh-tw;
* sets ``translation_path`` ("" or "zh-tw/"), the language's folder under
  the site's root, which the 404 page's <base> needs (local_mathjax.py).

Where the other language lives:

* GitHub Pages and offline: English at the root, zh_TW in zh-tw/ below it, so
  the links are relative and work from the file system too; absolute in the
  ``hreflang`` links when the site's address is known (BOOK_BASE_URL).
* Read the Docs: each language is a project of its own, served at
  <domain>/<language>/<version>/ (language "en" or "zh-tw"), so the other
  language's address is READTHEDOCS_CANONICAL_URL with its language swapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit


@dataclass(frozen=True)
class Language:
    code: str  # Sphinx's `language`
    tag: str  # BCP 47, for lang= and hreflang=
    label: str  # the language's name, in that language
    path: str  # its folder under the site's root ("" for the root itself)
    rtd: str  # its code on Read the Docs (READTHEDOCS_LANGUAGE, and in the URL)


LANGUAGES = {
    "en": Language("en", "en", "English", "", "en"),
    "zh_TW": Language("zh_TW", "zh-TW", "繁體中文", "zh-tw/", "zh-tw"),
}
SOURCE = "en"

# The pages translated into zh_TW: the student's path. The how-to guides and
# the reference stay English (the zh_TW landing page says so).
PAGES = (
    "index",
    "tutorial/first-loss",
    "tutorial/train-softmax",
    "explanation/formula",
    "explanation/accuracy",
    "explanation/one-hot",
    "explanation/stability",
    "explanation/gradient",
    "glossary",
    "404",
)


def sphinx_language(code: str) -> str:
    """Sphinx's name for a language: "zh_TW" from Read the Docs' "zh-tw", "en" from "en"."""
    for language in LANGUAGES.values():
        if code.replace("-", "_").lower() == language.code.lower():
            return language.code
    raise ValueError(f"no translation of the book into {code!r}; there are {sorted(LANGUAGES)}")


def language_of(config) -> Language:
    return LANGUAGES[sphinx_language(config.language or SOURCE)]


def _other(language: Language) -> Language:
    (other,) = [lang for lang in LANGUAGES.values() if lang != language]
    return other


def _other_root(own: Language, other: Language) -> str:
    """The other language's root: an absolute address on Read the Docs, else relative to own's root."""
    canonical = os.environ.get("READTHEDOCS_CANONICAL_URL", "")
    parts = urlsplit(canonical)
    segments = parts.path.split("/")
    if own.rtd in segments:  # <domain>/<language>/<version>/: swap the language
        segments[segments.index(own.rtd)] = other.rtd
        return urlunsplit(parts._replace(path="/".join(segments)))
    # One tree: English at the root, each translation in its folder.
    return "../" * own.path.count("/") + other.path


def _page_context(app, pagename, templatename, context, doctree) -> None:
    own = language_of(app.config)
    target = app.builder.get_target_uri(pagename)
    up = "../" * pagename.count("/")  # from this page to its build's root
    site = app.config.html_baseurl  # this build's root, where its address is known
    if site and not site.endswith("/"):
        site += "/"

    def href(language: Language, absolute: bool) -> str:
        root = "" if language == own else _other_root(own, language)
        if urlsplit(root).scheme:
            return root + target
        return urljoin(site, root + target) if absolute else up + root + target

    other = _other(own)
    context["translation_switch"] = {
        "url": href(other, absolute=False),
        "label": other.label,
        "tag": other.tag,
        "title": "Read this page in English" if other.code == SOURCE else "以繁體中文閱讀本頁",
    }
    links = [(lang.tag, href(lang, bool(site))) for lang in LANGUAGES.values()]
    links.append(("x-default", href(LANGUAGES[SOURCE], bool(site))))
    tags = "".join(f'\n<link rel="alternate" hreflang="{tag}" href="{escape(url)}" />' for tag, url in links)
    context["metatags"] = context.get("metatags", "") + tags


def _keep_outputs_apart(app) -> None:
    """builder-inited, after myst-nb's: a translation's notebook outputs beside its doctrees.

    myst-nb writes each page's outputs (images, glue data) to
    <outdir>/../jupyter_execute; for _build/html/zh-tw that would be inside
    the English site. A translation's go to <doctreedir>/../jupyter_execute-<language>.
    """
    own = language_of(app.config)
    if own.code == SOURCE or not hasattr(app.env, "mystnb_config"):
        return
    folder = Path(app.doctreedir).parent / f"jupyter_execute-{own.code}"
    app.env.mystnb_config = app.env.mystnb_config.copy(output_folder=str(folder.resolve()))


def _configure(app, config) -> None:
    config.translation_path = language_of(config).path


def setup(app):
    app.add_config_value("translation_path", "", "html", types=frozenset({str}))
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _keep_outputs_apart, priority=900)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Search in the Chinese build: Sphinx 9.0.4's own zh search, with two fixes.

1. Sphinx 9.0.4 writes ``window.Stemmer = ChineseStemmer;`` into
   language_data.js, but its Chinese search ships the *English* stemmer (for
   the Latin words on a Chinese page), whose class is ``EnglishStemmer``. The
   browser stops at the undefined name, so every query, English or Chinese,
   finds nothing (sphinx-doc/sphinx#14229, fixed upstream after 9.0.4). Here
   the language's JavaScript names the class it ships.
2. jieba (0.42.1) splits Chinese text into words for the index. Its first
   use builds a cache of its dictionary; that cache goes to a folder of the
   environment (``<sys.prefix>/var/cache/jieba``, under .venv for `make`),
   warmed once by ``python docs/_ext/search_zh.py`` when `make venv` installs
   it, instead of the system's temporary folder on every fresh machine. The
   book's own words (交叉熵, 對數機率 ...), which jieba's general dictionary
   would cut in two, come from docs/locales/zh_TW/search-words.txt
   (``html_search_options = {"dict": ...}`` in conf.py), so that a query for
   one of them finds the pages that use it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

CACHE_DIR = Path(sys.prefix, "var", "cache", "jieba")


def _use_cache_dir() -> None:
    """Point jieba's dictionary cache at CACHE_DIR (when it can be written)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict ..." lines in the build's output
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # jieba keeps its default, the system's temporary folder
    jieba.dt.tmp_dir = str(CACHE_DIR)


def _stemmer_code() -> str:
    """base-stemmer.js and english-stemmer.js as Sphinx ships them, and the class they define."""
    import sphinx.search

    minified = Path(sphinx.search.__file__).parent / "minified-js"
    return "\n".join((
        (minified / "base-stemmer.js").read_text(encoding="utf-8"),
        (minified / "english-stemmer.js").read_text(encoding="utf-8"),
        "window.Stemmer = EnglishStemmer;",
    ))


def _language_class():
    from sphinx.search.zh import SearchChinese

    class SearchTraditionalChinese(SearchChinese):
        """Sphinx's Chinese search; its JavaScript names EnglishStemmer, the class it ships."""

        # Empty: Sphinx then inserts js_stemmer_code as it is, instead of the
        # minified files followed by the wrong class name.
        js_stemmer_rawcode = ""
        js_stemmer_code = _stemmer_code()

    return SearchTraditionalChinese


def _setup_search(app, config) -> None:
    language = config.html_search_language or config.language or ""
    if not language.startswith("zh"):
        return
    _use_cache_dir()
    app.add_search_language(_language_class())


def warm() -> None:
    """Build jieba's dictionary cache in CACHE_DIR now (`make venv` calls this once)."""
    import jieba

    _use_cache_dir()
    jieba.initialize()


def setup(app):
    app.connect("config-inited", _setup_search)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    warm()

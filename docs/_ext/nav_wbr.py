"""Line-break opportunities in the sidebars' long code names.

A name such as ``crossentropy_ref.binary_cross_entropy_with_logits`` is one
word to the browser: it has no place where a line may break, and is wider
than either sidebar. CSS can only break it anywhere (``logsumex`` / ``p``).
This extension puts a ``<wbr>`` (an optional break, invisible and not
copied) before each dot and after each underscore of a long name (20
characters or more) in the link texts of the book's navigation (left
sidebar), the page contents (right sidebar) and the previous/next links,
and in the page's headings, so that the name wraps between its parts:
``crossentropy_ref`` / ``.logsumexp``.

An API signature, ``crossentropy_ref.cross_entropy(logits, target, ...)``,
has the same problem on a phone: ``crossentropy_ref.cross_entropy(logits,``
is one word, and the browser cut it mid-word (``logi`` / ``ts``). In the
signatures (``dt.sig``) a ``<wbr>`` also goes after the module's dot and
after the opening parenthesis, so that the name and each parameter move to
the next line whole.

It wraps the pydata-sphinx-theme functions that render the two sidebars,
``generate_toctree_html`` and ``generate_toc_html``, and edits the HTML
they return, and the headings of the page's HTML body. What a reader sees,
copies or searches for is unchanged.
"""

from __future__ import annotations

import functools
import re

from bs4 import BeautifulSoup, NavigableString

# Break before a dot and after an underscore, between word characters...
_BREAK = re.compile(r"(?<=[A-Za-z_])(?=\.[A-Za-z_])|(?<=[A-Za-z0-9]_)(?=\w)")
# ...of a name too long for a line of the sidebar. A shorter one, such as
# crossentropy_ref, moves to the next line whole, as any word does.
_LONG_NAME = re.compile(r"[\w.]{20,}")
_MARK = "\x00"  # stands for a <wbr> while the text is split


def _mark(match: re.Match) -> str:
    return _BREAK.sub(_MARK, match.group())


# Makes the <wbr> tags: html.parser knows <wbr> is a void element.
_FACTORY = BeautifulSoup("", "html.parser")


def _add_breaks(tree, names=("a",)) -> bool:
    """Put <wbr> into the texts of the `names` elements in `tree`, once.

    Returns whether it changed anything.
    """
    changed = False
    for link in tree.find_all(names):
        if link.find("wbr") is not None:
            continue  # done already (the theme caches what it renders)
        for text in list(link.find_all(string=True)):
            parts = _LONG_NAME.sub(_mark, str(text)).split(_MARK)
            if len(parts) < 2:
                continue
            pieces = []
            for i, part in enumerate(parts):
                if i:
                    pieces.append(_FACTORY.new_tag("wbr"))
                pieces.append(NavigableString(part))
            text.replace_with(*pieces)
            changed = True
    return changed


def _break_signatures(tree) -> bool:
    """<wbr> after the prename (``crossentropy_ref.``) and the opening paren of each signature."""
    changed = False
    for sig in tree.select("dt.sig"):
        if sig.find("wbr") is not None:
            continue
        marks = sig.select(".sig-prename") + sig.select(".sig-paren")[:1]
        for mark in marks:
            mark.insert_after(_FACTORY.new_tag("wbr"))
            changed = True
        for name in sig.select(".sig-name"):
            changed |= _add_breaks(name, ["span"])
    return changed


def _wrap(render):
    @functools.wraps(render)
    def wrapped(*args, **kwargs):
        out = render(*args, **kwargs)
        if hasattr(out, "find_all"):  # a BeautifulSoup tree; "" if no TOC
            _add_breaks(out)
        return out

    return wrapped


_HEADING = re.compile(r"<(h[1-6])\b[^>]*>.*?</\1>", re.S)
_SIGNATURE = re.compile(r'<dt class="sig\b[^"]*"[^>]*>.*?</dt>', re.S)


def _add_headings(fragment) -> bool:
    return _add_breaks(fragment, ["h1", "h2", "h3", "h4", "h5", "h6"])


def _fix(match: re.Match, add) -> str:
    """The HTML of one heading or signature, with its <wbr>s added."""
    html = match.group()
    if add is _add_headings and not _LONG_NAME.search(html):
        return html
    fragment = BeautifulSoup(html, "html.parser")
    return str(fragment) if add(fragment) else html


def _on_page(app, pagename, templatename, context, doctree) -> None:
    for key in ("generate_toctree_html", "generate_toc_html"):
        if key in context:
            context[key] = _wrap(context[key])
    # The page's own headings, e.g. an API page's title
    # crossentropy_ref.binary_cross_entropy_with_logits.
    # Each heading and signature is parsed on its own: parsing a whole body
    # (a module's highlighted source runs to megabytes) cost seconds a build.
    body = context.get("body")
    if body:
        body = _HEADING.sub(lambda m: _fix(m, _add_headings), body)
        context["body"] = _SIGNATURE.sub(lambda m: _fix(m, _break_signatures), body)
    # The previous/next links under the article show page titles too.
    for key in ("prev", "next"):
        link = context.get(key)
        if link and link.get("title"):
            title = BeautifulSoup(f"<a>{link['title']}</a>", "html.parser")
            _add_breaks(title)
            link["title"] = title.a.decode_contents()


def setup(app):
    # After the theme's own html-page-context handler (priority 500) has put
    # the functions into the context.
    app.connect("html-page-context", _on_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

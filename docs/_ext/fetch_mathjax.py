"""Install the MathJax the book serves from its own _static/ (run by `make html`).

    python docs/_ext/fetch_mathjax.py [DEST]

installs the npm packages below, at exactly these versions, into DEST
(default: .mathjax/ at the repository root, which git ignores) with `npm
install --no-save --no-package-lock`: no package.json, no lockfile, nothing in
the repository changes. It needs network access to the npm registry once; the
Sphinx build after it needs none. When the installed versions already match,
it does nothing.

The versions live here and nowhere else: docs/_ext/local_mathjax.py (the
Sphinx extension that copies the files into the site) imports them and refuses
to build with anything else. This file uses only the standard library, so it
runs before the virtual environment exists (Read the Docs runs it that way).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEST = ROOT / ".mathjax"

# npm package -> exact version. mathjax's tex-chtml.js contains the code of the
# mathjax-newcm font; the font package holds the web fonts (woff2) and the
# glyph tables MathJax loads on demand.
PACKAGES = {
    "mathjax": "4.1.3",
    "@mathjax/mathjax-newcm-font": "4.1.3",
}
STAMP_NAME = "installed.json"  # written last, after the versions are verified


def installed_versions(dest: Path) -> dict[str, str | None]:
    """The version of each package installed under dest/node_modules (None if absent)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        manifest = dest / "node_modules" / name / "package.json"
        try:
            found[name] = json.loads(manifest.read_text(encoding="utf-8"))["version"]
        except (OSError, ValueError, KeyError):
            found[name] = None
    return found


def problems(dest: Path) -> list[str]:
    """What is wrong with the installation in dest; empty if it is usable."""
    return [
        f"{name}: expected {want}, found {have or 'nothing'}"
        for (name, want), have in zip(PACKAGES.items(), installed_versions(dest).values())
        if have != want
    ]


def main(argv: list[str]) -> int:
    dest = Path(argv[1]).resolve() if len(argv) > 1 else DEFAULT_DEST
    stamp = dest / STAMP_NAME
    if not problems(dest) and stamp.is_file():
        stamp.touch()  # up to date (for make, newer than this script)
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print(
            "fetch_mathjax: npm not found. The book serves MathJax from its own site and "
            "installs it with npm (Node.js); install Node.js and npm, then run `make html` again.",
            file=sys.stderr,
        )
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    print(f"fetch_mathjax: npm install {' '.join(specs)} into {dest}", flush=True)
    cmd = [npm, "install", "--prefix", str(dest), "--no-save", "--no-package-lock",
           "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", *specs]
    if subprocess.run(cmd, check=False).returncode != 0:
        print("fetch_mathjax: npm install failed (see above)", file=sys.stderr)
        return 1
    # npm keeps a hidden lockfile that records where each package came from; it
    # is not needed to use the files, so do not leave it around.
    (dest / "node_modules" / ".package-lock.json").unlink(missing_ok=True)
    wrong = problems(dest)
    if wrong:
        print("fetch_mathjax: wrong versions after install: " + "; ".join(wrong), file=sys.stderr)
        return 1
    stamp.write_text(json.dumps(PACKAGES, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

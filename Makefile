# crossentropy_ref: `make test` and `make html` each create the virtual
# environment .venv on first use (Python 3.11) and reuse it after that.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MATHJAX := .mathjax/installed.json
BUILDDIR ?= _build
SPHINXOPTS ?= -W --keep-going -n
SPHINXBUILD = $(BIN)/sphinx-build
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help venv test html doctest clean livehtml serve bench

help:
	@echo "make test      run the tests and the package's doctests"
	@echo "make html      build the book into $(BUILDDIR)/html"
	@echo "make doctest   run Sphinx's doctest builder over the book and the API docs"
	@echo "make serve     serve $(BUILDDIR)/html on http://$(HOST):$(PORT)"
	@echo "make livehtml  rebuild the book on every change (authors)"
	@echo "make bench     time crossentropy_ref against torch (a few minutes)"
	@echo "make clean     remove $(BUILDDIR)"

# The environment: reinstalled whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'
	touch $@

venv: $(STAMP)

# MathJax, served from the site itself: npm packages at exact versions, no lockfile.
$(MATHJAX): docs/_ext/fetch_mathjax.py
	$(PYTHON) docs/_ext/fetch_mathjax.py

test: $(STAMP)
	$(BIN)/python -m pytest

html: $(STAMP) $(MATHJAX)
	$(SPHINXBUILD) -M html docs $(BUILDDIR) -c . $(SPHINXOPTS)

doctest: $(STAMP) $(MATHJAX)
	$(SPHINXBUILD) -M doctest docs $(BUILDDIR) -c . $(SPHINXOPTS)

livehtml: $(STAMP) $(MATHJAX)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'sphinx-autobuild==2025.8.25'
	$(BIN)/sphinx-autobuild docs $(BUILDDIR)/html -c . $(SPHINXOPTS) --host $(HOST) --port $(PORT)

serve:
	@test -f $(BUILDDIR)/html/index.html || { echo "no site yet: run 'make html' first"; exit 1; }
	$(PYTHON) -m http.server --bind $(HOST) --directory $(BUILDDIR)/html $(PORT)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(BUILDDIR)

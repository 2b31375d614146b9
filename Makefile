# crossentropy_ref: `make test` and `make html` each create the virtual
# environment .venv on first use (Python 3.11) and reuse it after that.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MATHJAX := .mathjax/installed.json
BUILDDIR ?= _build
SPHINXOPTS ?= -W --keep-going -n -j auto
UV_VERSION := 0.13.8
SPHINXBUILD = $(BIN)/sphinx-build
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help venv test html html-zh po doctest clean livehtml serve bench

help:
	@echo "make test      run the tests and the package's doctests"
	@echo "make html      build the book into $(BUILDDIR)/html"
	@echo "make html-zh   build its zh_TW translation into $(BUILDDIR)/html/zh-tw (after make html)"
	@echo "make po        bring docs/locales in step with the English pages (translators)"
	@echo "make doctest   run Sphinx's doctest builder over the book and the API docs"
	@echo "make serve     serve $(BUILDDIR)/html on http://$(HOST):$(PORT)"
	@echo "make livehtml  rebuild the book on every change (authors)"
	@echo "make bench     time crossentropy_ref against torch (a few minutes)"
	@echo "make clean     remove $(BUILDDIR)"

# The environment: reinstalled whenever pyproject.toml changes. uv installs it
# (from empty caches it took 84 s here, where pip took 405 s). torch must be
# the CPU build: where pip is configured with local wheels (find-links), as on
# the project's own machines, uv is given the same folder; elsewhere
# UV_TORCH_BACKEND=cpu makes uv take torch from PyTorch's CPU wheels, not the
# multi-GB CUDA build the default index serves.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'
	links="$${PIP_FIND_LINKS:-$$($(BIN)/python -m pip config get global.find-links 2>/dev/null)}"; \
	if [ -n "$$links" ]; then export UV_FIND_LINKS="$${UV_FIND_LINKS:-$$links}"; \
	else export UV_TORCH_BACKEND="$${UV_TORCH_BACKEND:-cpu}"; fi; \
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test,docs]'
	# Compile the numba kernels once into their on-disk cache (about 15 s), rather than in
	# every process of the book build and the tests that first needs them.
	$(BIN)/python -c 'from crossentropy_ref._engine._jit import warm; warm()'
	# jieba's dictionary cache for the zh_TW search index, built once into .venv.
	$(BIN)/python docs/_ext/search_zh.py
	touch $@

venv: $(STAMP)

# MathJax, served from the site itself: npm packages at exact versions, no lockfile.
$(MATHJAX): docs/_ext/fetch_mathjax.py
	$(PYTHON) docs/_ext/fetch_mathjax.py

test: $(STAMP)
	$(BIN)/python -m pytest

html: $(STAMP) $(MATHJAX)
	$(SPHINXBUILD) -M html docs $(BUILDDIR) -c . $(SPHINXOPTS)

# The student's path in Traditional Chinese (docs/locales/zh_TW), the other
# pages in English, published under zh-tw/ beside the English root. It replays
# the pages' executions from the cache that make html filled (conf.py), so
# after make html it executes nothing.
html-zh: $(STAMP) $(MATHJAX)
	BOOK_LANGUAGE=zh_TW NB_EXECUTION_MODE=cache $(SPHINXBUILD) -b html docs $(BUILDDIR)/html/zh-tw \
		-d $(BUILDDIR)/doctrees-zh_TW -c . $(SPHINXOPTS)

# Translators: extract the translated pages' messages and merge them into
# docs/locales/zh_TW/LC_MESSAGES (sphinx-intl); then translate what is new or
# fuzzy. tests/test_translations.py fails until every message is translated.
po: $(STAMP)
	$(BIN)/python docs/_tools/po.py update

# The doctests (docstrings and {doctest} blocks) need no page outputs, so the
# pages are not executed here (see conf.py), in an environment of its own.
doctest: $(STAMP) $(MATHJAX)
	NB_EXECUTION_MODE=off $(SPHINXBUILD) -b doctest docs $(BUILDDIR)/doctest -d $(BUILDDIR)/doctrees-doctest -c . $(SPHINXOPTS)

livehtml: $(STAMP) $(MATHJAX)
	$(BIN)/uv pip install --quiet --python $(BIN)/python 'sphinx-autobuild==2025.8.25'
	$(BIN)/sphinx-autobuild docs $(BUILDDIR)/html -c . $(SPHINXOPTS) --host $(HOST) --port $(PORT)

serve:
	@test -f $(BUILDDIR)/html/index.html || { echo "no site yet: run 'make html' first"; exit 1; }
	$(PYTHON) -m http.server --bind $(HOST) --directory $(BUILDDIR)/html $(PORT)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(BUILDDIR)

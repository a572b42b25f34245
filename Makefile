# TorchLab: `make run` serves the app on http://localhost:8501, `make test` runs every test.
# Both install what they need into .venv first (only when the requirements changed).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint typecheck unit pages browser bench chromium postgres clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "TorchLab needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.run-installed $@

run: $(VENV)/.run-installed
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.address 0.0.0.0

# Chromium for the browser tests (and a CJK font, so Chinese screenshots are legible): installed
# with apt-get when missing and we are root; otherwise the browser tests skip loudly.
BROWSER_PACKAGES := chromium fonts-wqy-microhei
chromium:
	@if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi wqy; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing $(BROWSER_PACKAGES) (Debian packages) for the browser tests..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null 2>&1; } || \
		echo "!!! Could not install Chromium: the browser tests will be SKIPPED."; \
	elif ! command -v chromium >/dev/null 2>&1; then \
		echo "!!! Chromium is missing and we are not root: the browser tests will be SKIPPED."; fi

# N replicas of the app behind nginx on PORT, in the foreground (Ctrl-C stops them all): cookie
# affinity, failover to a live replica, one cookie secret. Runtime files go to .run/. See deploy/replicas.py.
N ?= 2
.PHONY: serve-replicas nginx
serve-replicas: $(VENV)/.run-installed nginx
	exec $(BIN)/python -m deploy.replicas --replicas $(N) --port $(PORT) --host 0.0.0.0

# nginx for serve-replicas and its tests (tests/deploy): Debian's package, installed with apt-get
# when missing and we are root; otherwise those tests skip loudly. Its /etc/nginx is never used.
nginx:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing nginx (Debian package) for the replicas..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q nginx >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nginx >/dev/null 2>&1; } || \
		echo "!!! Could not install nginx: the replica tests will be SKIPPED."; \
	else echo "!!! nginx is missing and we are not root: the replica tests will be SKIPPED."; fi

# PostgreSQL for the classroom storage tests (tests/classroom): Debian's package, installed with apt-get when
# missing and we are root. The tests start their own throwaway cluster (initdb/pg_ctl in a temporary folder,
# on a unix socket there) and never touch the package's own cluster; without it they skip loudly.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing postgresql (Debian package) for the classroom storage tests..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q postgresql >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1; } || \
		echo "!!! Could not install PostgreSQL: the PostgreSQL storage tests will be SKIPPED."; \
	else echo "!!! PostgreSQL is missing and we are not root: the PostgreSQL storage tests will be SKIPPED."; fi

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(VENV)/.dev-installed chromium nginx postgres lint
	$(BIN)/python -m pytest -n 2 --timeout 600 $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed chromium postgres
	$(BIN)/python -m bench.pages
	$(BIN)/python -m bench.slider
	$(BIN)/python -m bench.figures
	$(BIN)/python -m bench.graph_render
	$(BIN)/python -m bench.timing_accuracy
	$(BIN)/python -m bench.load --students 50 --duration 120
	$(BIN)/python -m bench.classroom --students 100

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis

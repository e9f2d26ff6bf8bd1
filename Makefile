# Every target finds uv, or installs it into .tools/ with the Python already on the machine.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
UV_RUN := $(UV) run --frozen
# Trust the platform's certificate store (where a site's own CA is installed) for downloads.
export UV_SYSTEM_CERTS ?= 1

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt check-migrations clean bench bench-smoke

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	@echo "uv not found: installing it into .tools/ with $(PYTHON)"
	@$(PYTHON) -m venv $(CURDIR)/.tools 2>/dev/null && $(CURDIR)/.tools/bin/python -m pip install --quiet uv \
	  || $(PYTHON) -m pip install --quiet --target $(CURDIR)/.tools/lib uv \
	  && { test -x $(CURDIR)/.tools/bin/uv || { mkdir -p $(CURDIR)/.tools/bin && ln -sf $(CURDIR)/.tools/lib/bin/uv $(CURDIR)/.tools/bin/uv; }; }

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

run: .venv/.synced ## Serve on http://127.0.0.1:8000 (SQLite, migrations applied, demo data)
	$(UV_RUN) stockflow serve --demo

test: .venv/.synced ## Run the whole test suite (SQLite and PostgreSQL)
	$(UV_RUN) pytest

lint: .venv/.synced ## ruff check, ruff format --check, mypy
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) mypy

fmt: .venv/.synced ## Format and autofix
	$(UV_RUN) ruff format .
	$(UV_RUN) ruff check --fix .

check-migrations: .venv/.synced ## Fail if the models and the migrations disagree
	@rm -f var/check-migrations.db
	STOCKFLOW_DATABASE_URL=sqlite:///var/check-migrations.db $(UV_RUN) stockflow db upgrade
	STOCKFLOW_DATABASE_URL=sqlite:///var/check-migrations.db $(UV_RUN) stockflow db check

bench: .venv/.synced ## Benchmark on PostgreSQL and SQLite, with the ceiling (about 5 min; docs/benchmarks.md)
	$(UV_RUN) python -m benchmarks run $(BENCH_ARGS)

bench-smoke: .venv/.synced ## The benchmark in seconds on a tiny catalog: checks it runs, judges no figure
	$(UV_RUN) python -m benchmarks run --smoke $(BENCH_ARGS)

clean: ## Remove the virtualenv, caches and the local SQLite database
	rm -rf .venv .tools var .pytest_cache .mypy_cache .ruff_cache

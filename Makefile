# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv with Python 3.11+ and installs what it needs on first use.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-discord test lint types unit bench clean

$(STAMP): pyproject.toml scripts/bootstrap
	bash scripts/bootstrap $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dsup run examples/dsup.toml

# The same fleet bridged to the project's Discord fake: no real Discord needed.
demo-discord: $(STAMP)
	PYTHONPATH=. $(PY) scripts/demo_discord.py

test: lint types unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

types: $(STAMP)
	$(VENV)/bin/mypy

# Two workers, one per core of CI's machine: most tests wait on real processes and
# the fake Discord, so the wall time about halves. Each worker is its own process
# with its own children, tmp_path and ports; run one file with plain `pytest`.
# Tests marked xdist_group("floods") fill the cores: they share one worker.
unit: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache examples/.dsup examples/.dsup-discord examples/.dsup-discord.toml

# Two commands do all set-up: `make demo` and `make test`. Both (re)use .venv idempotently.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m anomaly_kd.run experiment=demo

# Two worker processes, one test file each at a time (module fixtures are built once): on 2 cores
# the suite takes about half the serial time (README, Tests). `pytest -q` alone runs it serially.
XDIST := -n 2 --dist loadfile

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST)

test-fast: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/metrics.py
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info

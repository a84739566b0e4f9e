# Dream Arcade. `make play` and `make test` do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
GAME ?= Breakout
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: setup browser play test lint collect train evaluate bench load-test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,dbc,onnx]"
	touch $@

# Debian's chromium for the browser tests (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

play: setup  ## serve the shipped models; prints the page URL
	$(PY) -m server --host $(HOST) --port $(PORT)

test: setup browser  ## the whole test suite, as CI runs it
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

collect: setup
	$(PY) training/collect.py --game $(GAME) --policy mixed --steps 50000

train: setup
	$(PY) training/train.py --game $(GAME)

evaluate: setup
	$(PY) training/evaluate.py --checkpoint runs/$(GAME)/snapshot --data data/$(GAME)-heldout

bench: setup
	$(PY) benchmarks/bench.py --out docs/benchmarks.json

load-test: setup
	$(PY) benchmarks/load_test.py --players 1,4,8

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts

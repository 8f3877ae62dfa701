# accelc — every target sets up what it needs on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: demo test test-slow test-all bench setup clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m '' tests

# accelc against PyTorch eager, torch.compile, ONNX Runtime fp32/int8 and untuned TVM (~1 h on 2 cores)
bench: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache

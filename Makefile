# Two entry points: `make demo` (set up, then the default training job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean crosscheck crosscheck-setup crosscheck-usage

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

# Cross-check on the original Safety-Gymnasium 1.0.0 (README, "Cross-check on the original
# Safety-Gymnasium"): a second venv, set up once, runs a policy exported from a run directory
# on the original task.   make crosscheck RUN=runs/demo EPISODES=16 [SEED=0] [MEMBER=0]
XC_PYTHON ?= $(PYTHON)
XC_VENV := .venv-crosscheck
XC_BIN := $(XC_VENV)/bin
XC_STAMP := $(XC_VENV)/.installed
EPISODES ?= 16
SEED ?= 0
MEMBER ?= 0

crosscheck-setup: $(XC_STAMP)

$(XC_STAMP): scripts/crosscheck_setup.py
	test -x $(XC_BIN)/python || $(XC_PYTHON) -m venv $(XC_VENV)
	$(XC_BIN)/python scripts/crosscheck_setup.py
	touch $(XC_STAMP)

crosscheck-usage:
	@test -n "$(RUN)" || { echo "usage: make crosscheck RUN=<run directory> [EPISODES=16] [SEED=0] [MEMBER=0]" >&2; exit 2; }

crosscheck: crosscheck-usage setup crosscheck-setup
	$(BIN)/shapo-export $(RUN) --member $(MEMBER) --out $(RUN)/policy.npz
	$(XC_BIN)/python scripts/crosscheck.py $(RUN)/policy.npz --episodes $(EPISODES) --seed $(SEED)

clean:
	rm -rf $(VENV) $(XC_VENV) runs .pytest_cache

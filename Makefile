# make run    set up .venv, then run the bot (no platform token: it chats in the terminal)
# make test   ruff, mypy and the whole test suite (CPU only, a few minutes)
# make lint   ruff check and mypy (configured in pyproject.toml)
# make models retrain every shipped model (parents before the variants fine-tuned from them)
# make bench  the benchmarks against the seed recipe (figures go in docs/BENCHMARKS.md)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint models bench setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

setup: $(STAMP)

# Migrate first: `python -m storage migrate` is `alembic upgrade head` with a one-line
# error instead of a traceback when the database is unreachable.
run: setup
	$(BIN)/python -m storage migrate
	$(BIN)/python -m bot

test: setup lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

models: setup
	$(BIN)/python -m training train-all

bench: setup
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/training.py --learning-rate 0.01 --precision mixed_bfloat16  # docs/BENCHMARKS.md
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/chat.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/retrain.py --style shakespeare --minutes 5

clean:
	rm -rf var/cache var/runs

# The two commands that matter: `make run` and `make test`. Each installs
# whatever is missing first and trains a dialogue model if none matches the data.

VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
CODE      := bot actions
PYFILES   := bot actions tests benchmarks

.PHONY: run chat test install model lint typecheck unit bench clean

run: model
	$(BIN)/voicebot chat

chat: run

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install.sh
	bash scripts/install.sh
	touch $@

model: install
	$(BIN)/voicebot models train

lint: install
	$(BIN)/ruff check $(PYFILES)
	$(BIN)/ruff format --check $(PYFILES)

typecheck: install
	$(BIN)/mypy $(CODE)

test: lint typecheck model
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

bench: model
	$(BIN)/python benchmarks/dialogue_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

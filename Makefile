# The two commands that matter: `make run` and `make test`. Each installs
# whatever is missing first and trains a dialogue model if none matches the data.

VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
CODE      := bot actions
PYFILES   := bot actions tests benchmarks

.PHONY: run chat test install model lint typecheck unit bench clean

# Answers a call on the default sound devices. The English speech model is
# downloaded the first time; without it (offline) the call is typed instead.
run: model
	@if $(BIN)/voicebot models pull en-us; then \
		$(BIN)/voicebot run; \
	else \
		echo "make run: no English speech model (see above); starting a text call instead." >&2; \
		$(BIN)/voicebot chat; \
	fi

chat: model
	$(BIN)/voicebot chat

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
	bash scripts/test.sh

unit: install
	$(BIN)/pytest tests/unit

bench: model
	$(BIN)/python benchmarks/dialogue_bench.py
	$(BIN)/python benchmarks/conversation_bench.py
	$(BIN)/python benchmarks/voice_bench.py
	$(BIN)/python benchmarks/queue_bench.py
	$(BIN)/python benchmarks/training_bench.py
	$(BIN)/python benchmarks/telephony_bench.py
	$(BIN)/python benchmarks/agent_voice_bench.py
	$(BIN)/python benchmarks/console_load_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

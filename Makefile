# The two set-up commands of the README, and the developer chores. Every target installs what it
# needs first (the Debian dataset package when apt is available, then a virtualenv in .venv).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
RUN    ?= runs/demo
FMNIST  = /usr/share/datasets/fashion-mnist

.PHONY: setup demo test lint stubs bench-train clean

setup: $(VENV)/.installed

# Real Fashion-MNIST from Debian (offline), then the project and its dev tools in a virtualenv.
$(VENV)/.installed: pyproject.toml
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	  || echo "note: could not install dataset-fashion-mnist; gan train will try to download"; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# The main job on the built-in default: a short Fashion-MNIST run.
demo: setup
	$(BIN)/gan train --out $(RUN) --epochs 3

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .

bench-train: setup
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache

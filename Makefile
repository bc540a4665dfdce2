# The two set-up commands of the README (`make demo`, `make test`) and the developer chores.
# Every target installs what it needs first: the Debian dataset package when apt is available,
# the project in a virtualenv (.venv), and onnxruntime-node for the Node example.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# NVIDIA's tritonclient, for the Open Inference Protocol tests: it needs protobuf < 7 and our
# stubs need protobuf 7, so it lives in a venv of its own that the tests run as a subprocess.
TRITON_VENV ?= .venv-triton
RUN    ?= runs/demo
FMNIST  = /usr/share/datasets/fashion-mnist
NODE_EXAMPLE = examples/node

.PHONY: setup demo test lint stubs bench-train bench-engine bench-serve bench-serve-ray bench-soak bench-quality bench-recipe bench-conditional bench-arch clean

setup: $(VENV)/.installed $(TRITON_VENV)/.installed $(NODE_EXAMPLE)/node_modules/.package-lock.json

# Real Fashion-MNIST from Debian (offline), then the project and its dev tools in a virtualenv.
$(VENV)/.installed: pyproject.toml
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	  || echo "note: could not install dataset-fashion-mnist; gan train will try to download"; \
	fi
	@# Debian's chromium for the page's browser test (Playwright drives it; it never downloads one)
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium \
	  || echo "note: could not install chromium; the page's browser test is skipped"; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# setuptools prints an information-only notice about editable installs as a warning
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(TRITON_VENV)/.installed:
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q --upgrade pip
	$(TRITON_VENV)/bin/pip install -q 'tritonclient[grpc,http]>=2.50' 'protobuf<7'
	@touch $@

# onnxruntime-node for the Node example and its test: the CPU binaries ship in the npm package;
# its only install script fetches CUDA binaries, so it is not run (--ignore-scripts).
$(NODE_EXAMPLE)/node_modules/.package-lock.json: $(NODE_EXAMPLE)/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund --ignore-scripts; \
	else echo "note: npm not found: the Node example test is skipped"; fi

# The main job on the built-in default, end to end (see examples/demo.sh).
demo: setup
	RUN=$(RUN) PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench-train: setup
	$(BIN)/python bench/train_throughput.py

bench-engine: setup
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) $(TRITON_VENV) runs .pytest_cache $(NODE_EXAMPLE)/node_modules

stubs: setup
	$(BIN)/python -m serve.codegen

bench-quality: setup
	$(BIN)/python bench/quality.py

bench-recipe: setup  # the recipe before issue 12 against today's: 5 and 30 min, today's to 1 h
	$(BIN)/python bench/quality.py --recipe before-12-32px,today --seconds 300,1800 \
		--longer today=3600 --images 0 --out runs/recipes

bench-conditional: setup  # the conditional default without and with its two loss terms, 2,340 steps
	$(BIN)/python bench/quality.py --recipe conditional-before-12,conditional --seconds 0 \
		--images 299520 --out runs/conditional

bench-arch: setup  # the original fully connected GAN against DCGAN at equal time
	$(BIN)/python bench/quality.py --arch mlp,dcgan --seconds 300 --images 0

bench-serve: setup
	$(BIN)/python bench/serve_load.py

# Plain gan serve vs Ray Serve with 1 and 2 replicas (docs/deploy.md).
bench-serve-ray: setup
	$(BIN)/python bench/serve_ray.py

bench-soak: setup
	$(BIN)/python bench/soak.py

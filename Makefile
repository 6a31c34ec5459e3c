# Two commands do everything on a fresh machine (both idempotent):
#   make demo   set up .venv, get MNIST, train examples/mnist.net, export, predict
#   make test   set up .venv, get the data sets, run ruff, mypy and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv data lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel on disk; an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

data: venv
	$(BIN)/python scripts/get_data.py

demo: venv data
	$(BIN)/netspec check examples/mnist.net
	$(BIN)/netspec summary examples/mnist.net
	$(BIN)/netspec train examples/mnist.net
	$(BIN)/netspec export examples/mnist.net -o runs/mnist_cnn/mnist.onnx
	$(BIN)/netspec predict runs/mnist_cnn/mnist.onnx examples/digits/*.png

lint: venv
	$(BIN)/ruff check netspec tests benchmarks scripts
	$(BIN)/mypy netspec

test: venv data lint
	# two workers (pytest-xdist): the suite keeps within 15 minutes on 2 cores; work-stealing evens out the slow tests
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

bench: venv data
	$(BIN)/python benchmarks/check_speed.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/images.py
	$(BIN)/python benchmarks/augment_cost.py
	$(BIN)/python benchmarks/text_baseline.py
	$(BIN)/python benchmarks/lsp_hover.py
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
		&& $(BIN)/python benchmarks/gpu.py || echo "benchmarks/gpu.py: no CUDA device here, skipped"

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis

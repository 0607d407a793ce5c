# Quick start: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,viz,onnx,io16
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints/cpu.txt -e ".[$(EXTRAS)]"
	@$(BIN)/python -c "import importlib.util as u, sys; sys.exit('torchvision must not be installed (breaks the CPU torch)') if u.find_spec('torchvision') else None"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/interir demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/model_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info

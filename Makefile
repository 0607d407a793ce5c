# Quick start: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,viz,onnx,io16,app,e2e
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-quick bench clean browser

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints/cpu.txt -e ".[$(EXTRAS)]"
	@$(BIN)/python -c "import importlib.util as u, sys; sys.exit('torchvision must not be installed (breaks the CPU torch)') if u.find_spec('torchvision') else None"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/interir demo

# The browser test of the web page needs Debian's chromium and chromium-driver; installed here when
# missing and we are root with apt-get, else that one test is skipped with the reason.
browser:
	@if command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver >/dev/null) \
	  || echo "warning: chromium could not be installed; the browser test will be skipped"; \
	else echo "note: no chromedriver; the browser test will be skipped"; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2

# The suite without the tests marked `slow` (ONNX export, multi-process runs): a quick check.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/model_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info

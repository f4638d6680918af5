# fescontrol — every target installs what it needs into .venv first.
# NOT A CLEARED MEDICAL DEVICE: use on a person only under clinical supervision.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := fescontrol/kernel/core$(shell $(PYTHON) -c "import sysconfig;print(sysconfig.get_config_var('EXT_SUFFIX'))")
PYTEST_ARGS ?=

.PHONY: install browser avr firmware build test test-fast demo bench lint diagram clean help

help:
	@echo "make install  venv + editable install + Cython build"
	@echo "make demo     simulated walk on bundled real gait data with the default profile"
	@echo "make test     full test suite (both kernels, real pseudo-terminals)"
	@echo "make firmware build the sensor unit firmware (firmware/, docs/firmware.md)"
	@echo "make bench    throughput and real-time latency benchmarks -> bench/results.json"
	@echo "make lint     ruff + import-linter layers (.importlinter)"

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "cython>=3.0" "setuptools>=64" wheel
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test,build]"
	touch $(STAMP)

$(KERNEL): fescontrol/kernel/core.py fescontrol/kernel/core.pxd fescontrol/kernel/_fdio.pxd $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace

install: $(STAMP) $(KERNEL)

build: $(KERNEL)

# the live-view browser test needs chromium (apt) and playwright (pip); when they cannot be
# installed (no root) the test skips and says why
browser: install
	-.ci/install-browser $(BIN)/python

# the firmware build test needs Debian's gcc-avr/avr-libc; when they cannot be installed
# (no apt-get or no root) the test skips and says why
avr:
	-.ci/install-avr

firmware: avr
	$(MAKE) -C firmware

test: install browser avr
	FES_REQUIRE_COMPILED=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install
	FES_REQUIRE_COMPILED=1 $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: install
	$(BIN)/fes sim --recording physionet:GaCo01 --plot out/demo.png --json out/demo.json

bench: install
	FES_REQUIRE_COMPILED=1 $(BIN)/python bench/run.py

# lint-imports reads the installed layout (fescontrol.sim is the repo's sim/, mapped by setup.py),
# which grimp cannot follow through the editable finder: build_py lays it out in build/lint
lint: install
	$(BIN)/python -m pip install -q "ruff>=0.4" "import-linter>=2.1"
	$(BIN)/ruff check fescontrol drivers sim tests bench
	rm -rf build/lint
	FES_PURE_PYTHON=1 $(BIN)/python setup.py -q build_py --build-lib build/lint/lib
	cd build/lint && PYTHONPATH=lib $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/.importlinter

diagram: install
	$(BIN)/fes diagram docs/gait-machine.png

clean:
	rm -rf build *.egg-info fescontrol/kernel/core.c fescontrol/kernel/*.so .pytest_cache .hypothesis

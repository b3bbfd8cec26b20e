# One-command set-up, tests, demo and benchmarks. Everything installs from this repo's files.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
WS_STAMP := ros2_ws/install/.build-stamp
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup test lint demo bench clean ws

setup: $(STAMP) $(WS_STAMP)

$(STAMP): requirements.txt setup.py package.xml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: the pinned CPU build; anything unpinned would pull CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The custom interface package (mtml_interfaces) built with colcon from the PyPI wheels.
$(WS_STAMP): $(STAMP) $(shell find ros2_ws/src -name '*.msg' -o -name '*.srv' -o -name 'CMakeLists.txt' -o -name 'package.xml' 2>/dev/null)
	$(BIN)/python scripts/build_ws.py
	touch $@

ws: $(WS_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m mtml.demo

bench: setup
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done
	echo "== bench/meta_step.py --heap system"; $(BIN)/python bench/meta_step.py --heap system

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log

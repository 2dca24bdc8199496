# The two commands a new user needs: `make demo` and `make test`. Both create .venv with the pinned
# stack (constraints.txt) the first time, so a fresh machine needs only Python 3.11 and the package
# registry.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: demo test venv constraints clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "marn-tf needs Python 3.11, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
	@touch $@

# The main job on the embedded data: generate it, run the Beam job, train MARN briefly, evaluate it,
# export it for TF Serving and check the export in a fresh process.
# A demo re-run starts afresh (the run and export directories are removed first).
demo: venv
	$(BIN)/marn generate-data --output $(DEMO_DIR)/raw
	$(BIN)/marn preprocess --config $(DEMO_DIR)/raw/config.yaml --output $(DEMO_DIR)/preprocessed --overwrite
	rm -rf $(DEMO_DIR)/marn $(DEMO_DIR)/export
	$(BIN)/marn train --config $(DEMO_DIR)/raw/config.yaml --data $(DEMO_DIR)/preprocessed --output $(DEMO_DIR)/marn \
		--set train.steps_per_epoch=50 --set train.epochs=3
	$(BIN)/marn evaluate --run $(DEMO_DIR)/marn --data $(DEMO_DIR)/preprocessed
	$(BIN)/marn export --run $(DEMO_DIR)/marn --data $(DEMO_DIR)/preprocessed --output $(DEMO_DIR)/export
	$(BIN)/marn check-export --model $(DEMO_DIR)/export/marn/1 --quiet

test: venv
	$(BIN)/python -m pytest -q

# Re-resolve the pinned set after changing a pin in setup.py (needs the package registry).
constraints:
	rm -rf /tmp/marn-constraints-venv
	$(PYTHON) -m venv /tmp/marn-constraints-venv
	/tmp/marn-constraints-venv/bin/pip install --quiet '.[test,bench]'
	{ sed -n '1,3p' constraints.txt; /tmp/marn-constraints-venv/bin/pip freeze --exclude-editable | grep -v '^marn-tf'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

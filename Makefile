# The two commands a new user needs: `make demo` and `make test`. Both create .venv with the pinned
# stack (constraints.txt) the first time, so a fresh machine needs only Python 3.11 or 3.12 and the package
# registry.
# The first of these interpreters that runs (a version manager's shim may exist and fail): 3.11, on which
# constraints.txt was resolved, then 3.12. PYTHON=... picks another.
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12 python3,$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
PYTHON := $(PYTHON)
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: demo test venv browser constraints clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "marn-tf needs python3.11 or python3.12: install one, or set PYTHON=..."; exit 1; }
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "marn-tf needs Python 3.11 or 3.12, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
	@touch $@

# The main job on the embedded data (`marn demo`): generate it, run the Beam job, train MARN and the ablation
# ladder, evaluate, export for TF Serving, check the export in a fresh process, print the summary and write
# $(DEMO_DIR)/report.html. Re-running skips every stage that is already done.
demo: venv
	$(BIN)/marn demo --output $(DEMO_DIR)

test: venv browser
	$(BIN)/python -m pytest -q --durations=20

# The results-report test renders the page in headless Chromium: Debian's package, installed once.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		echo "installing Debian's chromium for the report test"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Re-resolve the pinned set after changing a range in setup.py (needs the package registry). Eager upgrades and
# `freeze --all` so that setuptools, which the venv brings, is resolved and recorded like any other requirement.
constraints:
	rm -rf /tmp/marn-constraints-venv
	$(PYTHON) -m venv /tmp/marn-constraints-venv
	/tmp/marn-constraints-venv/bin/pip install --quiet --upgrade --upgrade-strategy eager '.[test,bench]'
	{ sed -n '1,3p' constraints.txt; /tmp/marn-constraints-venv/bin/pip freeze --all --exclude-editable \
		| grep -v -e '^marn-tf' -e '^pip=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

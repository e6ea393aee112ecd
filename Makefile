# The course's commands. `make run-all` and `make test` set everything up on a fresh machine.
# Variables: PROFILE=auto|full|cpu|smoke  DATASET=name[,name]  ONLY=02,03  FORCE=1  STRICT=1  JOBS=n
#            TASK=covid-vs-normal|covid-vs-pneumonia|three-class[,task] (default covid-vs-normal)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COLAB_VENV := .venv-colab
GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(GPU)

# Keep every cache and config inside the project: runs leave nothing in the home folder.
export COURSE_DATA_DIR ?= $(CURDIR)/data/cache
export COURSE_OUTPUT_DIR ?= $(CURDIR)/outputs
export KERAS_HOME ?= $(COURSE_DATA_DIR)/keras
export KAGGLEHUB_CACHE ?= $(COURSE_DATA_DIR)/kagglehub
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export JUPYTER_CONFIG_DIR ?= $(CURDIR)/.cache/jupyter/config
export JUPYTER_DATA_DIR ?= $(CURDIR)/.cache/jupyter/data
export JUPYTER_RUNTIME_DIR ?= $(CURDIR)/.cache/jupyter/runtime
export IPYTHONDIR ?= $(CURDIR)/.cache/ipython
export PIP_CACHE_DIR ?= $(CURDIR)/.cache/pip
export UV_CACHE_DIR ?= $(CURDIR)/.cache/uv
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1
$(shell mkdir -p $(MPLCONFIGDIR) $(IPYTHONDIR) $(JUPYTER_RUNTIME_DIR))

RUN_ARGS := $(if $(PROFILE),--profile $(PROFILE)) $(if $(DATASET),--dataset $(DATASET)) $(if $(TASK),--task $(TASK)) \
	$(if $(ONLY),--only $(ONLY)) $(if $(FORCE),--force) $(if $(STRICT),--strict) $(if $(JOBS),--jobs $(JOBS))

.PHONY: help setup run-all smoke test test-fast browser test-colab lint notebooks report bench demo lock \
	colab-constraints timings release clean clean-cache

help:
	@echo "make run-all    run the whole course (GPU: full profile; CPU: about 30 min) and build the report"
	@echo "                TASK=covid-vs-pneumonia or TASK=three-class (or a comma-separated list): other classes"
	@echo "make test       the test suite, including a SMOKE run of every notebook"
	@echo "make smoke      every notebook with tiny settings, offline, X-ray and CT"
	@echo "make test-fast  the tests that need neither TensorFlow nor papermill (under a minute)"
	@echo "make demo       the upload demo as a web page (Voila on 127.0.0.1; MODEL=outputs/<dataset>/<model> PORT=n)"
	@echo "make setup | test-colab | lint | notebooks | timings | report | bench | clean | clean-cache"
	@echo "make release VERSION=x.y.z   bump, rebuild, check, commit and tag locally (never pushes)"

setup: $(STAMP)

# The CPU wheels on machines without an NVIDIA GPU (2.1 GB instead of 3.3 GB, no CUDA noise), CUDA ones with.
# uv installs the same pinned set as pip would, several times faster (parallel downloads); pip stays in the venv.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, every import would compile TensorFlow anew.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt uv
	$(VENV)/bin/uv pip install --python $(PY) --quiet --compile-bytecode -c requirements/constraints.txt \
		-e ".[$(GPU),run,lab,dev,demo]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
	rm -f $(VENV)/.installed-*
	touch $@

run-all: $(STAMP)
	$(PY) -m helpers run-all $(RUN_ARGS)

smoke: $(STAMP)
	$(PY) -m helpers run-all $(RUN_ARGS) --profile smoke --no-report

# Two pytest workers: the SMOKE series (the default task's and the other tasks', two files started first, one
# per worker; tests/conftest.py puts them first, and --no-loadscope-reorder keeps that order) before the rest.
TEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder

test: $(STAMP) browser
	$(PY) -m pytest $(TEST_ARGS) -m "not colab and not tasks"

# Every test that needs neither TensorFlow nor papermill (tests/conftest.py marks them from their imports).
test-fast: $(STAMP)
	$(PY) -m pytest $(TEST_ARGS) --fast

# Debian's Chromium for tests/app/test_browser.py (Playwright's own browser download is not used). Installed when
# missing and we are root with apt-get; otherwise the browser tests are skipped and say why.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		echo "installing chromium for the browser tests (apt-get) ..." && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
		>/dev/null; } || echo "Chromium not installed (needs root and apt-get): the browser tests will be skipped"

# A second environment with the versions Colab's GPU runtime ships (requirements/colab.txt), on Colab's
# Python (3.13) where this machine has one (python3.13 or pyenv's), else on $(PYTHON).
COLAB_PYTHON ?= $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13),\
	$(shell $(p) -c "" 2>/dev/null && echo $(p))) $(PYTHON))

$(COLAB_VENV)/.installed: pyproject.toml requirements/colab.txt
	$(COLAB_PYTHON) -m venv --clear $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet -c requirements/constraints.txt uv
	$(COLAB_VENV)/bin/uv pip install --python $(COLAB_VENV)/bin/python --quiet --compile-bytecode -c requirements/colab.txt \
		-e ".[cpu,run,dev]"
	touch $@

# The wheels the notebooks' setup cell installs in Colab, and the setuptools pip builds the course package
# with, so that tests/notebooks/test_colab_setup.py runs that cell offline.
WHEELHOUSE := .cache/wheelhouse
$(WHEELHOUSE)/.downloaded: pyproject.toml tools/build_notebooks.py | $(COLAB_VENV)/.installed
	$(COLAB_VENV)/bin/python -c "import subprocess, sys, tomllib; from tools.build_notebooks import COLAB_ONLY; \
		build = tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']; \
		subprocess.run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--dest', '$(WHEELHOUSE)', \
		*build, *COLAB_ONLY], check=True)"
	touch $@

# In Colab's versions (a clean venv): the tests marked `colab` (the setup cell, notebooks alone), the SMOKE series
# of the other tasks (`tasks`), the other notebook runs, and every test that needs no TensorFlow (pandas, scikit-learn
# and numpy as Colab has them). The default task's series (`smoke`) and the TensorFlow unit tests run in `make test`;
# every notebook runs in both. The split keeps CI under 15 minutes: no series runs twice.
COLAB_MARKS ?= colab or tasks or (notebooks and not smoke) or not (slow or tensorflow or smoke)
test-colab: $(COLAB_VENV)/.installed $(WHEELHOUSE)/.downloaded
	$(COLAB_VENV)/bin/python -m pytest $(TEST_ARGS) -m "$(COLAB_MARKS)"

lint: $(STAMP)
	$(PY) -m ruff check helpers tests tools benchmarks
	$(PY) tools/build_notebooks.py --check

notebooks: $(STAMP)
	$(PY) tools/build_notebooks.py

report: $(STAMP)
	$(PY) -m helpers report

bench: $(STAMP)
	$(PY) -m benchmarks

# Notebook 06 as a standalone page (helpers/app/serve.py: websocket above the upload limit, idle kernels culled).
demo: $(STAMP)
	$(PY) -m helpers.app.serve $(if $(MODEL),--model $(MODEL)) $(if $(PORT),--port $(PORT))

lock: $(STAMP)
	(echo "# Exact versions that \`make setup\` installs (pip constraints). Regenerate with \`make lock\`."; \
	 echo "# tensorflow/xgboost are listed for GPU machines next to their -cpu twins."; \
	 $(PY) -m pip freeze --exclude-editable | grep -v '^covid-course'; \
	 $(PY) -c "import importlib.metadata as m; print('tensorflow==' + m.version('tensorflow-cpu')); print('xgboost==' + m.version('xgboost-cpu'))") \
	 > requirements/constraints.txt

colab-constraints: $(STAMP)
	$(PY) tools/colab_constraints.py

# The run-time lines at the top of the notebooks, from the times of the last `make run-all` or `make smoke`.
timings: $(STAMP)
	$(PY) tools/build_notebooks.py --timings $(COURSE_OUTPUT_DIR)/notebooks/timings.json

# make release VERSION=x.y.z: version, notebooks and README badges, the checks, a commit, the local tag vx.y.z.
# It never pushes (tools/release.py says how to publish).
release: $(STAMP)
	$(PY) tools/release.py "$(VERSION)"

clean:
	rm -rf outputs .pytest_cache .ruff_cache .cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-cache:
	rm -rf data/cache

# make setup:    the core: .venv with requirements.txt (and, as root with apt and no data found, Fashion-MNIST)
# make lint:     ruff check and ruff format --check (ruff.toml)
# make test:     lint, then the core suite (models, training, evaluation, notebooks, explorer)
# make lab:      setup + the experiment lab's packages (lab/requirements.txt) and, as root with apt, PostgreSQL and
#                Chromium for the full suite's tests
# make test-all: the full suite, core + lab (what CI runs)
# make run:      the three notebooks in full, refreshing their outputs, img/ and the explorer pages in docs/explorer/
# make jupyter:  JupyterLab on a notebook (NOTEBOOK=..., default the FC one) with autosave off, as root too
# TORCH_INDEX=URL: also look for torch there, e.g. PyTorch's CPU-only wheel index (see README)
PYTHON := .venv/bin/python
DATA_FILES := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
TORCH_INDEX ?=
PIP_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
ROOT_APT = [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null

.PHONY: setup lab lint test test-all run notebooks jupyter
setup: .venv/done
.venv/done: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --quiet $(PIP_INDEX) -r requirements.txt
	@if [ -z "$$FASHION_MNIST_DIR" ] && ! ls data/*ubyte* data/FashionMNIST/raw/*ubyte* >/dev/null 2>&1 \
	    && [ ! -f $(DATA_FILES) ] && $(ROOT_APT); then \
	    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; fi
	touch .venv/done

lab: .venv/lab-done
.venv/lab-done: .venv/done lab/requirements.txt
	.venv/bin/pip install --quiet -r lab/requirements.txt
	@if ! { ls /usr/lib/postgresql/*/bin/initdb && command -v chromium; } >/dev/null 2>&1 && $(ROOT_APT); then \
	    echo "installing PostgreSQL and Chromium (Debian packages postgresql, chromium: the full suite's tests)"; \
	    (apt-get update -qq && apt-get install -y -qq postgresql chromium) >/dev/null; fi
	touch .venv/lab-done

# one pytest worker per core (pytest-xdist), each with one torch thread: two 2-thread processes on 2 cores
# would oversubscribe them
test: setup lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -rs -n auto tests

test-all: lab lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -rs -n auto tests lab/tests

# ruff (ruff.toml): the lint rules and the one formatting of every .py file
lint: setup
	$(PYTHON) -m ruff check --quiet .
	$(PYTHON) -m ruff format --check --quiet .

run: notebooks

# the notebooks, full default settings, executed in place: refreshes their outputs and (save_figures) img/; then
# drops papermill's injected cell and the widget state, so that Run All in Jupyter runs the parameters cell as is
NOTEBOOKS := Fully_Connected_VAE.ipynb CNN_VAE.ipynb Disentangling_VAE.ipynb
notebooks: setup
	for nb in $(NOTEBOOKS); do $(PYTHON) -m papermill -k python3 -p save_figures True -p progress False $$nb $$nb || exit 1; done
	# the explorer as one self-contained web page per notebook run (docs/notebooks.md#the-explorer-as-a-web-page)
	$(PYTHON) explorer.py runs/notebook-fc --html docs/explorer/fc.html
	$(PYTHON) explorer.py runs/notebook-cnn --html docs/explorer/cnn.html
	$(PYTHON) explorer.py runs/notebook-shapes --html docs/explorer/shapes.html
	$(PYTHON) scripts/strip_notebooks.py $(NOTEBOOKS)

# JupyterLab from the venv, its default settings overridden by jupyterlab-settings/overrides.json (autosave off: a
# notebook on disk changes only when you save it); --allow-root when run as root. JUPYTER_ARGS: more options, e.g.
# "--no-browser --port 8890"; JUPYTER_SETTINGS: another settings folder (scripts/jupyter_autosave_check.py uses one)
NOTEBOOK ?= Fully_Connected_VAE.ipynb
JUPYTER_SETTINGS ?= $(CURDIR)/jupyterlab-settings
JUPYTER_ARGS ?=
AS_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)
jupyter: setup
	$(PYTHON) -m jupyterlab --LabApp.app_settings_dir="$(JUPYTER_SETTINGS)" $(AS_ROOT) $(JUPYTER_ARGS) "$(NOTEBOOK)"

# make setup: .venv with requirements.txt (and, as root with apt: Fashion-MNIST, and PostgreSQL for the sweep test)
# make test:  the test suite     make run: both notebooks in full, refreshing their outputs and img/
PYTHON := .venv/bin/python
DATA_FILES := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup test run notebooks
setup: .venv/done
.venv/done: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --quiet -r requirements.txt
	@if [ -z "$$FASHION_MNIST_DIR" ] && ! ls data/*ubyte* data/FashionMNIST/raw/*ubyte* >/dev/null 2>&1 \
	    && [ ! -f $(DATA_FILES) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing PostgreSQL (Debian package postgresql, for the several-machines sweep test)"; \
	    (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null || echo "PostgreSQL not installed: its test will be skipped"; fi
	touch .venv/done

# one pytest worker per core (pytest-xdist), each with one torch thread: two 2-thread processes on 2 cores
# would oversubscribe them
test: setup
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -rs -n auto tests

run: notebooks

# both notebooks, full default settings, executed in place: refreshes their outputs and (save_figures) img/
NOTEBOOKS := Fully_Connected_VAE.ipynb CNN_VAE.ipynb
notebooks: setup
	for nb in $(NOTEBOOKS); do $(PYTHON) -m papermill -k python3 -p save_figures True -p progress False $$nb $$nb || exit 1; done
	# drop the saved widget state (the explorer's plotly.js bundle, ~5 MB): widgets need a live kernel anyway
	$(PYTHON) -c "import sys, nbformat; [nbformat.write(nb, f) for f in sys.argv[1:] if (nb := nbformat.read(f, 4)).metadata.pop('widgets', 1)]" $(NOTEBOOKS)

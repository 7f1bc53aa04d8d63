# nst: neural style transfer lessons. `make help` lists the targets.
# GNU make. Everything runs inside the virtual environment $(VENV), which `make install` creates.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-x -k vgg"
PYTEST_ARGS ?=
# Which notebooks `make notebooks` executes (default: all of them, in order);
# STALE=1: only those whose record (metadata nst.executed_from) no longer matches the code.
NOTEBOOKS ?=
STALE ?=
# `make train`: which painting, an optional folder of more photos, extra flags for tools.train.
STYLE ?=
PHOTOS ?=
TRAIN_ARGS ?=
# `make grade`: which assignment, the folder of submitted notebooks, where grades.csv goes.
A ?= A1
SUBMISSIONS ?= submissions/$(A)
OUT ?= grades/$(A)
# Extra arguments for python -m tools.grade, e.g. make grade GRADE_ARGS="--jobs 2 --timeout 120"
GRADE_ARGS ?=
# Jupyter refuses to run as root unless told to (containers, Colab-like VMs).
ROOT_FLAG = $(if $(filter 0,$(shell id -u)),--allow-root,)

.DEFAULT_GOAL := help
.PHONY: help install lab test lint notebooks colab release grade grade-corpus bench heroes train bench-fast bench-grading \
	student-repo instructor-kit clean distclean

help:
	@echo "make install    create $(VENV) and install requirements.txt and the nst package"
	@echo "make lab        open the lessons in JupyterLab"
	@echo "make test       run the tests and re-execute every notebook (nbval)"
	@echo "make lint       ruff check and ruff format --check on nst/, tests/ and tools/"
	@echo "make notebooks  execute every notebook in place, time it, update README's table"
	@echo "                (only some: make notebooks NOTEBOOKS=notebooks/01_....ipynb;"
	@echo "                only those out of date with the code: make notebooks STALE=1)"
	@echo "make colab      re-stamp the Open-in-Colab badge and setup cell in every notebook"
	@echo "make release    generate the student notebooks assignments/release/<A>/ from the sources"
	@echo "make grade      grade a folder of submitted notebooks, each in a sandbox (bubblewrap):"
	@echo "                make grade A=A1 SUBMISSIONS=path/to/folder OUT=grades/A1"
	@echo "                (writes OUT/grades.csv and OUT/feedback/<student>.html)"
	@echo "make grade-corpus  grade crafted honest and hostile submissions of A1-A4, check each score"
	@echo "make student-repo DEST=dir    the tree students clone: no solutions, no hidden tests"
	@echo "make instructor-kit DEST=dir  the assignments' sources and hidden tests, for a private repo"
	@echo "make bench      python -m tools.bench: classic recipe vs nst.stylize at 512 px (15-25 min on"
	@echo "                2 CPU cores); writes data/bench/ (bench.csv, summary, figure, images)"
	@echo "make heroes     the README's opening images: nst.stylize at 512 px on bundled pairs"
	@echo "                (~10 min on 2 CPU cores); writes docs/heroes/ (an image and a JSON each)"
	@echo "make train STYLE=starry_night  train lesson 09's fast network for a bundled painting"
	@echo "                (~25 min on 2 CPU cores; PHOTOS=dir adds photos); writes data/fast/"
	@echo "make bench-fast the fast networks' speed and quality on photos they never saw (~5 min)"
	@echo "make bench-grading  grade 30 generated A1 submissions (correct and broken), print the times"
	@echo "make clean      remove caches and build files (keeps $(VENV))"
	@echo "make distclean  clean, and remove $(VENV) too"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install -e . --no-deps
	touch $@

lab: install
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

test: install
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check nst tests tools
	$(BIN)/ruff format --check nst tests tools

notebooks: install
	$(BIN)/python -m tools.run_notebooks $(if $(STALE),--stale) $(NOTEBOOKS)

colab: install
	$(BIN)/python -m tools.colab_cells

release: install
	$(BIN)/python -m tools.make_assignments

grade: install
	$(BIN)/python -m tools.grade $(A) $(SUBMISSIONS) --out $(OUT) $(GRADE_ARGS)

# Not part of `make test`: about 16 minutes on 2 CPU cores (the tiny corpus in `make test` covers every attack).
grade-corpus: install
	NST_GRADE_CORPUS=1 $(BIN)/python -m pytest tests/test_grading.py tests/test_capstone.py \
		-k "real_assignment_corpus or capstone_corpus" -p no:cacheprovider

student-repo instructor-kit: install
	@test -n "$(DEST)" || { echo "usage: make $@ DEST=path/to/new/folder"; exit 1; }
	$(BIN)/python -m tools.course_kit $@ $(DEST)

# Not part of `make test`: 15-25 minutes on 2 CPU cores. Lesson 06, the README and docs/speed.md use its output.
bench: install
	$(BIN)/python -m tools.bench --out data/bench

# Not part of `make test`: about 10 minutes on 2 CPU cores. The README shows its images.
heroes: install
	$(BIN)/python -m tools.heroes

# Not part of `make test`: about 25 minutes per painting on 2 CPU cores (make train STYLE=great_wave).
# Writes data/fast/<painting>.pt, .json and .log.csv; TRAIN_ARGS adds flags, e.g. "--steps 3000".
train: install
	@test -n "$(STYLE)" || { echo "usage: make train STYLE=<painting> [PHOTOS=dir]"; exit 1; }
	$(BIN)/python -m tools.train --style $(STYLE) $(if $(PHOTOS),--photos $(PHOTOS)) $(TRAIN_ARGS)

# Not part of `make test`: about 5 minutes on 2 CPU cores. Lesson 09 and the README use its output.
bench-fast: install
	$(BIN)/python -m tools.bench_fast

# Not part of `make test`: the bench test skips unless NST_BENCH=1.
bench-grading: install
	NST_BENCH=1 $(BIN)/python -m pytest tests/test_grading.py -k bench -s -p no:cacheprovider

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	find nst tests tools notebooks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
	find notebooks -name .ipynb_checkpoints -type d -prune -exec rm -rf {} + 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)

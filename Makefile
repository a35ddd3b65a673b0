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
PORT        ?= 6006
LOGDIR      ?= ckt_logs

.PHONY: help setup test test-slow test-all data text-encoder train-stage1 train-stage2 \
        tensorboard preprocess-birds preprocess-flowers dry-run clean

help:
	@echo "make setup              create $(VENV) and install the package with its test tools"
	@echo "make test               set up, then run the fast test suite (what CI runs)"
	@echo "make test-slow          the slow checks (full-width networks, longer runs)"
	@echo "make train-stage1       set up, make the shapes data and text encoder if missing, train Stage-I"
	@echo "                        (DATASET=birds|flowers|shapes, CFG=..., ARGS='--set KEY=VALUE ...')"
	@echo "make train-stage2       train Stage-II on the newest Stage-I checkpoint of DATASET (CFG2=...)"
	@echo "make dry-run            build the Stage-I networks of CFG and print their parameter counts"
	@echo "make data               generate the shapes dataset into Data/shapes"
	@echo "make text-encoder       train the char-CNN-RNN text encoder on DATASET and write its embeddings"
	@echo "make preprocess-birds   crop and resize CUB-200-2011 into the 76/304 image pickles"
	@echo "make preprocess-flowers resize Oxford-102 into the 76/304 image pickles"
	@echo "make tensorboard        serve $(LOGDIR) on http://127.0.0.1:$(PORT)"

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
	$(PY) -m misc.shapes --out Data/shapes

data: Data/shapes/shapes_manifest.json

$(ENCODER)/DONE: | $(STAMP)
	$(PY) -m misc.text_encoder train --data_dir $(DATA_DIR) --out $(ENCODER)

ifeq ($(DATASET),shapes)
$(ENCODER)/DONE: Data/shapes/shapes_manifest.json
endif

text-encoder: $(ENCODER)/DONE

ifeq ($(DATASET),shapes)
train-stage1: data text-encoder
endif
train-stage1: $(STAMP)
	$(PY) stageI/run_exp.py --cfg $(CFG) $(ARGS)

# Stage-II finds the newest Stage-I checkpoint of the dataset by itself (TRAIN.PRETRAINED_MODEL '').
train-stage2: $(STAMP)
	$(PY) stageII/run_exp.py --cfg $(CFG2) $(ARGS)

dry-run: $(STAMP)
	$(PY) stageI/run_exp.py --cfg $(CFG) --dry-run

preprocess-birds: $(STAMP)
	$(PY) misc/preprocess_birds.py --data_dir Data/birds

preprocess-flowers: $(STAMP)
	$(PY) misc/preprocess_flowers.py --data_dir Data/flowers

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf build *.egg-info .pytest_cache
	find . -name __pycache__ -prune -not -path "./$(VENV)/*" -exec rm -rf {} +

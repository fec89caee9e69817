#!/usr/bin/env bash
# Run scaling on this machine's NVIDIA GPU(s): a virtual environment with the `cuda` extra, then
# the command. All local GPUs form one data-parallel mesh (one process).
#
#   launch/gpu.sh --cmd "sweep --config configs/ladder_gpu.py" [--venv .venv-gpu] [--gpus 0,1]
#                 [--dry-run]
set -euo pipefail

cmd="" venv=".venv-gpu" gpus="" dry=0
usage() { sed -n '2,6p' "$0"; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cmd) cmd="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
[[ -n "$cmd" ]] || usage
root="$(cd "$(dirname "$0")/.." && pwd)"

# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

[[ -d "$venv" ]] || run python3 -m venv "$venv"
run "$venv/bin/pip" install -q -e "${root}[cuda]"
env_vars=(XLA_PYTHON_CLIENT_MEM_FRACTION=0.9)
[[ -n "$gpus" ]] && env_vars+=("CUDA_VISIBLE_DEVICES=$gpus")
# shellcheck disable=SC2086  # the command is a list of words by design
run env "${env_vars[@]}" "$venv/bin/scaling" $cmd

#!/usr/bin/env bash
# Run a scaling sweep or training run on a Cloud TPU VM (single host or pod slice), then copy the
# results back and delete the VM.
#
#   launch/tpu_vm.sh --name my-ladder --zone us-central2-b --type v4-32 \
#       --cmd "sweep --config configs/ladder_tpu.py" [--queued] [--spot] [--keep] [--dry-run]
#
# Every worker of the slice installs the package with the `tpu` extra and runs the same command
# (--worker=all); JAX finds the other hosts by itself (jax.distributed auto-detection on TPU VMs).
set -euo pipefail

name="" zone="" accel="" cmd="" version="tpu-ubuntu2204-base" repo="" ref="main"
queued=0 spot=0 keep=0 dry=0 results="runs"
usage() { sed -n '2,10p' "$0"; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --type) accel="$2"; shift 2 ;;
    --cmd) cmd="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    --queued) queued=1; shift ;;
    --spot) spot=1; shift ;;
    --keep) keep=1; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
[[ -n "$name" && -n "$zone" && -n "$accel" && -n "$cmd" ]] || usage
repo="${repo:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo https://github.com/OWNER/scaling.git)}"

# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

spot_flag=()
[[ "$spot" == 1 ]] && spot_flag=(--spot)
if [[ "$queued" == 1 ]]; then
  run gcloud compute tpus queued-resources create "$name" --node-id="$name" --zone="$zone" \
    --accelerator-type="$accel" --runtime-version="$version" "${spot_flag[@]}"
  run gcloud compute tpus queued-resources describe "$name" --zone="$zone"
else
  run gcloud compute tpus tpu-vm create "$name" --zone="$zone" \
    --accelerator-type="$accel" --version="$version" "${spot_flag[@]}"
fi

# Expanded on each worker, not here: $HOME is the worker's.
setup="set -e; python3 -m venv \$HOME/venv; rm -rf \$HOME/scaling; git clone --depth 1 --branch $ref $repo \$HOME/scaling; \$HOME/venv/bin/pip install -q -e \"\$HOME/scaling[tpu]\""
run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$setup"
run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all \
  --command="cd \$HOME/scaling && SCALING_DISTRIBUTED=1 \$HOME/venv/bin/scaling $cmd"
run mkdir -p "$results"
run gcloud compute tpus tpu-vm scp --recurse "$name:~/scaling/runs/*" "$results/" \
  --zone="$zone" --worker=0
if [[ "$keep" == 0 ]]; then
  if [[ "$queued" == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$name" --zone="$zone" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
  fi
fi

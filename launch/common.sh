#!/usr/bin/env bash
# Shared by the launch scripts: `run CMD …` runs a command, or with dry=1 prints it (quoted).
run() {
  if [[ "${dry:-0}" == 1 ]]; then
    printf '%q ' "$@"; printf '\n'
  else
    "$@"
  fi
}

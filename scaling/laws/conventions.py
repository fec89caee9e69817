"""FLOP conventions of a sweep: which FLOPs-per-token count sets the budgets, and which
parameter count N goes with it (scaling/model/transformer.py computes every count; SCIENCE.md,
FLOPs)."""

from __future__ import annotations

from scaling.errors import UserError

CONVENTIONS = {"palm": "palm_train", "kaplan": "kaplan_train", "chinchilla": "chinchilla_train"}
N_KEY = {"palm": "n_kaplan", "kaplan": "n_kaplan", "chinchilla": "n_total"}  # N of each count
HELDOUT = "heldout"      # the held-out budget's runs live in <sweep>/heldout/


def convention_key(name: str) -> str:
  if name not in CONVENTIONS:
    raise UserError(f"sweep.flop_convention must be one of {', '.join(CONVENTIONS)}, got {name!r}")
  return CONVENTIONS[name]

"""CSVs of runs, as users have them: the one reader of a CSV given to `scaling fit`.

Column names are recognised widely (case, spaces, dashes and units in brackets ignored); every
other column is listed as ignored; a column that splits the rows into several experiments is
refused by name. The file is read whole: its encoding, separator (`,` `;` tab `|`), decimal
commas, duplicate or ambiguous columns and ragged rows are each named in a one-line error.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling import files
from scaling.errors import UserError

# Names accepted for each quantity, after normalising (lower case, units in brackets dropped,
# spaces and dashes as underscores).
ALIASES = {
    "run": ("run", "name", "run_name", "id", "run_id"),
    "N": ("n", "params", "parameters", "n_params", "num_params", "nparams", "param_count",
          "model_size", "n_parameters", "model_params"),
    "D": ("d", "tokens", "data", "n_tokens", "num_tokens", "train_tokens", "training_tokens",
          "dataset_size", "d_tokens"),
    "C": ("c", "flops", "flop", "compute", "budget", "compute_budget", "c_flops", "flop_budget",
          "training_flops", "training_flop", "train_flop", "train_flops", "total_flops",
          "total_flop", "compute_flops"),
    "loss": ("loss", "l", "final_loss", "eval_loss", "val_loss", "validation_loss", "test_loss"),
    "S": ("s", "steps", "train_steps"),
    "B": ("b", "batch", "batch_tokens", "batch_size_tokens"),
}
# Columns that name an experiment: several values among the rows = several fits pooled.
GROUPING = ("experiment", "dataset", "model", "group", "sweep", "family", "setting", "series",
            "source", "paper", "arch", "architecture", "corpus")

_SEPARATORS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+([eE][-+]?\d+)?\s*$")


@dataclass
class CsvTable:
  columns: dict                       # quantity → np.ndarray (run: str array)
  used: dict                          # quantity → the header it was read from
  ignored: list = field(default_factory=list)
  notes: list = field(default_factory=list)


# Units in a header's brackets: a scale applied to the column ("Params (M)" → × 1e6), or none.
_SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "millions": 1e6, "b": 1e9,
           "g": 1e9, "billion": 1e9, "billions": 1e9, "t": 1e12, "trillion": 1e12,
           "pf_days": 8.64e19, "pf_day": 8.64e19, "petaflop_days": 8.64e19}
_PLAIN_UNITS = ("nats", "nat", "nats_per_token", "flop", "flops", "tokens", "params",
                "parameters", "count", "")


def normalise(name: str) -> str:
  """A header as matched against ALIASES: bracketed units dropped, lower case, underscores."""
  name = re.sub(r"[\(\[].*?[\)\]]", "", name)        # "loss (nats)" → "loss"
  return re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")


def unit_scale(path: Path, header: str) -> float:
  """The factor a bracketed unit asks for (1 when none); an unknown unit is refused."""
  found = re.search(r"[\(\[](.*?)[\)\]]", header)
  if not found:
    return 1.0
  unit = re.sub(r"[\s\-]+", "_", found.group(1).strip().lower())
  if unit in _PLAIN_UNITS:
    return 1.0
  if unit in _SCALES:
    return _SCALES[unit]
  if found.group(1).strip() in ("M", "B", "K", "T", "G"):
    return _SCALES[found.group(1).strip().lower()]
  raise UserError(f"{path}: column {header!r} has the unit {found.group(1)!r}, which this reader "
                  "does not know; give plain counts (or K, M, B, T, PF-days) and rename it")


def _decode(path: Path, raw: bytes) -> str:
  bad = files.other_encoding(path, raw)
  if bad:
    raise bad
  nul = raw.find(b"\x00")
  if nul >= 0:
    raise UserError(f"{path} holds a NUL byte at byte {nul:,}: not a text CSV "
                    "(a spreadsheet file, or UTF-16 without a byte-order mark?); export it as "
                    "UTF-8 CSV")
  try:
    return raw.decode("utf-8-sig")                   # a UTF-8 byte-order mark is dropped
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise UserError(f"{path}:{line} is not UTF-8 text (byte {e.start:,}); save the CSV as "
                    "UTF-8") from None


def _separator(path: Path, header: str) -> str:
  counts = {s: header.count(s) for s in _SEPARATORS}
  best = max(_SEPARATORS, key=lambda s: counts[s])
  if counts[best] == 0:
    raise UserError(f"{path}: the header {header.strip()[:80]!r} has one column only; a CSV of "
                    "runs needs at least N (or D, C) and loss, separated by , ; tab or |")
  return best


def _rows(path: Path, text: str, sep: str) -> list[list[str]]:
  rows = [r for r in csv.reader(io.StringIO(text), delimiter=sep)]
  header = rows[0]
  body = []
  for line, row in enumerate(rows[1:], 2):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(header):
      hint = (" (decimal commas in a comma-separated file? use ; as the separator)"
              if sep == "," and len(row) > len(header) else "")
      raise UserError(f"{path}:{line} has {len(row)} fields where the header has "
                      f"{len(header)}{hint}")
    body.append(row)
  if not body:
    raise UserError(f"{path} has no data rows")
  return [header] + body


def _number(path: Path, line: int, header: str, cell: str, decimal_comma: bool) -> float:
  text = cell.strip()
  if decimal_comma and _DECIMAL_COMMA.match(text):
    text = text.replace(",", ".")
  try:
    value = float(text)
  except ValueError:
    hint = " (a decimal comma?)" if _DECIMAL_COMMA.match(text) else ""
    raise UserError(f"{path}:{line}: column {header!r} holds {cell!r}, not a number{hint}") \
        from None
  return value


def _match_headers(path: Path, header: list[str]) -> tuple[dict, list]:
  """quantity → column index, and the ignored headers; duplicate or ambiguous names refused."""
  seen: dict[str, str] = {}
  for h in header:
    key = normalise(h)
    if not key:
      raise UserError(f"{path}: the header has an empty column name (column "
                      f"{header.index(h) + 1}); name every column")
    if key in seen:
      raise UserError(f"{path}: the header names the column {h!r} twice"
                      + (f" (as {seen[key]!r} and {h!r})" if seen[key] != h else "")
                      + "; rename or drop one")
    seen[key] = h
  used, ignored = {}, []
  for i, h in enumerate(header):
    quantity = next((q for q, names in ALIASES.items() if normalise(h) in names), None)
    if quantity is None:
      ignored.append(h)
    elif quantity in used:
      raise UserError(f"{path}: columns {header[used[quantity]]!r} and {h!r} both give "
                      f"{quantity}; keep one")
    else:
      used[quantity] = i
  return used, ignored


def read(path: Path) -> CsvTable:
  path = Path(path)
  try:
    raw = path.read_bytes()
  except OSError as e:
    raise UserError(f"cannot read {path} ({e.strerror or e})") from None
  text = _decode(path, raw)
  if not text.strip():
    raise UserError(f"{path} is empty")
  header_line = text.splitlines()[0]
  sep = _separator(path, header_line)
  rows = _rows(path, text, sep)
  header, body = rows[0], rows[1:]
  used, ignored = _match_headers(path, header)
  notes = []
  if sep != ",":
    notes.append(f"read as a {'tab' if sep == chr(9) else repr(sep)}-separated CSV")
  decimal_comma = sep != "," and any(_DECIMAL_COMMA.match(r[i]) for r in body
                                     for i in used.values())
  if decimal_comma:
    notes.append("decimal commas read as decimal points")
  columns = {}
  for quantity, i in used.items():
    if quantity == "run":
      columns[quantity] = np.array([r[i].strip() for r in body])
      continue
    scale = unit_scale(path, header[i]) if quantity != "loss" else 1.0
    columns[quantity] = scale * np.array([_number(path, line, header[i], r[i], decimal_comma)
                                          for line, r in enumerate(body, 2)])
    if scale != 1.0:
      notes.append(f"column {header[i]!r} multiplied by {scale:g}")
  if "loss" not in columns:
    raise UserError(f"{path} has no loss column (columns: {', '.join(header)}); name it loss")
  if "D" not in columns and "C" in columns and "N" in columns:
    # Kaplan 2020 (arXiv 2001.08361) §2.1: C ≈ 6·N·D, so D = C/(6·N).
    columns["D"] = columns["C"] / (6.0 * columns["N"])
    notes.append("D = C/(6·N) (no tokens column)")
  _refuse_pooled(path, header, body, ignored)
  if ignored:
    notes.append(f"columns ignored: {', '.join(ignored)}")
  notes.insert(0, "columns used: " + ", ".join(f"{header[i]} as {q}" for q, i in used.items()))
  return CsvTable(columns, {q: header[i] for q, i in used.items()}, ignored, notes)


def _refuse_pooled(path: Path, header: list, body: list, ignored: list) -> None:
  """A column that names experiments, with several values, would pool several fits into one."""
  for h in ignored:
    if normalise(h) in GROUPING:
      values = sorted({r[header.index(h)].strip() for r in body})
      if len(values) > 1:
        shown = ", ".join(values[:4]) + (", …" if len(values) > 4 else "")
        raise UserError(f"{path}: column {h!r} holds {len(values)} experiments ({shown}); "
                        "one fit would pool them: split the CSV by that column")

"""Loading `configs/*.py` files (each with `get_config()`) and `--config.a.b=value` overrides."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import ml_collections

from scaling.errors import UserError


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """Imports a config file and returns its get_config(); a bare name looks in configs/.

  `file.py:ARG` passes the string ARG to get_config(ARG), as ml_collections' config flags do.
  """
  path, _, arg = str(path).partition(":")
  p = Path(path)
  if not p.is_file() and not p.suffix:
    for base in (Path("configs"), Path(__file__).resolve().parent.parent / "configs"):
      if (base / f"{path}.py").is_file():
        p = base / f"{path}.py"
        break
  if p.is_dir():
    inside = sorted(q.name for q in p.glob("*.py"))[:3]
    raise UserError(f"config path {path} is a folder; give a config file (a .py file with "
                    "get_config())" + (f", e.g. {p / inside[0]} (it holds {', '.join(inside)})"
                                       if inside else ""))
  if not p.is_file():
    raise UserError(f"config file {path} does not exist (give a .py file with get_config(), or "
                    "the name of one in configs/, e.g. ladder_cpu)")
  module = _import(p)
  if not hasattr(module, "get_config"):
    raise UserError(f"config file {p} has no get_config() function")
  try:
    cfg = module.get_config(arg) if arg else module.get_config()
  except TypeError as e:
    if not arg:
      raise UserError(f"config file {p}: get_config() failed: {_one_line(e)}") from None
    raise UserError(f"config file {p} does not take an argument (':{arg}'): {e}") from None
  except ValueError as e:
    if not arg:
      raise UserError(f"config file {p}: get_config() failed: {_one_line(e)}") from None
    raise UserError(f"config file {p}: bad argument {arg!r}: {e}") from None
  except Exception as e:  # a user's file may raise anything: say which line, in one line
    raise UserError(f"config file {p}: get_config() failed: {_one_line(e)}") from None
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise UserError(f"config file {p}: get_config() returned a {type(cfg).__name__}, not an "
                    "ml_collections.ConfigDict (start from scaling.config.defaults.base_config())")
  return cfg


def _one_line(e: BaseException) -> str:
  """An exception raised in a user's config file, with the file and line it came from."""
  where = ""
  tb = e.__traceback__
  while tb is not None:   # the innermost frame: where it was raised
    where = f" (line {tb.tb_lineno} of {tb.tb_frame.f_code.co_filename})"
    tb = tb.tb_next
  return f"{type(e).__name__}: {' '.join(str(e).split())}{where}"


def _import(p: Path):
  """The config file as a module; its syntax errors and failed imports as one-line errors."""
  spec = importlib.util.spec_from_file_location(f"scaling_config_{p.stem}", p)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UserError(f"config file {p}: syntax error at line {e.lineno}: {e.msg}") from None
  except ImportError as e:
    raise UserError(f"config file {p} imports something not installed: {e}") from None
  except Exception as e:
    raise UserError(f"config file {p} failed when loaded: {_one_line(e)}") from None
  return module


def _parse_value(text: str, current):
  if isinstance(current, bool):
    low = text.lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise ValueError(f"expected true/false, got {text!r}")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ValueError(f"cannot read {text!r} as a {type(current).__name__}") from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, int) and isinstance(value, float) and value.is_integer():
    value = int(value)
  if type(value) is not type(current) and current is not None:
    raise ValueError(f"expected a {type(current).__name__}, got {text!r}")
  return value


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies `config.a.b=value` (or `a.b=value`) strings; unknown fields and wrong types fail."""
  for item in overrides:
    key, eq, text = item.partition("=")
    if not eq:
      raise UserError(f"override {item!r} has no '='; write --config.FIELD=VALUE")
    key = key.removeprefix("--").removeprefix("config.")
    node, parts = cfg, key.split(".")
    for part in parts[:-1]:
      if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
        raise UserError(f"unknown config field {key!r}; see the config file for the fields")
      node = node[part]
    if parts[-1] not in node:
      raise UserError(f"unknown config field {key!r}; see the config file for the fields")
    try:
      node[parts[-1]] = _parse_value(text, node[parts[-1]])
    except (ValueError, TypeError) as e:
      raise UserError(f"config field {key!r}: {e}") from None
  return cfg


def to_json(cfg: ml_collections.ConfigDict) -> str:
  return json.dumps(cfg.to_dict(), indent=1, sort_keys=True)

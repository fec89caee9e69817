"""The `scaling` command."""

from __future__ import annotations

import argparse
import os
import sys

from scaling.errors import UserError


def _cmd_train(args, overrides: list[str]) -> int:
  from scaling.config import apply_overrides, load_config_file
  from scaling import train as trainlib
  cfg = apply_overrides(load_config_file(args.config), overrides)
  trainlib.train(cfg, overwrite=args.overwrite)
  return 0


def _cmd_quickstart(args, overrides: list[str]) -> int:
  from scaling.config import apply_overrides, load_config_file
  from scaling import train as trainlib
  cfg = apply_overrides(load_config_file("tiny"), overrides)
  cfg.run_dir = os.path.join(args.out, "tiny")
  summary = trainlib.train(cfg, overwrite=args.overwrite)
  print(f"quickstart: held-out loss {summary['final_eval_loss']:.3f} nats/token vs unigram "
        f"entropy {summary['unigram_entropy']:.3f}; metrics in {cfg.run_dir}/metrics.jsonl")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="scaling", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train one model from a config file",
                     description="Train (or resume) one run. Override any config field with "
                                 "--config.FIELD=VALUE, e.g. --config.model.d_model=256.")
  p.add_argument("--config", required=True, help="configs/<file>.py with get_config()")
  p.add_argument("--overwrite", action="store_true",
                 help="if the run directory holds a run with another config, move it aside")
  p.set_defaults(func=_cmd_train)

  p = sub.add_parser("quickstart", help="train, fit and report on the embedded corpus")
  p.add_argument("--out", default="runs/quickstart", help="results directory")
  p.add_argument("--overwrite", action="store_true")
  p.set_defaults(func=_cmd_quickstart)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  args = build_parser().parse_args(rest)
  try:
    return args.func(args, overrides)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())

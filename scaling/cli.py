"""The `scaling` command."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from scaling import files
from scaling.cli_args import build_parser
from scaling.config.load import apply_overrides, load_config_file
from scaling.config.spec import validate
from scaling.errors import Preempted, StorageError, UserError
from scaling.experiments import points as pointlib
from scaling.train import remote

# The commands import their stages when they run: `scaling fit` and `scaling predict` on a CSV
# never import jax (the training stack), so they start in well under a second.


def _load(path: str, overrides: list[str]):
  return apply_overrides(load_config_file(path), overrides)


def _cmd_train(args, overrides: list[str]) -> int:
  from scaling.train import loop as trainlib
  trainlib.train(validate(_load(args.config, overrides)), overwrite=args.overwrite)
  return 0


def _cmd_tokenize(args, overrides: list[str]) -> int:
  from scaling.data import loader as datalib
  from scaling.data import tokenize
  data = validate(_load(args.config, overrides)).data
  folder, mirror = remote.store_folder(args.out, datalib.cache_root(data.cache_dir),
                                       writing=True) if args.out else ("", None)
  store = tokenize.build_store(data, out=str(folder), verbose=True)
  if mirror is not None:
    mirror.push()
  where = args.out or store.folder
  print(f"token store: {where}  (sha256/16 {store.sha256_16}; train with "
        f"--config.data.store={where})")
  return 0


def _print_headline(h: dict) -> None:
  lo, hi = (x if x is not None else math.nan for x in h["alpha_N_interval"])
  interval = (f"95% interval [{lo:.4f}, {hi:.4f}]" if math.isfinite(lo) and math.isfinite(hi)
              else "no interval: too few sizes to resample")
  print(f"  alpha_N = {h['alpha_N']:.4f}  ({interval})")
  if h["extrapolation_rel_error"] is not None:
    print(f"  largest model (N = {h['extrapolation_N']:.3g}) predicted from the others: "
          f"{100 * h['extrapolation_rel_error']:+.2f}% error")
  if h["b_simple_at_final_loss_tokens"]:
    print(f"  online B_simple at its final loss {h['final_loss_largest']:.3f}: "
          f"{h['b_simple_at_final_loss_tokens']:.3g} tokens")
  if h.get("excess"):
    x = h["excess"]
    lo, hi = (v if v is not None else math.nan for v in x["alpha_N_interval"] or (None, None))
    print(f"  L(N) − H, H = {x['entropy_rate']:.4f} the corpus's exact entropy rate: alpha_N = "
          f"{x['alpha_N']:.4f} [{lo:.4f}, {hi:.4f}], rms log residual {x['rms_log_residual']:.4f}")
    if x["extrapolation_rel_error"] is not None:
      print(f"    largest model (N = {x['extrapolation_N']:.3g}) predicted from the others: "
            f"{100 * x['extrapolation_rel_error']:+.2f}% error in its loss")
  for name, t in h.get("transfer", {}).items():
    lo, hi = t["offset_interval"]
    print(f"  transfer to {name}: loss offset {t['offset']:+.3f} nats [{lo:+.3f}, {hi:+.3f}], "
          f"alpha_N there {t['alpha_N']:.4f}")


def _print_any_headline(h: dict) -> None:
  from scaling.laws import howbig
  if h.get("kind") == "isoflop":
    print("\n".join(howbig.answer_lines(h)))
  else:
    _print_headline(h)


def _cmd_heldout(args, overrides: list[str]) -> int:
  from scaling import pipeline
  from scaling.design import experiment
  cfg, made = _sweep_config(args, overrides)
  factor = experiment.heldout_factor(made) if made else args.factor
  doc = pipeline.heldout_check(cfg, pointlib.run_path(cfg), args.bootstrap, factor,
                               args.target or 0.0, args.overwrite, True, _processes(args, cfg))
  _print_any_headline(doc["headline"])
  return 0


def _cmd_compare(args, overrides: list[str]) -> int:
  """a under each combination of switches: one row per isoFLOP sweep (fitted if needed)."""
  from scaling.laws import howbig
  from scaling.laws import sweepfit
  for sweep in args.sweeps:
    if not sweepfit.is_current(Path(sweep)):
      sweepfit.fit_sweep(sweep, args.bootstrap)
  text = "\n".join(howbig.switch_table([Path(s) for s in args.sweeps])) + "\n"
  print(text)
  if args.out:
    files.atomic_write_text(Path(args.out), text)
    print(f"wrote {args.out}")
  return 0


def _cmd_quickstart(args, overrides: list[str]) -> int:
  """The stages in order (scaling/pipeline.py), then the answer."""
  from scaling import pipeline
  result = pipeline.quickstart(args.out, args.data, args.minutes, args.force, args.budget or 0.0,
                               args.overwrite, args.bootstrap, not args.quiet, args.processes,
                               overrides)
  h = result["headline"]
  print(f"\nquickstart finished in {result['minutes']:.1f} min: {h['n_runs']} runs")
  _print_any_headline(h)
  print(f"  fits: {result['fits']}\n  report: {result['report']}")
  return 0


def _cmd_compile(args, overrides) -> int:
  from scaling.experiments.expand import expand
  from scaling.train import aot   # libtpu is an optional extra
  cfg = _load(args.config, overrides)
  topology = args.topology or cfg.get("topology", "") or "v5e:4x4"
  if "sweep" in cfg:   # a ladder or grid: one of its points (default the largest)
    points = expand(cfg)
    if not -len(points) <= args.point < len(points):
      raise UserError(f"--point {args.point}: the sweep has points 0..{len(points) - 1}")
    cfg = points[args.point]
    print(f"sweep point {args.point % len(points)} of {len(points)}: {cfg.name}")
  for line in aot.report_lines(aot.compile_step(validate(cfg), topology)):
    print(line)
  return 0


def _cmd_bench(args, overrides) -> int:
  from scaling.train import hardware
  from scaling.train import throughput
  if not args.no_compile_cache:
    hardware.enable_compilation_cache()
  result = throughput.run_bench(throughput.parse_shapes(args.shapes), n_vocab=args.vocab, n_ctx=args.ctx,
                           batch=args.batch, steps=args.steps, compute_dtype=args.dtype,
                           gns_on=not args.no_gns, num_devices=args.devices,
                           loader=not args.no_loader, overhead=not args.no_overhead,
                           compare_off=args.compare_off)
  print("\nMFU(pair): against XLA's matmul timed beside each step (median over steps); MFU(fast):\n"
        "the same against the faster of XLA's and numpy's BLAS matmul (CPU, float32); MFU(run):\n"
        "median step against the fastest XLA matmul of the whole run (a lower bound).")
  print(throughput.HEADER)
  for row in result["rows"]:
    print(throughput.format_row(row))
    if "off_tokens_per_s" in row:
      print(throughput.format_off(row))
  if args.json:
    files.atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    print(f"wrote {args.json}")
  return 0


def _cmd_report(args, overrides) -> int:
  from scaling.data import loader as datalib
  from scaling.report.render import make_report
  with remote.local_copy(args.path, datalib.cache_root()) as local:
    result = make_report(str(local), n_boot=args.bootstrap)
    print(f"wrote {result['report']} and {', '.join(result['figures'].values())} "
          f"(from {result['fits']})")
  _say_pushed(args.path)
  return 0


def _say_pushed(path: str) -> None:
  if remote.is_remote(path):
    print(f"(worked in a local copy; written back to {path})")


def _sweep_config(args, overrides):
  """The sweep of a design.json (--design), or of --config (with overrides)."""
  from scaling.design import experiment
  if getattr(args, "design", ""):
    cfg, made = experiment.sweep_config(args.design)
    return apply_overrides(cfg, overrides), made
  if not args.config:
    raise UserError("give --config (a sweep config) or --design (a design.json or its folder)")
  return _load(args.config, overrides), None


def _cmd_sweep(args, overrides) -> int:
  from scaling.design import experiment
  from scaling.experiments.sweep import run_sweep
  cfg, made = _sweep_config(args, overrides)
  procs = _processes(args, cfg)
  run_sweep(cfg, args.overwrite, worker=args.worker, num_workers=args.num_workers,
            processes=procs)
  if made is not None and args.num_workers == 1:
    experiment.widen_lopsided(pointlib.run_path(cfg), args.overwrite, processes=procs)
  return 0


def _processes(args, cfg) -> int:
  from scaling.experiments import processes
  return processes.resolve(args.processes, bool(cfg.distributed.enabled))


def _cmd_design(args, overrides) -> int:
  from scaling.design import experiment
  cfg = apply_overrides(experiment.base_config(args.data), overrides)
  experiment.make_design(cfg, Path(args.out), args.minutes, args.force, verbose=True,
                         processes=_processes(args, cfg))
  print(f"train it with: scaling sweep --design {args.out}, then scaling heldout --design "
        f"{args.out} and scaling report {args.out}")
  return 0


def _cmd_bsweep(args, overrides) -> int:
  from scaling.experiments.batchsweep import run_batch_sweep
  run_batch_sweep(_load(args.config, overrides), args.overwrite, args.bootstrap)
  return 0


def _cmd_cbs(args, overrides) -> int:
  from scaling.experiments.cbs import run_cbs
  run_cbs(_load(args.config, overrides), args.overwrite, args.bootstrap, args.sweep,
          train=not args.analyze_only)
  return 0


def _cmd_fit(args, overrides) -> int:
  from scaling.laws.commands import fit_command
  from scaling.train import rundir
  with remote.local_copy(args.path, files.cache_root()) as path:
    if path.is_dir() and not args.law and not rundir.is_run(path):
      from scaling.laws import sweepfit   # a sweep folder: the trainer's own quantities
      doc = sweepfit.fit_sweep(str(path), args.bootstrap, args.holdout, args.seed)
      _print_any_headline(doc["headline"])
      print(f"wrote {sweepfit.fits_path(path)} ({', '.join(doc['fits'])})")
    else:
      fit_command(str(path), args.law or [], args.bootstrap, args.holdout, args.seed,
                  args.n_convention, args.loss_key, args.budget, args.out, args.flops,
                  args.budget_tolerance, args.holdout_budgets, args.coverage)
  _say_pushed(args.path)
  return 0


def _cmd_predict(args, overrides) -> int:
  from scaling.laws.commands import predict_command
  predict_command(args.preset, args.N, args.D, args.C, args.loss, args.batch_law)
  return 0


def _cmd_plan(args, overrides) -> int:
  from scaling.laws.commands import plan_command
  plan_command(args.preset, args.N, args.D, args.penalty, args.batch, args.steps, args.compare,
               args.C, args.batch_law)
  return 0


COMMANDS = {"train": _cmd_train, "tokenize": _cmd_tokenize, "quickstart": _cmd_quickstart,
            "design": _cmd_design, "report": _cmd_report, "sweep": _cmd_sweep,
            "heldout": _cmd_heldout, "compare": _cmd_compare, "bsweep": _cmd_bsweep,
            "cbs": _cmd_cbs, "compile": _cmd_compile, "bench": _cmd_bench, "fit": _cmd_fit,
            "predict": _cmd_predict, "plan": _cmd_plan}


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  try:
    args = build_parser().parse_args(rest)
  except SystemExit as e:   # a usage error (one line, exit 2) or --help (exit 0)
    return int(e.code or 0)
  try:
    return COMMANDS[args.command](args, overrides)
  except UserError as e:
    line = f"error: {' '.join(str(e).split())}"  # always one line
    if isinstance(e, StorageError):
      # The checkpoint library's threads may still be printing tracebacks: silence them
      # (file descriptor 2 to /dev/null), put the verdict on a line of its own, and leave now.
      sys.stdout.flush()
      sys.stderr.flush()
      real = os.dup(2)
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, 2)
      os.write(real, f"\n{line}\n".encode())
      os._exit(2)
    print(line, file=sys.stderr)
    return 2
  except Preempted as e:
    print(f"preempted: {e}", file=sys.stderr)
    return 143  # 128 + SIGTERM, as a shell reports a process ended by it
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())

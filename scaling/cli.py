"""The `scaling` command."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from scaling import files, remote
from scaling.config import apply_overrides, load_config_file
from scaling.errors import Preempted, StorageError, UserError

# The commands import their stages when they run: `scaling fit` and `scaling predict` on a CSV
# never import jax (the training stack), so they start in well under a second.


class _Parser(argparse.ArgumentParser):
  """argparse with its usage errors on one line (exit 2), as every other error of the tool."""

  def error(self, message: str):
    if message.endswith("expected one argument"):
      message += " (a value that starts with '-' is written --OPTION=VALUE)"
    self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _number(kind, low: float, low_ok: bool, what: str, high: float = math.inf):
  """An argparse type: a finite number above `low` (or at it when low_ok) and below `high`."""
  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (not math.isfinite(value) or value < low or (value == low and not low_ok)
        or value >= high):
      raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
  parse.__name__ = what  # argparse names the type in its messages
  return parse


POSITIVE = _number(float, 0.0, False, "a positive finite number")
POSITIVE_INT = _number(int, 0, False, "a positive integer")
COUNT = _number(int, 0, True, "a non-negative integer")
FRACTION = _number(float, 0.0, True, "a fraction in [0, 1)", high=1.0)


def _load(path: str, overrides: list[str]):
  return apply_overrides(load_config_file(path), overrides)


def _cmd_train(args, overrides: list[str]) -> int:
  from scaling import train as trainlib
  trainlib.train(_load(args.config, overrides), overwrite=args.overwrite)
  return 0


def _cmd_tokenize(args, overrides: list[str]) -> int:
  from scaling import data as datalib
  from scaling import encode
  from scaling.spec import validate
  data = validate(_load(args.config, overrides)).data
  folder, mirror = remote.store_folder(args.out, datalib.cache_root(data.cache_dir),
                                       writing=True) if args.out else ("", None)
  store = encode.build_store(data, out=str(folder), verbose=True)
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
  from scaling import design_run, pipeline
  from scaling import rundir
  cfg, made = _sweep_config(args, overrides)
  factor = design_run.heldout_factor(made) if made else args.factor
  doc = pipeline.heldout_check(cfg, rundir.path_of(cfg), args.bootstrap, factor,
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
  from scaling import aot   # libtpu is an optional extra
  from scaling.expand import expand
  cfg = _load(args.config, overrides)
  topology = args.topology or cfg.get("topology", "") or "v5e:4x4"
  if "sweep" in cfg:   # a ladder or grid: one of its points (default the largest)
    points = expand(cfg)
    if not -len(points) <= args.point < len(points):
      raise UserError(f"--point {args.point}: the sweep has points 0..{len(points) - 1}")
    cfg = points[args.point]
    print(f"sweep point {args.point % len(points)} of {len(points)}: {cfg.name}")
  for line in aot.report_lines(aot.compile_step(cfg, topology)):
    print(line)
  return 0


def _cmd_bench(args, overrides) -> int:
  from scaling import bench
  from scaling import hardware
  if not args.no_compile_cache:
    hardware.enable_compilation_cache()
  result = bench.run_bench(bench.parse_shapes(args.shapes), n_vocab=args.vocab, n_ctx=args.ctx,
                           batch=args.batch, steps=args.steps, compute_dtype=args.dtype,
                           gns_on=not args.no_gns, num_devices=args.devices,
                           loader=not args.no_loader, overhead=not args.no_overhead,
                           compare_off=args.compare_off)
  print("\nMFU(pair): against XLA's matmul timed beside each step (median over steps); MFU(fast):\n"
        "the same against the faster of XLA's and numpy's BLAS matmul (CPU, float32); MFU(run):\n"
        "median step against the fastest XLA matmul of the whole run (a lower bound).")
  print(bench.HEADER)
  for row in result["rows"]:
    print(bench.format_row(row))
    if "off_tokens_per_s" in row:
      print(bench.format_off(row))
  if args.json:
    files.atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    print(f"wrote {args.json}")
  return 0


def _cmd_report(args, overrides) -> int:
  from scaling import data as datalib
  from scaling.report import make_report
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
  from scaling import design_run
  if getattr(args, "design", ""):
    cfg, made = design_run.sweep_config(args.design)
    return apply_overrides(cfg, overrides), made
  if not args.config:
    raise UserError("give --config (a sweep config) or --design (a design.json or its folder)")
  return _load(args.config, overrides), None


def _cmd_sweep(args, overrides) -> int:
  from scaling import design_run
  from scaling import rundir
  from scaling.sweep import run_sweep
  cfg, made = _sweep_config(args, overrides)
  procs = _processes(args, cfg)
  run_sweep(cfg, args.overwrite, worker=args.worker, num_workers=args.num_workers,
            processes=procs)
  if made is not None and args.num_workers == 1:
    design_run.widen_lopsided(rundir.path_of(cfg), args.overwrite, processes=procs)
  return 0


def _processes(args, cfg) -> int:
  from scaling import processes
  return processes.resolve(args.processes, bool(cfg.distributed.enabled))


def _add_processes(p) -> None:
  p.add_argument("--processes", type=COUNT, default=0,
                 help="training processes on this machine (default 0: 2 on a CPU with 2 or more "
                      "cores, else 1); the same runs, the same numbers")


def _cmd_design(args, overrides) -> int:
  from scaling import design_run
  cfg = apply_overrides(design_run.base_config(args.data), overrides)
  design_run.make_design(cfg, Path(args.out), args.minutes, args.force, verbose=True,
                         processes=_processes(args, cfg))
  print(f"train it with: scaling sweep --design {args.out}, then scaling heldout --design "
        f"{args.out} and scaling report {args.out}")
  return 0


def _cmd_bsweep(args, overrides) -> int:
  from scaling.batchsweep import run_batch_sweep
  run_batch_sweep(_load(args.config, overrides), args.overwrite, args.bootstrap)
  return 0


def _cmd_cbs(args, overrides) -> int:
  from scaling.cbs import run_cbs
  run_cbs(_load(args.config, overrides), args.overwrite, args.bootstrap, args.sweep,
          train=not args.analyze_only)
  return 0


def _cmd_fit(args, overrides) -> int:
  from scaling import rundir
  from scaling.laws.commands import fit_command
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


def _config_command(sub, name: str, help_: str, description: str, config: str, n_boot: int,
                    func):
  """A subcommand that trains the runs of --config (skipping finished ones) and analyses them."""
  p = sub.add_parser(name, help=help_, description=description)
  p.add_argument("--config", default=config)
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--bootstrap", type=COUNT, default=n_boot)
  p.set_defaults(func=func)
  return p


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="scaling", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

  p = sub.add_parser("train", help="train one model from a config file",
                     description="Train (or resume) one run. Override any config field with "
                                 "--config.FIELD=VALUE, e.g. --config.model.d_model=256.")
  p.add_argument("--config", required=True, help="configs/<file>.py with get_config()")
  p.add_argument("--overwrite", action="store_true",
                 help="if the run directory holds a run with another config, move it aside")
  p.set_defaults(func=_cmd_train)

  p = sub.add_parser("tokenize", help="write the token store of a config's corpus",
                     description="Streams the corpus of --config (data.source, data.vocab_size, "
                                 "data.eval_fraction …) in bounded memory, trains its tokenizer on "
                                 "a sample (data.tokenizer_sample_bytes) or loads one, and writes "
                                 "the token store in shards (data.shard_tokens); prints its folder. "
                                 "Stopped, it resumes at its last finished shard when rerun. "
                                 "Train on it with --config.data.store=FOLDER.")
  p.add_argument("--config", default="ladder_cpu", help="configs/<file>.py with get_config()")
  p.add_argument("--out", help="store folder or URL (gs://…; default: the cache directory, "
                               "under the corpus's hash)")
  p.set_defaults(func=_cmd_tokenize)

  p = sub.add_parser("quickstart", help="how big, how long, what loss: an isoFLOP sweep, fits, "
                                         "a held-out budget check and a report, on the "
                                         "generated corpus (or --data)")
  p.add_argument("--out", default="runs/quickstart", help="results directory")
  p.add_argument("--data", default="",
                 help="your corpus: a text file, folder, glob, JSONL (.jsonl[.xz]) or hf:NAME "
                      "(default: the generated corpus, whose entropy rate is known)")
  p.add_argument("--minutes", type=POSITIVE, default=15.0,
                 help="the most time the design may spend, its pilot included (default 15; it "
                      "takes what its budgets need)")
  p.add_argument("--force", action="store_true",
                 help="train a design that cannot answer (too few minutes or tokens), warned")
  p.add_argument("--budget", type=POSITIVE,
                 help="FLOP budget to answer for (default: 10x the largest budget trained)")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--bootstrap", type=COUNT, default=1000)
  p.add_argument("--quiet", action="store_true", help="only the sweep's progress lines")
  _add_processes(p)
  p.set_defaults(func=_cmd_quickstart)

  p = sub.add_parser("design", help="measure the corpus and machine, write design.json",
                     description="Tokenizes the corpus into OUT/store, runs a pilot in OUT/pilot "
                                 "(LR probe, the change of phase, speed, run-to-run noise) and "
                                 "writes OUT/design.json: budgets past the change of phase, sizes "
                                 "centred on the predicted vertices, LR, seeds, the held-out "
                                 "budget and the expected time. Refuses, saying what it would "
                                 "need, when the minutes or the corpus cannot buy it.")
  p.add_argument("--data", default="", help="the corpus (default: the generated one)")
  p.add_argument("--minutes", type=POSITIVE, default=15.0,
                 help="the most time the design may spend, its pilot included (default 15; it "
                      "takes what its budgets need)")
  p.add_argument("--out", default="runs/design", help="the sweep folder")
  p.add_argument("--force", action="store_true")
  _add_processes(p)
  p.set_defaults(func=_cmd_design)

  p = sub.add_parser("report", help="figures and a Markdown report of a sweep directory",
                     description="Renders report.md and the figures from the sweep's fits.json "
                                 "and its runs; runs `scaling fit` first only when fits.json is "
                                 "missing or older than the runs.")
  p.add_argument("path")
  p.add_argument("--bootstrap", type=COUNT, default=1000,
                 help="bootstrap resamples, used only when fits.json must be made")
  p.set_defaults(func=_cmd_report)

  p = sub.add_parser("sweep", help="run every point of a ladder, grid or design (resumable)",
                     description="Run each point of cfg.sweep, or of a design.json (--design); "
                                 "finished points are skipped, partial ones resume, a lock file "
                                 "keeps runners apart.")
  p.add_argument("--config", default="")
  p.add_argument("--design", default="", help="a design.json (or its folder) from scaling design")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--worker", type=COUNT, default=0,
                 help="this worker's index (0-based) when several share the sweep")
  p.add_argument("--num-workers", type=POSITIVE_INT, default=1,
                 help="workers sharing the sweep: point j belongs to worker j mod num-workers")
  _add_processes(p)
  p.set_defaults(func=_cmd_sweep)

  p = _config_command(sub, "heldout", "check an isoFLOP sweep's prediction at a larger budget",
                      "Fits the isoFLOP sweep of --config, trains the predicted compute-optimal "
                      "model and its neighbours N/2 and 2N at --factor x the largest budget (in "
                      "<sweep>/heldout/), and fits again: measured against predicted loss.",
                      "isoflop_cpu", 1000, _cmd_heldout)
  p.add_argument("--factor", type=POSITIVE, default=3.0)
  p.add_argument("--design", default="", help="a design.json (or its folder): its sweep and its "
                                              "held-out budget")
  p.add_argument("--target", type=POSITIVE, help="FLOP budget to answer for (default 10x largest)")
  _add_processes(p)

  p = sub.add_parser("compare", help="allocation exponent a of isoFLOP sweeps run with "
                                      "different switches, side by side",
                     description="One row per sweep directory: its FLOP count, warm-up rule, "
                                 "decay horizon, schedule and LR tuning (read from its runs) and "
                                 "a from approaches 3 and 2 with 95%% intervals.")
  p.add_argument("sweeps", nargs="+")
  p.add_argument("--out", help="also write the Markdown table here")
  p.add_argument("--bootstrap", type=COUNT, default=1000)
  p.set_defaults(func=_cmd_compare)

  _config_command(sub, "bsweep", "batch-size sweep: B_crit(L) beside the online estimates",
                  "Train one model at a ladder of batch sizes, each at a small LR grid widened "
                  "where the best sits at an edge (finished runs are skipped), fit S = S_min(1 + "
                  "B_crit/B) per target loss at the best LR and B_crit(L) = B*/L^(1/alpha_B).",
                  "batch_sweep", 1000, _cmd_bsweep)

  p = _config_command(sub, "cbs", "critical batch by branched training along a run",
                      "Per model size: a source run keeping its state at branch points, forks at "
                      "several batch sizes and seeds from each (finished ones are skipped); "
                      "B_crit per point, against the online estimates, and B_crit(L) vs "
                      "B_crit(D) across sizes.", "cbs_branch", 200, _cmd_cbs)
  p.add_argument("--sweep", default="", help="a batch sweep's directory: compare where the "
                                             "losses overlap")
  p.add_argument("--analyze-only", action="store_true",
                 help="train nothing: analyse the sources and forks already on disk")

  p = sub.add_parser("compile", help="compile the train step for a TPU topology, here (no TPU)",
                     description="Lowers and compiles the real train step of --config for a TPU "
                                 "topology with libtpu (pip install -e '.[tpu-aot]'), and prints "
                                 "XLA's memory per chip against the chip's HBM and XLA's FLOPs "
                                 "per step against the PaLM count. Shard parameters with "
                                 "--config.mesh.fsdp=F.")
  p.add_argument("--config", required=True)
  p.add_argument("--topology", default="",
                 help="CHIP:SHAPE, e.g. v5e:4x4, v4:2x2x2 (default: the config's `topology`, "
                      "else v5e:4x4)")
  p.add_argument("--point", type=int, default=-1,
                 help="for a sweep config: which point to compile (default -1, the largest)")
  p.set_defaults(func=_cmd_compile)

  p = sub.add_parser("bench", help="tokens/s, MFU, compile time, memory and loader speed",
                     description="Times the trainer's own step for each shape; MFU against the "
                                 "matmul peak measured in the same run and, on known "
                                 "accelerators, against the nominal bf16 peak.")
  p.add_argument("--shapes", default="2,128,2 4,256,4 6,384,6",
                 help="n_layer,d_model,n_heads for each model, space separated")
  p.add_argument("--vocab", type=POSITIVE_INT, default=4096)
  p.add_argument("--ctx", type=POSITIVE_INT, default=256)
  p.add_argument("--batch", type=POSITIVE_INT, default=16, help="global batch in sequences")
  p.add_argument("--steps", type=POSITIVE_INT, default=10, help="timed steps per shape (median reported)")
  p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
  p.add_argument("--devices", type=COUNT, default=0, help="data-parallel devices (0: all)")
  p.add_argument("--no-gns", action="store_true", help="without the noise-scale estimator")
  p.add_argument("--compare-off", action="store_true",
                 help="also time the step without the estimator beside each step (off/on speed)")
  p.add_argument("--no-loader", action="store_true", help="skip the loader throughput")
  p.add_argument("--no-overhead", action="store_true", help="skip the between-step overhead")
  p.add_argument("--no-compile-cache", action="store_true",
                 help="do not use JAX's persistent compilation cache")
  p.add_argument("--json", help="also write the results to this JSON file")
  p.set_defaults(func=_cmd_bench)

  p = sub.add_parser("fit", help="fit scaling laws to a sweep, run directories or a CSV of runs",
                     description="A sweep directory without --law: every law of the sweep into "
                                 "PATH/fits.json (what `scaling report` renders). With --law, or "
                                 "on a CSV: the named laws into fit.json.")
  p.add_argument("path", help="a sweep directory, a run directory, or a CSV (columns N, D, loss, "
                              "C in FLOP, …; with a run column, learning curves for envelope)")
  p.add_argument("--law", action="append",
                 help="N, D, C, ND, NS (each optionally +E), chinchilla, chinchilla_huber, "
                      "isoflop, envelope, bcrit; repeat for several (default: by the data)")
  p.add_argument("--bootstrap", type=COUNT, default=1000, help="bootstrap resamples (0: none)")
  p.add_argument("--holdout", type=COUNT, default=1,
                 help="hold out this many largest budgets (laws of N and D; the largest sizes "
                      "for one-variable laws) for the extrapolation check")
  p.add_argument("--holdout-budgets", type=COUNT, default=0,
                 help="hold out the points of the K largest budgets (C, binned by "
                      "--budget-tolerance) instead, each checked against its calibrated interval")
  p.add_argument("--coverage", action="store_true",
                 help="also measure the calibrated intervals' coverage: each budget predicted "
                      "from the budgets below it")
  p.add_argument("--seed", type=COUNT, default=0)
  p.add_argument("--n-convention", default="kaplan", choices=["kaplan", "exact", "total"],
                 help="N of run directories: Kaplan non-embedding, exact non-embedding, or total")
  p.add_argument("--loss-key", default=None,
                 help="summary.json field used as the loss (default: best_eval_loss, i.e. early "
                      "stopped, for D and ND laws; final_eval_loss otherwise)")
  p.add_argument("--budget", type=POSITIVE, help="FLOP budget for the derived N_opt, D_opt")
  p.add_argument("--budget-tolerance", type=FRACTION, default=0.0,
                 help="isoflop: bin points whose C differ by up to ±this fraction into one budget "
                      "(e.g. 0.25 for published points, which never share one exact C)")
  p.add_argument("--flops", default="kaplan_train",
                 choices=["kaplan_train", "palm_train", "chinchilla_train"],
                 help="FLOPs per token for learning curves: 6N (Kaplan), + attention and logits "
                      "(PaLM), or 6·N_total (Chinchilla)")
  p.add_argument("--out", help="JSON output (default: PATH/fit.json or PATH.fit.json)")
  p.set_defaults(func=_cmd_fit)

  p = sub.add_parser("predict", help="the calculator: loss for N, D; allocation for C; C for a loss")
  p.add_argument("--preset", required=True, help="kaplan2020, chinchilla2022, epoch2024 or a fit JSON")
  p.add_argument("--N", type=POSITIVE, help="parameters")
  p.add_argument("--D", type=POSITIVE, help="tokens")
  p.add_argument("--C", type=POSITIVE, help="compute budget in FLOP")
  p.add_argument("--loss", type=POSITIVE, help="target loss (nats/token)")
  p.add_argument("--batch-law", help="your measured B_crit(L): a bsweep.json or cbs.json (or "
                                     "their folder), instead of Kaplan's")
  p.set_defaults(func=_cmd_predict)

  p = sub.add_parser("plan", help="planning: overfitting, when to stop, allocation, model tables")
  p.add_argument("--preset", default="kaplan2020",
                 help="kaplan2020, chinchilla2022, epoch2024 or a fit JSON")
  p.add_argument("--N", type=POSITIVE, help="parameters (non-embedding for Kaplan)")
  p.add_argument("--D", type=POSITIVE, help="distinct training tokens")
  p.add_argument("--penalty", type=POSITIVE, help="overfitting penalty in percent: the least D")
  p.add_argument("--batch", type=POSITIVE, help="batch size in tokens of a run in progress")
  p.add_argument("--steps", type=POSITIVE, help="steps taken so far: should I stop?")
  p.add_argument("--C", type=POSITIVE, help="compute budget in FLOP: compute-efficient N, B, S, D")
  p.add_argument("--batch-law", help="your measured B_crit(L): a bsweep.json or cbs.json (or "
                                     "their folder), instead of Kaplan's")
  p.add_argument("--compare", nargs="?", const="",
                 help="table of named models (default GPT-2, GPT-3, Gopher, Chinchilla) or "
                      "name:N:D,name:N:D")
  p.set_defaults(func=_cmd_plan)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  try:
    args = build_parser().parse_args(rest)
  except SystemExit as e:   # a usage error (one line, exit 2) or --help (exit 0)
    return int(e.code or 0)
  try:
    return args.func(args, overrides)
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

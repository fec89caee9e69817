"""The `scaling` command line: its subcommands and their options (scaling/cli.py runs them).
argparse only: building the parser imports no stage of the pipeline."""

from __future__ import annotations

import argparse
import math


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


def _add_processes(p) -> None:
  p.add_argument("--processes", type=COUNT, default=0,
                 help="training processes on this machine (default 0: 2 on a CPU with 2 or more "
                      "cores, else 1); the same runs, the same numbers")


def _config_command(sub, name: str, help_: str, description: str, config: str, n_boot: int):
  """A subcommand that trains the runs of --config (skipping finished ones) and analyses them."""
  p = sub.add_parser(name, help=help_, description=description)
  p.add_argument("--config", default=config)
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--bootstrap", type=COUNT, default=n_boot)
  return p


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="scaling", description="The `scaling` command.")
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

  p = sub.add_parser("train", help="train one model from a config file",
                     description="Train (or resume) one run. Override any config field with "
                                 "--config.FIELD=VALUE, e.g. --config.model.d_model=256.")
  p.add_argument("--config", required=True, help="configs/<file>.py with get_config()")
  p.add_argument("--overwrite", action="store_true",
                 help="if the run directory holds a run with another config, move it aside")

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

  p = sub.add_parser("report", help="figures and a Markdown report of a sweep directory",
                     description="Renders report.md and the figures from the sweep's fits.json "
                                 "and its runs; runs `scaling fit` first only when fits.json is "
                                 "missing or older than the runs.")
  p.add_argument("path")
  p.add_argument("--bootstrap", type=COUNT, default=1000,
                 help="bootstrap resamples, used only when fits.json must be made")

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

  p = _config_command(sub, "heldout", "check an isoFLOP sweep's prediction at a larger budget",
                      "Fits the isoFLOP sweep of --config, trains the predicted compute-optimal "
                      "model and its neighbours N/2 and 2N at --factor x the largest budget (in "
                      "<sweep>/heldout/), and fits again: measured against predicted loss.",
                      "isoflop_cpu", 1000)
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

  _config_command(sub, "bsweep", "batch-size sweep: B_crit(L) beside the online estimates",
                  "Train one model at a ladder of batch sizes, each at a small LR grid widened "
                  "where the best sits at an edge (finished runs are skipped), fit S = S_min(1 + "
                  "B_crit/B) per target loss at the best LR and B_crit(L) = B*/L^(1/alpha_B).",
                  "batch_sweep", 1000)

  p = _config_command(sub, "cbs", "critical batch by branched training along a run",
                      "Per model size: a source run keeping its state at branch points, forks at "
                      "several batch sizes and seeds from each (finished ones are skipped); "
                      "B_crit per point, against the online estimates, and B_crit(L) vs "
                      "B_crit(D) across sizes.", "cbs_branch", 200)
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

  p = sub.add_parser("predict", help="the calculator: loss for N, D; allocation for C; C for a loss")
  p.add_argument("--preset", required=True, help="kaplan2020, chinchilla2022, epoch2024 or a fit JSON")
  p.add_argument("--N", type=POSITIVE, help="parameters")
  p.add_argument("--D", type=POSITIVE, help="tokens")
  p.add_argument("--C", type=POSITIVE, help="compute budget in FLOP")
  p.add_argument("--loss", type=POSITIVE, help="target loss (nats/token)")
  p.add_argument("--batch-law", help="your measured B_crit(L): a bsweep.json or cbs.json (or "
                                     "their folder), instead of Kaplan's")

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
  return parser

"""The Markdown page of a sweep's report, from its fits.json document (scaling/laws/sweepfit.py).
Published constants come from scaling/laws/forms.py, in the units of the fitted ones."""

from __future__ import annotations

import math
from pathlib import Path

from scaling.laws import forms
from scaling.laws.results import fmt


def _interval(ci) -> str:
  ci = ci or (math.nan, math.nan)
  return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _rows(fits: dict) -> list[tuple]:
  """(law, constant, fitted, interval) for the table of constants. The frontier's C_c is fitted
  in FLOP; it is shown in PF-days, the unit of Kaplan's C_c (1 PF-day = 8.64e19 FLOP)."""
  rows = []
  for name, f in fits["L(N)"].items():
    if name != "points":
      rows += [(f"L({name})", k, v, f["intervals"].get(k)) for k, v in f["params"].items()]
  fr = fits["frontier"]
  for k in ("alpha_C", "C_c", "a", "b"):
    v, ci = fr["params"][k], fr["intervals"].get(k)
    if k == "C_c":   # (None when the frontier fit failed: shown as such)
      k, v = "C_c (PF-days)", v / forms.PF_DAY_FLOP if v is not None else None
      ci = [x / forms.PF_DAY_FLOP if x is not None else None for x in ci] if ci else None
    rows.append(("frontier", k, v, ci))
  for law in ("b_simple_law", "L(N,S)", "L(N,D)"):
    if law in fits:
      f = fits[law]
      label = "B_simple(L)" if law == "b_simple_law" else law
      rows += [(label, k, v, f["intervals"].get(k)) for k, v in f["params"].items()]
  return rows


def _constants_table(fits: dict) -> list[str]:
  lines = ["| law | constant | fitted | 95% interval | Kaplan 2020 | Chinchilla 2022 | "
           "depends on data/tokenizer |", "|---|---|---|---|---|---|---|"]
  chinchilla = {**forms.CHINCHILLA2022_ALLOCATION, "E": forms.CHINCHILLA2022["E"]}
  for law, k, v, ci in _rows(fits):
    key = k.split(" ")[0]
    dep = "yes" if key in forms.DATA_DEPENDENT else "no (exponent)"
    lines.append(f"| {law} | {k} | {fmt(v)} | {_interval(ci)} | "
                 f"{fmt(forms.kaplan_published(key))} | {fmt(chinchilla.get(key))} | {dep} |")
  return lines


def _extrapolation(fits: dict) -> list[str]:
  lines = []
  for name, f in fits["L(N)"].items():
    for e in (f.get("extrapolation", []) if name != "points" else []):
      if "measured_loss" in e:   # L(N) − H: the loss itself, H added back
        lines.append(f"- L(N) − H fitted without N = {fmt(e['N'])}: loss predicted "
                     f"{e['predicted_loss']:.4f}, measured {e['measured_loss']:.4f}, error "
                     f"{100 * e['rel_error_loss']:+.2f}% (in L − H: {100 * e['rel_error']:+.2f}%, "
                     f"{'inside' if e['inside_interval'] else 'outside'} its 95% interval "
                     f"{_interval(e['interval'])})")
        continue
      lines.append(f"- L({name}) fitted without N = {fmt(e['N'])}: predicted {e['predicted']:.4f}, "
                   f"measured {e['measured']:.4f}, error {100 * e['rel_error']:+.2f}% "
                   f"({'inside' if e['inside_interval'] else 'outside'} the 95% "
                   f"{e.get('interval_kind', 'interval')} {_interval(e['interval'])})")
  excess = fits["L(N)"].get("N-H")
  if excess:
    lines.append(f"- The corpus's exact entropy rate H = {excess['entropy_rate']:.4f} nats/token "
                 "(the generated corpus): the floor under every loss above; L(N) − H has rms log "
                 f"residual {excess['rms_log_residual']:.4f}")
  return lines


def _transfer(fits: dict) -> list[str]:
  lines = ["", "## Transfer to other distributions", "",
           "| held-out set | offset L_other − L_in | slope k in L_other = k·L_in + b | "
           "α_N on that set | α_N in distribution |", "|---|---|---|---|---|"]
  a_in = fits["L(N)"]["N"]["params"]["alpha_N"]
  for name, t in fits["transfer"].items():
    lines.append(f"| {name} | {t['offset']:.4f} {_interval(t['offset_interval'])} | "
                 f"{t['slope']:.3f} {_interval(t['slope_interval'])} | "
                 f"{t['alpha_N']:.4f} {_interval(t['alpha_N_interval'])} | {a_in:.4f} |")
  return lines + ["", "A constant offset (Kaplan 2020 §3.2.2) means the slope's interval "
                  "contains 1 and the per-set α_N matches the in-distribution one."]


def _shapes(sn: dict) -> list[str]:
  lines = ["", "## Shape at fixed N (Kaplan 2020 §3.1)", "",
           "Loss increase over the best shape of the set; in brackets the spread within the panel "
           "(largest minus smallest increase), which is what varying that factor alone does.", "",
           "| N set | runs | N range | best loss | largest increase, aspect ratio 16–128 | "
           "heads | d_ff/d_model |", "|---|---|---|---|---|---|---|"]
  for label, st in sn.get("panels", {}).items():
    def worst(f):
      pan = st["panels"].get(f)
      if not pan:
        return "–"
      inc = pan["increase_pct"]
      return f"{max(inc):.2f}% ({max(inc) - min(inc):.2f}%)"
    mid = st["max_increase_aspect_16_128_pct"]
    lines.append(f"| {label} | {st['n_runs']} | {fmt(st['N_range'][0])}–{fmt(st['N_range'][1])} | "
                 f"{st['best_loss']:.4f} | {'–' if mid is None else f'{mid:.2f}%'} | "
                 f"{worst('heads')} | {worst('ff')} |")
  col = sn.get("collapse")
  if col:
    ne, tot = col["non_embedding"], col["total"]
    lines += ["", "One power law fitted to every depth's runs: rms deviation "
              f"{ne['rms_pct']:.2f}% with N without embeddings (α = {ne['alpha']:.3f}) and "
              f"{tot['rms_pct']:.2f}% with N including them (α = {tot['alpha']:.3f}). Mean residual "
              "per depth (%), without / with embeddings: "
              + ", ".join(f"{d} layers {ne['depth_mean_resid_pct'][d]:+.2f} / "
                          f"{tot['depth_mean_resid_pct'][d]:+.2f}"
                          for d in ne["depth_mean_resid_pct"]) + ".",
              "Kaplan et al. report a few percent across a wide range of shapes and a collapse of "
              "the depth curves only without embeddings; the N spread within a set (table) moves "
              "the loss by about α_N·ln(N_max/N_min) as well."]
  return lines


def markdown(out: Path, doc: dict, figures: dict) -> str:
  fits, h = doc["fits"], doc["headline"]
  n_full = sum(r["full_data"] for r in doc["runs"])
  n_limited = len(doc["runs"]) - n_full
  fr = fits["frontier"]["params"]
  lines = [f"# Scaling-law report: `{out}`", "",
           f"{n_full} runs on the full training split"
           + (f", {n_limited} data-limited" if n_limited else "") +
           ". Loss: held-out cross-entropy in nats/token; N: non-embedding parameters (Kaplan); "
           "C = 6·N·tokens. Tiny models on a tiny corpus: the exponents are the part that may "
           "transfer; the scales (N_c, C_c, B*) belong to this corpus and tokenizer. Every number "
           f"below is read from fits.json ({doc['n_boot']} bootstrap resamples).", "",
           "## Headline", "",
           f"- α_N = {h['alpha_N']:.4f}, 95% interval {_interval(h['alpha_N_interval'])}",
           f"- largest model (N = {fmt(h['extrapolation_N'])}) predicted from the others: "
           f"relative error {100 * (h['extrapolation_rel_error'] or math.nan):+.2f}%",
           f"- online B_simple at the largest model's final loss ({fmt(h['final_loss_largest'])}): "
           f"{fmt(h['b_simple_at_final_loss_tokens'])} tokens", "",
           "## Fitted constants beside the published ones", ""]
  lines += _constants_table(fits)
  lines += ["", "## Kaplan's frontier (a contrast, not an allocation)", "",
            f"The envelope of these fixed-horizon learning curves gives N ∝ C^{fr['a']:.3f} "
            f"(Kaplan 2020: 0.73). It is set by the ladder's design — every model trained on the "
            "same tokens with a schedule for that horizon (Hoffmann 2022 §3.1, app. A) — not by "
            "the data; for how big and how long, run an isoFLOP sweep (`scaling quickstart`, "
            "configs/isoflop_cpu.py), whose report gives approaches 1–3 and a held-out check.", "",
            "## Extrapolation check", ""] + _extrapolation(fits)
  if "transfer" in fits:
    lines += _transfer(fits)
  if fits.get("shapes"):
    lines += _shapes(fits["shapes"])
  lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()]
  return "\n".join(lines) + "\n"


"""Half-finished sweeps: every stage accepts what the previous one can leave. An isoFLOP sweep
with points missing (never trained, or in progress: metrics but no summary) is fitted and
reported from what is there, with warnings; where nothing can be fitted, a one-line error."""


import pytest

from conftest import fake_run
from scaling.cli import main as cli_main

pytestmark = pytest.mark.faults

BUDGETS = (1e12, 3e12, 1e13)
HELD = 3e13
SIZES = (1e4, 2e4, 4e4, 8e4, 1.6e5)


def _loss(n, d):   # a Chinchilla-form truth (Hoffmann 2022, arXiv 2203.15556, eq. 2)
  return 1.7 + 400 / n ** 0.34 + 410 / d ** 0.28


def _point(folder, c, n, missing):
  name = f"C{c:.2e}-N{n:.0e}"
  path = folder / ("heldout" if c == HELD else "") / name
  d = c / (6 * n)
  steps = max(int(round(d / 2048)), 1)
  if name in missing:          # in progress: metrics, no summary
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text('{"step": 1, "tokens": 2048, "loss": 5.0}\n')
    return
  fake_run(path, n, _loss(n, d), steps=steps, budget_flop=c, flop_convention="kaplan",
           epochs=d / 1e8, schedule="wsd")


def _sweep(folder, keep):
  """The full sweep's points, those for which keep(c, n) is False left in progress."""
  missing = set()
  for c in (*BUDGETS, HELD):
    sizes = SIZES if c != HELD else (4e4, 8e4, 1.6e5)
    for n in sizes:
      if not keep(c, n):
        missing.add(f"C{c:.2e}-N{n:.0e}")
      _point(folder, c, n, missing)
  return folder


MEMBERS = {   # what is finished → "ok" (report written) or the one-line error expected
    "whole": (lambda c, n: True, "ok"),
    "five points missing across budgets": (
        lambda c, n: (c, n) not in {(1e12, 1e4), (3e12, 2e4), (3e12, 1.6e5), (1e13, 4e4),
                                    (1e13, 8e4)}, "ok"),
    "the largest budget down to two sizes": (lambda c, n: c != 1e13 or n in (1e4, 2e4), "ok"),
    "one budget only": (lambda c, n: c in (1e12, HELD), "ok"),
    "no held-out run finished": (lambda c, n: c != HELD, "ok"),
    "one held-out run finished": (lambda c, n: c != HELD or n == 8e4, "ok"),
    "one point per budget": (lambda c, n: n == 4e4, "fewer than 2 model sizes"),
    "only held-out runs": (lambda c, n: c == HELD, "no finished isoFLOP run outside heldout"),
}


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_report_on_a_half_finished_isoflop_sweep(member, tmp_path, capsys):
  keep, expect = MEMBERS[member]
  sweep = _sweep(tmp_path / "sweep", keep)
  capsys.readouterr()
  rc = cli_main(["report", str(sweep), "--bootstrap", "20"])
  cap = capsys.readouterr()
  assert "Traceback" not in cap.err
  if expect == "ok":
    assert rc == 0, cap.err
    text = (sweep / "report.md").read_text()
    assert "nan" not in text.split() and "None" not in text
  else:
    err = cap.err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expect in err, err

"""CSVs of runs as users have them (scaling/laws/csvtable.py): each header problem is a one-line
error naming it, or read correctly and said so; the fitted law matches the plain CSV's."""

import json

import pytest

from scaling.cli import main as cli_main

N = [1e5, 3e5, 1e6, 3e6, 1e7]
LOSS = [(1e13 / n) ** 0.076 for n in N]     # Kaplan's L(N) form, α_N = 0.076 exactly


def _rows(sep=",", fmt=lambda v: repr(v)):
  return "".join(f"{fmt(n)}{sep}{fmt(l)}\n" for n, l in zip(N, LOSS))


READ_RIGHT = {   # content → a note the reader must print
    "plain": (b"N,loss\n" + _rows().encode(), "columns used: N as N, loss as loss"),
    "UTF-8 byte-order mark": (b"\xef\xbb\xbfN,loss\n" + _rows().encode(), "columns used: N as N"),
    "semicolons": (("N;loss\n" + _rows(";")).encode(), "';'-separated"),
    "semicolons and decimal commas": (
        ("N;loss\n" + _rows(";", lambda v: repr(v).replace(".", ","))).encode(),
        "decimal commas read as decimal points"),
    "tabs": (("params\tloss\n" + _rows("\t")).encode(), "tab-separated"),
    "other names and units": (("Params (M),Val Loss [nats]\n" + "".join(
        f"{n / 1e6!r},{l!r}\n" for n, l in zip(N, LOSS))).encode(), "multiplied by 1e+06"),
    "extra columns": (("N,loss,lr,notes\n" + "".join(f"{n!r},{l!r},0.001,x\n"
                                                     for n, l in zip(N, LOSS))).encode(),
                      "columns ignored: lr, notes"),
}

REFUSED = {      # content → the words of the one-line error
    "duplicate column": (b"N,loss,loss\n" + b"".join(f"{n},{l},{l}\n".encode()
                                                     for n, l in zip(N, LOSS)), "twice"),
    "same column in two cases": (b"N,n,loss\n" + b"".join(f"{n},{n},{l}\n".encode()
                                                          for n, l in zip(N, LOSS)), "twice"),
    "two names for one quantity": (b"N,params,loss\n" + b"".join(
        f"{n},{n},{l}\n".encode() for n, l in zip(N, LOSS)), "both give N"),
    "decimal commas with comma separators": (
        ("N,loss\n" + "".join(f"{n:.0f},{str(l).replace('.', ',')}\n"
                              for n, l in zip(N, LOSS))).encode(), "decimal commas"),
    "UTF-16": (("N,loss\n" + _rows()).encode("utf-16"), "UTF-16"),
    "empty column name": (b"N,,loss\n" + b"".join(f"{n},1,{l}\n".encode()
                                                   for n, l in zip(N, LOSS)), "empty column name"),
    "a text value": (b"N,loss\n" + _rows().encode() + b"1e8,n/a\n", "holds 'n/a', not a number"),
    "several experiments": (b"experiment,N,loss\n" + b"".join(
        f"e{i % 2},{n},{l}\n".encode() for i, (n, l) in enumerate(zip(N, LOSS))),
        "holds 2 experiments"),
    "unknown unit": (b"N (furlongs),loss\n" + _rows().encode(), "unit 'furlongs'"),
    "no loss column": (b"N,perplexity\n" + _rows().encode(), "no loss column"),
    "one column": (b"N loss\n1 2\n", "one column only"),
}


@pytest.mark.parametrize("case", sorted(READ_RIGHT))
def test_csv_shapes_read_right(case, tmp_path, capsys):
  content, note = READ_RIGHT[case]
  path = tmp_path / "runs.csv"
  path.write_bytes(content)
  assert cli_main(["fit", str(path), "--law", "N", "--bootstrap", "10"]) == 0
  out = capsys.readouterr().out
  assert note in out, out
  fit = json.loads(path.with_suffix(".fit.json").read_text())
  assert fit["fits"][0]["params"]["alpha_N"] == pytest.approx(0.076, rel=1e-6)
  assert note in " ".join(fit["input"])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_csv_header_problems_are_named(case, tmp_path, capsys):
  content, words = REFUSED[case]
  path = tmp_path / "runs.csv"
  path.write_bytes(content)
  capsys.readouterr()
  assert cli_main(["fit", str(path), "--law", "N", "--bootstrap", "10"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
  assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def test_dropped_resamples_are_counted(tmp_path, capsys):
  """Five points and a four-constant law: resamples with too few distinct points give no fit;
  the output says how many of those requested were dropped, and the fit file keeps both."""
  path = tmp_path / "runs.csv"
  path.write_bytes(READ_RIGHT["plain"][0])
  assert cli_main(["fit", str(path), "--law", "N+E", "--bootstrap", "50"]) == 0
  out = capsys.readouterr().out
  fit = json.loads(path.with_suffix(".fit.json").read_text())["fits"][0]
  assert fit["n_boot_requested"] == 50 and 0 < fit["n_boot"] < 50
  assert f"{50 - fit['n_boot']} of 50 bootstrap resamples gave no fit" in out

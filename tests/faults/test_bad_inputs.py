"""Bad inputs: each is a one-line error with a non-zero exit, and every earlier result stays
byte-identical (a finished run, its cache, a CSV of runs)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from scaling.cli import main as cli_main

pytestmark = pytest.mark.faults


def _files(folder: Path) -> dict:
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(witness, *args):
  return ["train", "--config", str(REPO / "configs/test_small.py"),
          f"--config.run_dir={witness / 'run'}",
          f"--config.data.cache_dir={witness / 'cache'}", *args]


def _corpus(witness, name, content: bytes):
  path = witness.parent / f"corpus-{name}"
  path.write_bytes(content)
  return f"--config.data.source={path}"


def _csv(witness, name, rows):
  path = witness.parent / f"{name}.csv"
  path.write_text("N,loss\n" + "".join(f"{a},{b}\n" for a, b in rows))
  return str(path)


_STORY = b"Once upon a time a cat sat on the mat.\n\n" * 2   # 80 bytes

CASES = {
    "wrong type": (lambda w: _train(w, "--config.train.steps=abc"), "config field 'train.steps'"),
    "negative width": (lambda w: _train(w, "--config.model.d_model=-8"), "positive integer"),
    "zero depth": (lambda w: _train(w, "--config.model.n_layer=0"), "positive integer"),
    "zero batch": (lambda w: _train(w, "--config.train.batch_size=0"),
                   "train.batch_size must be a positive integer"),
    "zero checkpoint interval": (lambda w: _train(w, "--config.checkpoint.every=0"),
                                 "checkpoint.every must be a positive integer"),
    "no checkpoint kept": (lambda w: _train(w, "--config.checkpoint.keep=0"),
                           "checkpoint.keep must be at least 1"),
    "negative seed": (lambda w: _train(w, "--config.seed=-1"), "seed must be a non-negative"),
    "zero eval batch": (lambda w: _train(w, "--config.eval.batch_size=0"),
                        "eval.batch_size must be a positive integer"),
    "negative device count": (lambda w: _train(w, "--config.mesh.num_devices=-1"),
                              "mesh.num_devices must be a non-negative"),
    "heads do not divide d_model": (lambda w: _train(w, "--config.model.d_model=30",
                                                     "--config.model.n_heads=4"), "not divisible"),
    "empty corpus": (lambda w: _train(w, _corpus(w, "empty", b"")), "empty"),
    "binary corpus": (lambda w: _train(w, _corpus(w, "bin", bytes(range(256)) * 40)), "binary"),
    # Read whole: a problem far past the start is found, and an encoding is named as such.
    "NUL byte past the first blocks": (lambda w: _train(w, _corpus(
        w, "latenul", _STORY * 4000 + b"\x00" + _STORY)), "NUL byte at byte 320,000"),
    "Latin-1 past the first blocks": (lambda w: _train(w, _corpus(
        w, "latelatin", _STORY * 4000 + "café".encode("latin-1"))), "not UTF-8 text"),
    "UTF-16 with a byte-order mark": (lambda w: _train(w, _corpus(
        w, "u16", (_STORY * 50).decode().encode("utf-16"))), "is UTF-16 text (byte-order mark)"),
    "UTF-16 without a byte-order mark": (lambda w: _train(w, _corpus(
        w, "u16le", (_STORY * 50).decode().encode("utf-16-le"))), "looks like UTF-16"),
    "JSONL with Latin-1 on its last line": (lambda w: _train(w, _corpus(
        w, "late.jsonl", b'{"text": "a story"}\n' * 3000 + '{"text": "café"}\n'.encode("latin-1"))),
        "late.jsonl:3001 is not UTF-8"),
    "one giant line": (lambda w: _train(w, _corpus(w, "line", b"the cat sat. " * 200_000)),
                       "at least 2"),
    "whitespace-free run": (lambda w: _train(w, _corpus(
        w, "run", b"a story.\n\n" + b"x" * 50_000 + b"\n\nanother story.")), "without whitespace"),
    "fit with NaN": (lambda w: ["fit", _csv(w, "nan", [(1e5, 3.0), (1e6, float("nan")),
                                                        (1e7, 2.5), (1e8, 2.3)])],
                     "positive and finite"),
    "fit with a negative N": (lambda w: ["fit", _csv(w, "neg", [(1e5, 3.0), (-1e6, 2.8),
                                                               (1e7, 2.5), (1e8, 2.3)])],
                              "positive and finite"),
    "fit with a duplicate row": (lambda w: ["fit", _csv(w, "dup", [(1e5, 3.0), (1e6, 2.8),
                                                                  (1e6, 2.8), (1e7, 2.5)])],
                                 "identical"),
    "fit on too few points": (lambda w: ["fit", "--law", "N", _csv(w, "few", [(1e5, 3.0),
                                                                             (1e6, 2.8)])],
                              "too few"),
    "tokenizer file that is not one": (lambda w: _train(w, _corpus(w, "tok", b'{"not": 1}')
                                                        .replace("data.source", "data.tokenizer"),
                                                        "--config.data.source=builtin:python-docs"),
                                       "not a tokenizers JSON file"),
    "tokenizer for the generated corpus": (lambda w: _train(w, _corpus(w, "tok2", b'{}')
                                                            .replace("data.source",
                                                                     "data.tokenizer")),
                                           "its symbols are the tokens"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_loses_nothing(case, witness, capsys):
  make_args, message = CASES[case]
  before = _files(witness)
  args = make_args(witness)
  before = {k: v for k, v in before.items()}
  capsys.readouterr()
  rc = cli_main(args)
  err = capsys.readouterr().err.strip()
  assert rc == 2, err
  assert len(err.splitlines()) == 1 and message in err, err
  after = _files(witness)
  assert {k: v for k, v in after.items() if k in before} == before   # nothing earlier changed
  assert not any(str(k).startswith("run/") for k in set(after) - set(before))


def test_token_store_that_does_not_match_its_tokenizer(tmp_path, witness, capsys):
  cache = tmp_path / "cache"
  shutil.copytree(witness / "cache", cache)
  stores = list((cache / "stores").iterdir())
  assert len(stores) == 1
  args = ["train", "--config", str(REPO / "configs/test_small.py"),
          f"--config.run_dir={tmp_path / 'r'}", f"--config.data.cache_dir={cache}"]
  train_bin = stores[0] / "train-00000.bin"
  good = train_bin.read_bytes()
  # ids from a bigger vocabulary than this tokenizer's 300
  tokens = np.frombuffer(good, np.uint16).copy()
  tokens[::1000] = 4000
  train_bin.write_bytes(tokens.tobytes())
  capsys.readouterr()
  assert cli_main(args) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "does not match the tokenizer" in err
  train_bin.write_bytes(good[: len(good) // 2])            # truncated
  assert cli_main(args) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "truncated" in err
  assert not (tmp_path / "r").exists()

"""Reliability II: the four classes of failure, each a test over several of its members.

Every member runs the real command line (in-process, or a subprocess where a second process or a
file-size cap is the point) against a finished witness run, and checks how it ends: exit 2 with
one line and no traceback (or the documented behaviour), and every earlier file byte-identical.
"""

import errno
import json
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, fake_run, read_metrics
from scaling.cli import main as cli_main
from scaling.train import rundir, runlock

pytestmark = pytest.mark.faults
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _files(folder: Path) -> dict:
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train_args(run: Path, cache: Path, *extra) -> list[str]:
  return ["train", "--config", str(REPO / "configs/test_small.py"), f"--config.run_dir={run}",
          f"--config.data.cache_dir={cache}", "--config.train.steps=10", *extra]


def _earlier_unchanged(before: dict, folder: Path) -> bool:
  """Every file that existed before is byte-identical (caches may gain entries)."""
  after = _files(folder)
  return {k: after.get(k) for k in before} == before


def _copy_run(witness: Path, tmp_path: Path) -> Path:
  run = tmp_path / "run"
  shutil.copytree(witness / "run", run)
  return run


def _one_line_error(capsys, args, expect: str) -> str:
  capsys.readouterr()
  rc = cli_main(args)
  cap = capsys.readouterr()
  err = cap.err.strip()
  assert rc == 2, (cap.out[-2000:], err)
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert expect in err, err
  assert "np.float64" not in err, err
  return err


# ---------------------------------------------------------------------------------------------
# 1. Data loss: nothing finished is rewritten, nothing half-written is left, no silent restart.


def _rerun_finished(w, tmp, capsys):
  run = _copy_run(w, tmp)
  before = _files(run)
  capsys.readouterr()
  assert cli_main(_train_args(run, w / "cache")) == 0
  assert "is finished (10 steps" in capsys.readouterr().out and _files(run) == before


def _finished_with_changed_lr(w, tmp, capsys):
  run = _copy_run(w, tmp)
  before = _files(run)
  capsys.readouterr()
  assert cli_main(_train_args(run, w / "cache", "--config.train.peak_lr=1e-4")) == 0
  out = capsys.readouterr().out
  assert "changed train.peak_lr ignored, as a finished run is not trained again" in out, out
  assert _files(run) == before                     # summary still says what it trained with


def _finished_without_checkpoints(w, tmp, capsys):
  run = _copy_run(w, tmp)
  shutil.rmtree(run / "checkpoints")
  before = _files(run)
  assert cli_main(_train_args(run, w / "cache")) == 0
  assert _files(run) == before and [r["step"] for r in read_metrics(run)] == list(range(1, 11))


def _progress_without_checkpoints(w, tmp, capsys):
  run = _copy_run(w, tmp)
  shutil.rmtree(run / "checkpoints")
  (run / "summary.json").unlink()
  before = _files(run)
  _one_line_error(capsys, _train_args(run, w / "cache"), "holds 10 logged steps but no checkpoint")
  assert _files(run) == before
  # --overwrite moves it aside and starts again; nothing is deleted.
  assert cli_main(_train_args(run, w / "cache", "--overwrite")) == 0
  aside = [p for p in tmp.iterdir() if p.name.startswith("run.old-")]
  assert len(aside) == 1 and _files(aside[0]) == before


def _checkpoints_replaced_by_a_file(w, tmp, capsys):
  run = _copy_run(w, tmp)
  shutil.rmtree(run / "checkpoints")
  (run / "summary.json").unlink()
  (run / "checkpoints").write_text("not a folder")
  before = _files(run)
  t0 = time.time()
  _one_line_error(capsys, _train_args(run, w / "cache"), "checkpoints is not a folder")
  assert time.time() - t0 < 30 and _files(run) == before


def _lock_held_by_a_live_process(w, tmp, capsys):
  run = _copy_run(w, tmp)
  (run / "summary.json").unlink()
  before = _files(run)
  holder = subprocess.Popen(["sleep", "60"])
  try:
    owner = {**runlock.identity(), "pid": holder.pid, "start": runlock._start_ticks(holder.pid)}
    runlock.lock_path(run).write_text(json.dumps(owner))
    _one_line_error(capsys, _train_args(run, w / "cache"), f"another process (pid {holder.pid} on ")
  finally:
    holder.kill()
    holder.wait()
  assert _files(run) == before


def _torn_last_metrics_line(w, tmp, capsys):
  run = _copy_run(w, tmp)
  (run / "summary.json").unlink()
  with open(run / rundir.METRICS, "a") as f:
    f.write('{"step": 11, "loss"')                 # a killed process's partial write
  assert cli_main(_train_args(run, w / "cache", "--config.train.steps=15")) != 0  # steps differ
  assert cli_main(_train_args(run, w / "cache", "--overwrite")) == 0
  steps = [json.loads(line)["step"] for line in (run / rundir.METRICS).read_text().splitlines()]
  assert steps == list(range(1, 11))


def _result_file_on_a_full_disk(w, tmp, capsys, monkeypatch=None):
  out = tmp / "fit.json"
  out.write_text("the previous fit")
  real = os.replace

  def full(src, dst):
    if str(dst) == str(out):
      raise OSError(errno.ENOSPC, "No space left on device")
    return real(src, dst)

  mp = pytest.MonkeyPatch()
  mp.setattr("scaling.files.os.replace", full)
  try:
    _one_line_error(capsys, ["fit", str(w / "good.csv"), "--bootstrap", "20", "--out", str(out)],
                    "no space left on the device")
  finally:
    mp.undo()
  assert out.read_text() == "the previous fit" and [p.name for p in tmp.iterdir()] == ["fit.json"]


def _members(*functions) -> dict:
  return {f.__name__.strip("_"): f for f in functions}


def _run_member(member, witness, tmp_path, capsys):
  """A member of a class: its own checks, then the witness's earlier files byte-identical."""
  before = _files(witness)
  member(witness, tmp_path, capsys)
  assert _earlier_unchanged(before, witness)


DATA_LOSS = _members(
    _rerun_finished, _finished_with_changed_lr, _finished_without_checkpoints,
    _progress_without_checkpoints, _checkpoints_replaced_by_a_file, _lock_held_by_a_live_process,
    _torn_last_metrics_line, _result_file_on_a_full_disk)


@pytest.mark.parametrize("member", sorted(DATA_LOSS))
def test_data_loss_class(member, witness, tmp_path, capsys):
  _run_member(DATA_LOSS[member], witness, tmp_path, capsys)


def test_second_trainer_on_one_run_dir_is_refused_at_once(tmp_path):
  run = tmp_path / "run"
  cmd = [sys.executable, "-m", "scaling.cli", *_train_args(run, tmp_path / "cache")[:-1],
         "--config.train.steps=100000", "--config.checkpoint.every=1000"]
  first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 240   # the lock is taken once the config is validated
    while not runlock.lock_path(run).is_file() and time.time() < deadline:
      assert first.poll() is None
      time.sleep(0.2)
    t0 = time.time()
    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and time.time() - t0 < 30
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1 and f"another process (pid {first.pid} on " in err, err
    while not (run / rundir.METRICS).is_file() and time.time() < deadline:
      assert first.poll() is None                  # the first one trains on
      time.sleep(0.2)
  finally:
    first.kill()
    first.wait()
  steps = [r["step"] for r in read_metrics(run)]
  assert steps == list(range(1, len(steps) + 1))   # one writer: no duplicated or reset steps


@pytest.mark.slow   # 40 s
def test_full_disk_while_appending_metrics_keeps_its_verdict_and_resumes(tmp_path):
  """A 24 KiB file-size cap (ulimit -f) fills on metrics.jsonl before any checkpoint is due."""
  run = tmp_path / "run"
  args = [*_train_args(run, tmp_path / "cache")[:-1], "--config.train.steps=80",
          "--config.checkpoint.every=1000", "--config.eval.every=1000",
          "--config.compilation_cache=false"]
  # The token store is written first, without the cap (it is larger than the cap).
  assert cli_main(["tokenize", "--config", str(REPO / "configs/test_small.py"),
                   f"--config.data.cache_dir={tmp_path / 'cache'}"]) == 0
  capped = ["bash", "-c", 'ulimit -f 24 && exec "$@"', "bash", sys.executable, "-m",
            "scaling.cli", *args]
  r = subprocess.run(capped, env=ENV, capture_output=True, text=True, timeout=300)
  err = r.stderr.strip()
  assert r.returncode == 2 and "Traceback" not in err, err[-2000:]
  assert err.splitlines()[-1].startswith("error: no space left writing") and "metrics" in err
  # The rerun drops the torn line; no checkpoint was due, so it starts again from step 0.
  r = subprocess.run([sys.executable, "-m", "scaling.cli", *args], env=ENV, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert [m["step"] for m in read_metrics(run)] == list(range(1, 81))


# ---------------------------------------------------------------------------------------------
# 2. Wrong results in silence: inputs that used to give a number now give a reason.


def _mixed_runs(w, tmp, capsys):
  """The witness beside a real run with another tokenizer, and beside a copy of itself that
  records another context length."""
  src = tmp / "src"
  shutil.copytree(w / "run", src / "v300", ignore=shutil.ignore_patterns("checkpoints", "best"))
  corpus = tmp / "other.txt"        # a small corpus: its own tokenizer, trained in a second
  corpus.write_text("\n\n".join(f"a dog called {i} barked at {i * 7} birds." for i in range(400)))
  assert cli_main(_train_args(src / "v400", tmp / "cache", "--config.train.steps=4",
                              f"--config.data.source={corpus}")) == 0
  shutil.copytree(src / "v300", src / "ctx8")
  summary = json.loads((src / "ctx8" / "summary.json").read_text())
  (src / "ctx8" / "summary.json").write_text(json.dumps({**summary, "n_ctx": 8}))
  folder = tmp / "sweep"
  for pair, what in ((("v300", "v400"), "differ in tokenizer"),
                     (("v300", "ctx8"), "differ in context length")):
    shutil.rmtree(folder, ignore_errors=True)
    for name in pair:
      shutil.copytree(src / name, folder / name)
    _one_line_error(capsys, ["fit", str(folder)], what)
    _one_line_error(capsys, ["fit", str(folder), "--law", "N"], what)
    _one_line_error(capsys, ["report", str(folder)], what)
    assert not (folder / "fits.json").exists() and not (folder / "fit.json").exists()


def _nonsense_calculator_inputs(w, tmp, capsys):
  for args in (["plan", "--N=-1e6", "--penalty", "2"], ["predict", "--preset", "kaplan2020",
               "--N", "nan"], ["predict", "--preset", "chinchilla2022", "--N", "inf", "--D",
               "1e9"], ["predict", "--preset", "kaplan2020", "--C", "0"],
               ["predict", "--preset", "kaplan2020", "--loss", "0"],
               ["plan", "--N", "1e8", "--D", "1e9", "--batch", "0", "--steps", "100"],
               ["plan", "--N", "1e8", "--penalty", "-3"]):
    _one_line_error(capsys, args, "expected a positive finite number")
  _one_line_error(capsys, ["predict", "--preset", "chinchilla2022", "--loss", "1.5"],
                  "at or below the irreducible loss")
  for bad in ("5", "1", "-0.1"):
    _one_line_error(capsys, ["fit", str(w / "good.csv"), "--budget-tolerance", bad],
                    "expected a fraction in [0, 1)")


def _jsonl_text_not_a_string(w, tmp, capsys):
  good = json.dumps({"text": "Once upon a time a cat sat on a mat. " * 30})
  for bad, kind in (({"text": None}, "null"), ({"text": [1, 2, 3]}, "a list"),
                    ({"text": 7}, "a int")):
    path = tmp / "c.jsonl"
    path.write_text("\n".join([good] * 50 + [json.dumps(bad)]) + "\n")
    _one_line_error(capsys, _train_args(tmp / "r", w / "cache", f"--config.data.source={path}"),
                    f"c.jsonl:51: the field 'text' is {kind}, not a string")
    assert not (tmp / "r").exists()


def _vocabulary_smaller_than_asked(w, tmp, capsys):
  corpus = tmp / "small.txt"
  corpus.write_text("\n\n".join(f"the cat number {i} sat on the mat and ran off." for i in range(60)))
  capsys.readouterr()
  assert cli_main(["tokenize", "--config", str(REPO / "configs/test_small.py"), "--out",
                   str(tmp / "store"), f"--config.data.source={corpus}",
                   f"--config.data.cache_dir={tmp / 'cache'}",
                   "--config.data.vocab_size=5000"]) == 0
  out = capsys.readouterr().out
  meta = json.loads((tmp / "store" / "meta.json").read_text())
  assert meta["vocab_size_requested"] == 5000 and meta["n_vocab"] < 1000
  assert f"data.vocab_size=5,000 was asked, but this corpus's training text gives only " \
         f"{meta['n_vocab']:,} tokens" in out, out


def _fit_on_three_points(w, tmp, capsys):
  csv = tmp / "three.csv"
  csv.write_text("N,loss\n" + "".join(f"{x},{(1e13 / x) ** 0.076}\n" for x in (1e5, 1e6, 1e7)))
  capsys.readouterr()
  assert cli_main(["fit", str(csv), "--bootstrap", "10"]) == 0   # N+E chosen, cannot be fitted
  doc = json.loads(csv.with_suffix(".fit.json").read_text())
  assert [f["law"] for f in doc["fits"]] == ["N"] and doc["not_fitted"][0].startswith("N+E:")
  assert doc["fits"][0]["params"]["alpha_N"] == pytest.approx(0.076, rel=1e-3)
  # Asked for by name, the law that cannot be fitted is an error after the others are written.
  _one_line_error(capsys, ["fit", str(csv), "--law", "N", "--law", "N+E", "--bootstrap", "10"],
                  "the other laws are in")


SILENT = _members(_mixed_runs, _nonsense_calculator_inputs, _jsonl_text_not_a_string,
                  _vocabulary_smaller_than_asked, _fit_on_three_points)


@pytest.mark.parametrize("member", sorted(SILENT))
def test_wrong_results_in_silence_class(member, witness, tmp_path, capsys):
  _run_member(SILENT[member], witness, tmp_path, capsys)


# ---------------------------------------------------------------------------------------------
# 3. Tracebacks where a one-line error belongs.


def _config(tmp, text: str) -> str:
  path = tmp / "cfg.py"
  path.write_text(text)
  return str(path)


def _corrupt_cache(w, tmp, pattern: str) -> Path:
  cache = tmp / "cache"
  shutil.copytree(w / "cache", cache)
  hits = list(cache.glob(pattern))
  assert hits
  for p in hits:
    p.write_text("{damaged")
  return cache


def _damaged_tokenizer_cache(tmp) -> Path:
  """A cache holding the BPE of a text corpus (Python's documentation), then damaged."""
  from scaling.config.spec import data_spec
  from scaling.data.tokenize import build_store
  cache = tmp / "cache"
  build_store(data_spec(source="builtin:python-docs", vocab_size=300, cache_dir=str(cache)),
              verbose=False)
  hits = list(cache.glob("tokenizers/*.json"))
  assert hits
  for p in hits:
    p.write_text("{damaged")
  return cache


def _bad_xz(tmp) -> str:
  path = tmp / "c.jsonl.xz"
  whole = lzma.compress("".join(json.dumps({"text": f"story {i} of a cat {i * i}"}) + "\n"
                               for i in range(2000)).encode())
  path.write_bytes(whole[:len(whole) // 2])        # cut short, as by an interrupted download
  return f"--config.data.source={path}"


TRACEBACKS = {
    "config with a syntax error": (lambda w, t: ["train", "--config", _config(
        t, "def get_config(:\n")], "syntax error at line 1"),
    "config that raises": (lambda w, t: ["train", "--config", _config(
        t, "def get_config():\n  raise RuntimeError('boom')\n")], "RuntimeError: boom (line 2"),
    "config importing a missing module": (lambda w, t: ["train", "--config", _config(
        t, "import no_such_module_xyz\n")], "imports something not installed"),
    "config returning a dict": (lambda w, t: ["sweep", "--config", _config(
        t, "def get_config():\n  return {'model': 1}\n")], "returned a dict, not an"),
    "damaged token store meta.json": (lambda w, t: _train_args(
        t / "r", _corrupt_cache(w, t, "stores/*/meta.json")), "meta.json cannot be read"),
    "damaged cached tokenizer": (lambda w, t: _train_args(
        t / "r", _damaged_tokenizer_cache(t), "--config.data.source=builtin:python-docs"),
        "the cached tokenizer"),
    "damaged run config.json": (lambda w, t: _train_args(
        _damaged_config(w, t), w / "cache"), "cannot read"),
    "truncated .jsonl.xz corpus": (lambda w, t: _train_args(t / "r", w / "cache", _bad_xz(t)),
                                   "is not a complete xz file"),
    "preset that is a list": (lambda w, t: ["predict", "--preset", _json(t, [1, 2]), "--N", "1e8"],
                              "holds no N, D, ND, chinchilla or isoflop fit"),
    "preset without parameters": (lambda w, t: ["predict", "--preset", _json(
        t, {"fits": [{"law": "N"}]}), "--N", "1e8"], "holds no N, D, ND, chinchilla or isoflop fit"),
    "damaged preset": (lambda w, t: ["predict", "--preset", _json(t, None), "--N", "1e8"],
                       "cannot read the fit file"),
    "bench with zero steps": (lambda w, t: ["bench", "--steps", "0"],
                              "argument --steps: expected a positive integer"),
    "fit --out into a missing folder": (lambda w, t: ["fit", str(w / "good.csv"), "--out",
                                                      str(t / "no" / "fit.json")],
                                        "does not exist"),
    "unreachable coordinator": (lambda w, t: _train_args(
        t / "r", w / "cache", "--config.distributed.enabled=true",
        "--config.distributed.coordinator_address=127.0.0.1:1",
        "--config.distributed.num_processes=2", "--config.distributed.process_id=1",
        "--config.distributed.timeout_s=2"), "cannot reach the coordinator at 127.0.0.1:1"),
}


def _damaged_config(w, t) -> Path:
  run = _copy_run(w, t)
  (run / "config.json").write_text("{damaged")
  return run


def _json(t, doc) -> str:
  path = t / "preset.json"
  path.write_text("{damaged" if doc is None else json.dumps(doc))
  return str(path)


@pytest.mark.parametrize("member", sorted(TRACEBACKS))
def test_traceback_class(member, witness, tmp_path, capsys):
  before = _files(witness)
  make_args, expect = TRACEBACKS[member]
  args = make_args(witness, tmp_path)
  snapshot = _files(tmp_path)
  t0 = time.time()
  _one_line_error(capsys, args, expect)
  assert time.time() - t0 < 60
  assert _files(tmp_path) == snapshot and _earlier_unchanged(before, witness)
  assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# 4. Unclear messages: each says what is wrong and what to do.


MESSAGES = {
    "a folder given as the config": (lambda w, t: ["train", "--config", str(REPO / "configs")],
                                     "is a folder; give a config file"),
    "a negative --holdout": (lambda w, t: ["fit", str(w / "good.csv"), "--holdout", "-1"],
                             "argument --holdout: expected a non-negative integer"),
    "a negative number without '='": (lambda w, t: ["plan", "--N", "-1e6"],
                                      "is written --OPTION=VALUE"),
    "a NaN in a fit's input": (lambda w, t: ["fit", _nan_csv(t)], "point 1 has loss=nan"),
    "a huge learning rate": (lambda w, t: _train_args(t / "r", w / "cache",
                                                      "--config.train.peak_lr=1e30"),
                             "Kaplan's LR(N) for this size; 1e+30 is far above it"),
}


def _nan_csv(t) -> str:
  path = t / "nan.csv"
  path.write_text("N,loss\n1e5,3.0\n1e6,nan\n1e7,2.5\n1e8,2.3\n")
  return str(path)


@pytest.mark.parametrize("member", sorted(MESSAGES))
def test_unclear_message_class(member, witness, tmp_path, capsys):
  before = _files(witness)
  make_args, expect = MESSAGES[member]
  err = _one_line_error(capsys, make_args(witness, tmp_path), expect)
  assert "inf" not in err.split("peak_lr=")[-1][:12]   # never suggests an infinite LR
  assert _earlier_unchanged(before, witness)


# Read-only folders: chmod does not stop root, so these run only as another user (and a write
# refused by the file system, EROFS, is simulated below for everyone).
READ_ONLY = {
    "train": lambda w, ro: _train_args(ro / "run", w / "cache"),
    "sweep": lambda w, ro: ["sweep", "--config", str(REPO / "configs/test_ladder.py"),
                            f"--config.run_dir={ro / 'sweep'}",
                            f"--config.data.cache_dir={w / 'cache'}"],
    "fit": lambda w, ro: ["fit", str(ro / "good.csv"), "--bootstrap", "10"],
    "report": lambda w, ro: ["report", str(ro / "sweep"), "--bootstrap", "10"],
}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("member", sorted(READ_ONLY))
def test_read_only_folders(member, witness, tmp_path, capsys):
  ro = tmp_path / "ro"
  ro.mkdir()
  shutil.copy(witness / "good.csv", ro / "good.csv")
  for i, n in enumerate((1e3, 1e4, 1e5, 1e6)):   # a finished sweep for report (synthetic runs)
    fake_run(ro / "sweep" / f"m{i}", int(n), float((3e8 / n) ** 0.1), steps=100,
             final_eval_losses={})
  for p in [ro, *ro.rglob("*")]:
    if p.is_dir():
      p.chmod(0o555)
  before = _files(ro)
  try:
    err = _one_line_error(capsys, READ_ONLY[member](witness, ro), "")
    assert any(w in err for w in ("permission denied", "read-only", "cannot write")), err
  finally:
    for p in [ro, *ro.rglob("*")]:
      if p.is_dir():
        p.chmod(0o755)
  assert _files(ro) == before


def test_read_only_file_system_for_fit_results(witness, tmp_path, capsys, monkeypatch):
  csv = tmp_path / "good.csv"
  shutil.copy(witness / "good.csv", csv)

  def refused(*a, **k):
    raise OSError(errno.EROFS, "Read-only file system")

  monkeypatch.setattr("scaling.files.tempfile.mkstemp", refused)
  _one_line_error(capsys, ["fit", str(csv), "--bootstrap", "10"],
                  f"cannot write {tmp_path / 'good.fit.json'}: read-only file system")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv"]

"""Test setup: 8 forced CPU devices (before JAX is imported) and a per-session cache."""

import json
import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SCALING_CACHE", tempfile.mkdtemp(prefix="scaling-test-cache-"))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


SHARED_CORPORA = REPO.parent / "shared" / "corpora"


def shared_corpus(relative: str) -> Path:
  """A file or folder of the real text beside the checkout (../shared/corpora, as CI has it);
  the test is skipped, saying why, where it is absent."""
  path = SHARED_CORPORA / relative
  if not path.exists():
    pytest.skip(f"{path} is absent: this test reads real text from ../shared/corpora beside the "
                "checkout (see its PROVENANCE.md)")
  return path


def words_corpus(folder: Path, n_docs: int = 40, seed: int = 0) -> str:
  """A text file of n_docs blank-line-separated documents of 30 words drawn from ten: generated
  text for the tokenizer's path."""
  rng = np.random.default_rng(seed)
  words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "home"]
  text = "\n\n".join(" ".join(rng.choice(words, size=30)) for _ in range(n_docs))
  path = Path(folder) / "corpus.txt"
  path.write_text(text)
  return str(path)


@pytest.fixture
def small_cfg(tmp_path):
  """The test_small config writing into a temporary run directory."""
  def make(**overrides):
    from scaling.config.load import apply_overrides, load_config_file
    cfg = load_config_file(str(REPO / "configs" / "test_small.py"))
    cfg.run_dir = str(tmp_path / "run")
    apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    return cfg
  return make


def read_metrics(run_dir):
  """Every line of a run's metrics.jsonl, parsed here (not through scaling.train.rundir)."""
  return [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


def fake_run(path, n, loss, steps=50, batch=2048, b_simple=None, **summary_fields):
  """A finished run directory as the trainer writes it (summary.json + metrics.jsonl): the
  held-out loss `loss`, a training curve loss + 3/step, and b_simple(loss) when given."""
  path.mkdir(parents=True)
  summary = {"n_kaplan": n, "n_exact_nonemb": n + 100, "n_total": 2 * n, "tokens": steps * batch,
             "d_train_tokens": 10 ** 6, "flop_kaplan": 6.0 * n * steps * batch, "steps": steps,
             "batch_tokens": batch, "final_eval_loss": loss, "best_eval_loss": loss,
             "flop_per_token": {"kaplan_train": 6.0 * n, "palm_train": 9.0 * n,
                                "chinchilla_train": 12.0 * n}, **summary_fields}
  (path / "summary.json").write_text(json.dumps(summary))
  lines = []
  for s in range(1, steps + 1):
    rec = {"step": s, "tokens": s * batch, "loss": loss + 3.0 / s}
    if b_simple is not None:
      rec["b_simple_tokens"] = b_simple(rec["loss"])
    lines.append(json.dumps(rec))
  (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def tree_sizes(cfg) -> dict:
  """Sizes counted on the real parameter tree of a model config: total, embedding (token and
  position tables, untied unembedding) and block_kernels (the blocks' weight matrices only, which
  is what Kaplan's N counts)."""
  import math
  import jax
  from flax import nnx
  from scaling.model.transformer import Transformer, is_embedding_path
  model = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  sizes = {"total": 0, "embedding": 0, "block_kernels": 0}
  for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]:
    keys = tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path)
    size = math.prod(leaf.shape)
    sizes["total"] += size
    sizes["embedding"] += size if is_embedding_path(keys) else 0
    sizes["block_kernels"] += size if keys[0] == "blocks" and keys[-1] == "kernel" else 0
  return sizes


@pytest.fixture(scope="session")
def witness(tmp_path_factory):
  """For the fault suites: a finished 10-step test_small run (checkpoints at 5 and 10), a cache of
  its own, and a good 5-point CSV of runs, whose files no fault may change."""
  from scaling.cli import main as cli_main
  root = tmp_path_factory.mktemp("witness")
  assert cli_main(["train", "--config", str(REPO / "configs/test_small.py"),
                   f"--config.run_dir={root / 'run'}", f"--config.data.cache_dir={root / 'cache'}",
                   "--config.train.steps=10"]) == 0
  n = [1e5, 3e5, 1e6, 3e6, 1e7]
  (root / "good.csv").write_text("N,loss\n" + "".join(f"{x},{(1e13 / x) ** 0.076}\n" for x in n))
  return root

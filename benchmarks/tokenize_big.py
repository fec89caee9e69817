"""`scaling tokenize` on a generated corpus of several GB: peak memory and throughput.

The corpus is new text made from the TinyStories sample in ../shared/corpora (beside the
checkout): each generated document is a seeded random draw of sentences from the whole sample (so
the text is not one block repeated), as JSONL lines until the size asked for. The store is written by a real `scaling tokenize` process;
its peak RSS is the child's ru_maxrss (encoding runs in that one process's threads).

    python benchmarks/tokenize_big.py --gb 2.1 --work /tmp/tokbig
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scaling.data import sources


def make_corpus(path: Path, n_bytes: int, seed: int = 0) -> int:
  """JSONL documents of 3–40 sentences drawn from the TinyStories sample, until n_bytes."""
  sample = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinystories" / \
      "stories.jsonl.xz"
  if not sample.is_file():
    sys.exit(f"{sample} is absent: this benchmark reads ../shared/corpora beside the checkout")
  sentences = [s for d in sources.iter_documents(str(sample))
               for s in re.split(r"(?<=[.!?])\s+", d) if s]
  rng = np.random.default_rng(seed)
  written = 0
  with open(path, "w", encoding="utf-8") as f:
    while written < n_bytes:
      picks = rng.integers(0, len(sentences), size=(4096, 40))
      counts = rng.integers(3, 41, size=4096)
      block = "".join(json.dumps({"text": " ".join(sentences[j] for j in row[:n])}) + "\n"
                      for row, n in zip(picks, counts))
      f.write(block)
      written += len(block.encode("utf-8"))
  return written


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--gb", type=float, default=2.1)
  p.add_argument("--work", default="/tmp/tokenize_big")
  p.add_argument("--vocab", type=int, default=4096)
  args = p.parse_args()
  work = Path(args.work)
  work.mkdir(parents=True, exist_ok=True)
  corpus = work / "corpus.jsonl"
  if not corpus.is_file() or corpus.stat().st_size < args.gb * 1e9:
    t = time.time()
    make_corpus(corpus, int(args.gb * 1e9))
    print(f"generated {corpus.stat().st_size / 1e9:.2f} GB in {time.time() - t:.0f} s", flush=True)
  n_bytes = corpus.stat().st_size
  cmd = [sys.executable, "-m", "scaling.cli", "tokenize", "--out", str(work / "store"),
         f"--config.data.source={corpus}", f"--config.data.vocab_size={args.vocab}",
         f"--config.data.cache_dir={work / 'cache'}"]
  t = time.time()
  subprocess.run(cmd, check=True)
  wall_s = time.time() - t
  rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
  meta = json.loads((work / "store" / "meta.json").read_text())
  n_tokens = meta["n_tokens_train"] + meta["n_tokens_eval"]
  print(json.dumps({"corpus_bytes": n_bytes, "tokens": n_tokens,
                    "shards": sum(len(v) for v in meta["shards"].values()),
                    "tokenizer_sample": meta["tokenizer_sample"], "wall_s": round(wall_s, 1),
                    "mb_per_s": round(n_bytes / 1e6 / wall_s, 2),
                    "peak_rss_gb": round(rss_gb, 3)}, indent=1))


if __name__ == "__main__":
  main()

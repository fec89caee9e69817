"""One process of the multi-process test (tests/train/test_multiprocess.py): trains
configs/test_small with the given overrides and records which rows of each global batch this process
read."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
  out, overrides = sys.argv[1], sys.argv[2:]
  from scaling.config.load import apply_overrides, load_config_file
  from scaling.config.spec import validate
  from scaling.data import loader as datalib
  from scaling.train import loop as trainlib
  import jax

  reads = []
  original = datalib.WindowBatches.__getitem__

  def recording(self, step):
    rows = original(self, step)
    reads.append({"step": int(step), "row0": self.row0, "rows": rows[:, 0].tolist(),
                  "n_rows": int(rows.shape[0]), "global_batch": self.global_batch})
    return rows

  datalib.WindowBatches.__getitem__ = recording
  cfg = apply_overrides(load_config_file("configs/test_small.py"), overrides)
  trainlib.train(validate(cfg), verbose=False)
  Path(out).write_text(json.dumps({"process_index": jax.process_index(),
                                   "process_count": jax.process_count(),
                                   "local_devices": jax.local_device_count(),
                                   "devices": jax.device_count(), "reads": reads}))


if __name__ == "__main__":
  main()

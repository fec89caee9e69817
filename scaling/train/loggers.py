"""Optional metric sinks beside metrics.jsonl: TensorBoard event files (tensorboardX) and
Weights & Biases. metrics.jsonl stays the source of truth; these are for watching runs."""

from __future__ import annotations

import math
from pathlib import Path

from scaling.config.spec import LogSpec


class MetricSinks:
  """Writes each metrics record to the sinks enabled in the run's log section (process 0 only)."""

  def __init__(self, log: LogSpec, run_dir: Path, run_name: str, config_dict: dict, enabled: bool):
    self.tb = self.wandb = None
    if not enabled:
      return
    if log.tensorboard:
      try:
        from tensorboardX import SummaryWriter
      except ImportError:
        print("warning: log.tensorboard is on but tensorboardX is not installed "
              "(pip install 'scaling[tb]'); no event files written", flush=True)
      else:
        self.tb = SummaryWriter(logdir=str(run_dir / "tensorboard"), flush_secs=10)
    if log.wandb:
      try:
        import wandb
      except ImportError:
        print("warning: log.wandb is on but wandb is not installed; skipped", flush=True)
      else:
        self.wandb = wandb.init(project=log.wandb_project, name=run_name, config=config_dict,
                                dir=str(run_dir), resume="allow", id=run_name.replace("/", "-"))

  def write(self, record: dict) -> None:
    step = record["step"]
    scalars = {k: float(v) for k, v in record.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "time")
               and v is not None and math.isfinite(v)}
    if self.tb is not None:
      for key, value in scalars.items():
        self.tb.add_scalar(key, value, step)
    if self.wandb is not None:
      self.wandb.log(scalars, step=step)

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()
    if self.wandb is not None:
      self.wandb.finish()

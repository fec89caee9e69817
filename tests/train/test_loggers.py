"""TensorBoard event files from a real run, read back by TensorBoard's own reader."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import read_metrics
from scaling.train import loop as trainlib
from scaling.config.spec import validate


def test_tensorboard_events_match_metrics_jsonl(small_cfg, tmp_path):
  cfg = small_cfg(**{"train.steps": 12, "eval.every": 6, "log.tensorboard": True})
  trainlib.train(validate(cfg), verbose=False)
  logdir = tmp_path / "run" / "tensorboard"
  assert any(logdir.glob("events.out.tfevents.*"))
  acc = EventAccumulator(str(logdir))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  assert {"loss", "eval_loss", "lr", "tokens_per_s", "mfu", "b_simple_tokens"} <= tags
  loss = [(e.step, e.value) for e in acc.Scalars("loss")]
  jsonl = [(m["step"], m["loss"]) for m in read_metrics(tmp_path / "run")]
  assert [s for s, _ in loss] == [s for s, _ in jsonl] == list(range(1, 13))
  for (_, a), (_, b) in zip(loss, jsonl):
    assert abs(a - b) <= 1e-6 * abs(b)
  assert [e.step for e in acc.Scalars("eval_loss")] == [6, 12]

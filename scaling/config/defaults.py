"""The default run configuration; files under configs/ start from it and change what they need."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.name = "run"
  cfg.run_dir = ""                 # "" → runs/<name>
  cfg.seed = 0                     # parameter init and batch order
  cfg.compilation_cache = True     # JAX's persistent compilation cache under the cache dir

  cfg.model = ml_collections.ConfigDict()
  cfg.model.n_layer = 2
  cfg.model.d_model = 128
  cfg.model.n_heads = 2            # heads of 64 (d_head = d_model / n_heads)
  cfg.model.d_head = 0             # 0: d_model // n_heads
  cfg.model.d_ff = 0               # 0: 4·d_model
  cfg.model.n_ctx = 128
  cfg.model.tie_embeddings = True
  cfg.model.compute_dtype = "auto"  # auto: float32 on CPU, bfloat16 on GPU/TPU
  cfg.model.attention = "auto"     # auto: explicit softmax(QKᵀ)V on CPU, dot_product_attention
                                   # (cuDNN's fused kernel where it applies) on GPU/TPU
  cfg.model.weight_grad = "auto"   # auto: on CPU, each large layer's weight gradient in the matmul
                                   # form measured faster (scaling/train/matmul_forms.py); plain | transposed

  cfg.data = ml_collections.ConfigDict()
  cfg.data.store = ""              # a folder written by `scaling tokenize` (then source, vocab_size,
                                   # tokenizer and eval_fraction are the store's, not read)
  # synthetic: the generated corpus whose entropy rate is known (scaling/data/generated.py; its
  # symbols are the tokens) | file | folder | glob | x.jsonl[.xz] | hf:NAME[:SPLIT] (real text)
  cfg.data.source = "synthetic"
  cfg.data.text_field = "text"     # JSONL / Hugging Face column holding the text
  cfg.data.vocab_size = 2048       # byte-level BPE trained on the training split; for the
                                   # generated corpus its number of symbols
  cfg.data.synthetic = ml_collections.ConfigDict()
  cfg.data.synthetic.seed = 0
  cfg.data.synthetic.doc_tokens = 0        # 0: model.n_ctx, so a training window is a document
  cfg.data.synthetic.train_tokens = 4_000_000
  cfg.data.synthetic.eval_tokens = 262_144
  cfg.data.synthetic.n_patterns = 20_000   # the "quanta": phrases drawn with Zipf frequencies …
  cfg.data.synthetic.zipf_exponent = 1.5   # … p_k ∝ k^−s (predicts L(N) − H ∝ N^−(s−1))
  cfg.data.synthetic.pattern_tokens = 6    # 2 head tokens naming the pattern, body, 1 slot
  cfg.data.synthetic.slot_values = 4       # a slot's values: drawn once per document, then copied
  cfg.data.synthetic.n_topics = 32         # a document's latent topic, written at its start …
  cfg.data.synthetic.topic_patterns = 64   # … favours its own patterns …
  cfg.data.synthetic.topic_weight = 0.5    # … for this share of the phrases
  cfg.data.tokenizer = ""          # path to an existing tokenizer.json instead of training one
  cfg.data.tokenizer_sample_bytes = 64_000_000  # the BPE is trained on an evenly spread sample
                                   # of the training documents of at most this many bytes
  cfg.data.shard_tokens = 1 << 27  # tokens per shard file of the store (256 MiB at uint16)
  cfg.data.eval_fraction = 0.1     # last 10% of documents held out
  cfg.data.max_train_tokens = 0    # D-limited runs: train on the first D tokens only (0: all)
  # "epochs": each epoch a seeded permutation of the non-overlapping windows (every token seen
  # once per epoch, as the papers' D assumes); "uniform": windows drawn with replacement.
  cfg.data.sampling = "epochs"
  cfg.data.cache_dir = ""          # "" → $SCALING_CACHE or ~/.cache/scaling
  cfg.data.loader_threads = 2

  cfg.train = ml_collections.ConfigDict()
  cfg.train.batch_size = 16        # global batch in sequences (tokens = batch_size · n_ctx)
  cfg.train.steps = 0              # set steps, or tokens (steps = tokens / batch tokens)
  cfg.train.tokens = 2_000_000
  cfg.train.peak_lr = 0.0          # 0: Kaplan's LR(N) rule with N non-embedding …
  cfg.train.lr_scale = 1.0         # … times this
  cfg.train.warmup_frac = 0.05     # linear warm-up over this fraction of the steps …
  cfg.train.warmup_steps = 0       # … or this many steps when > 0
  cfg.train.min_lr_ratio = 0.1     # decay to this fraction of the peak
  cfg.train.schedule = "cosine"    # cosine: warm-up, cosine decay over the run | wsd: warm-up,
                                   # stable, cooldown over the last decay_frac (scaling/train/optim.py)
  cfg.train.decay_frac = 0.2       # wsd: the cooldown's share of the run
  cfg.train.cooldown_shape = "1-sqrt"  # wsd cooldown: 1-sqrt | linear
  cfg.train.stable_ref_steps = 0   # wsd: > 0, the stable rate falls as √(ref/t) after this step
                                   # (longer runs at lower rates, branches still shared)
  cfg.train.init_from = ""         # "RUN_DIR@STEP": a branch starting from that run's checkpoint
                                   # (its state, its metrics up to STEP), then this config's schedule
  cfg.train.init_mode = "continue"  # continue: the source's steps, batches and metrics up to STEP |
                                   # fork: its parameters and optimizer state only, then a new run
                                   # from step 0 at any batch size and seed (branched CBS)
  cfg.train.schedule_steps = 0     # the schedule's horizon if not the run's length (Kaplan's
                                   # fixed-horizon runs stop before their schedule ends)
  cfg.train.weight_decay = 0.0     # AdamW decay on matrices only
  cfg.train.b1 = 0.9
  cfg.train.b2 = 0.95
  cfg.train.grad_clip = 1.0        # global-norm clipping (0: off)
  cfg.train.skip_batches = ""      # steps whose batches are left out, e.g. "41" after a NaN there
  cfg.train.patience = 0           # early stopping: end after this many evaluations without a
                                   # lower held-out loss (0: off; the best checkpoint is kept anyway)
  cfg.train.stop_loss = 0.0        # end the run once the training loss, averaged over the last
  cfg.train.stop_window_tokens = 65536  # this many tokens, is below stop_loss (0: off)

  cfg.eval = ml_collections.ConfigDict()
  cfg.eval.every = 100             # steps between held-out evaluations (and at the end)
  cfg.eval.batches = 8             # fixed held-out batches per evaluation
  cfg.eval.batch_size = 16
  cfg.eval.extra_sources = ""      # more held-out sets: "name=source,…" (any data source, or
                                   # builtin:python-docs); logged as eval_loss/<name>
  cfg.eval.extra_lowercase = False  # lower-case them (for a lower-cased training corpus)

  cfg.checkpoint = ml_collections.ConfigDict()
  cfg.checkpoint.every = 200       # steps between checkpoints (and at the end)
  cfg.checkpoint.keep = 2          # most recent checkpoints kept
  cfg.checkpoint.keep_steps = ""   # "100,250": also saved at these steps and never deleted
                                   # (the branch points of WSD cooldowns)

  cfg.gns = ml_collections.ConfigDict()
  cfg.gns.enabled = True           # gradient noise scale from per-device vs global gradients
  cfg.gns.micro_batches = 0        # micro-batches per device; 0: 1 on several devices, 2 on one
  cfg.gns.ema_decay = 0.95          # per step, unless …
  cfg.gns.ema_tokens = 0           # … this is > 0: the EMA's horizon in tokens, the same at every
                                   # batch size (decay exp(−batch tokens / ema_tokens) per step)
  cfg.gns.preconditioned = False   # also |G|² and tr(Σ) weighted by Adam's P = 1/(√v̂ + ε) …
  cfg.gns.precond_every = 4        # … at every 4th step (+1.7 to +6.1 % mean step time against
                                   # no estimator on 8 CPU devices, benchmarks/gns_overhead.py;
                                   # a second step program to compile, so off unless asked for)
  cfg.gns.preconditioned_p2 = False  # and by P² (H ∝ I in the original coordinates)

  cfg.mesh = ml_collections.ConfigDict()
  cfg.mesh.num_devices = 0         # devices; 0: all
  # Parameters and AdamW state sharded over `fsdp` devices (each holds 1/fsdp of them, gathered
  # for the forward pass); the batch over all devices. Mesh (data = devices/fsdp, fsdp).
  cfg.mesh.fsdp = 1

  cfg.distributed = ml_collections.ConfigDict()
  cfg.distributed.enabled = False  # call jax.distributed.initialize() (multi-host)
  cfg.distributed.coordinator_address = ""  # "" → JAX auto-detection (TPU VM, SLURM)
  cfg.distributed.num_processes = 0
  cfg.distributed.process_id = -1
  cfg.distributed.timeout_s = 300  # wait this long for every process to join
  cfg.distributed.cpu_collectives = False  # gloo all-reduces between CPU processes (also set
                                           # automatically when JAX_PLATFORMS=cpu)

  cfg.log = ml_collections.ConfigDict()
  cfg.log.print_every = 0          # progress line every this many steps; 0: about 20 per run
  cfg.log.tensorboard = False      # TensorBoard event files in <run_dir>/tensorboard (tensorboardX)
  cfg.log.wandb = False            # Weights & Biases, when wandb is installed
  cfg.log.wandb_project = "scaling"
  return cfg

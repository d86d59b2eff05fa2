"""The default configuration: every choice the paper leaves open, with the project's default.

Experiment configs under experiments/configs/ start from `default_config()` and change what they need.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

import ml_collections

from sal_jax.errors import ConfigError, is_integer, is_number


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0                    # the first seed; a run uses seed, seed + 1, ...
    config.num_seeds = 1
    # Deterministic GPU kernels and full-precision float32 matmuls: GPU/TPU runs bit-identical run to run
    # and across resume, at a speed cost (sal_jax/determinism.py). CPU runs are bit-identical either way.
    config.deterministic = False

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"        # digits | mnist | cifar10 | trec | emotion | breast_cancer | wine | npz (data.path)
    config.data.data_dir = ""          # "" = the loader's default (TFDS_DATA_DIR for TFDS datasets)
    config.data.per_class = 0          # > 0: a class-balanced training subset of this many per class
    config.data.subset_seed = 0        # which subset; fixed across seeds so every method sees the same data
    config.data.max_len = 32           # text: tokens per example (truncated / padded)
    config.data.augment = False        # images: random crop (pad 4) + horizontal flip, on device
    config.data.path = ""              # name "npz": a .npz of x_train, y_train, x_test, y_test (+ num_classes)

    config.model = ml_collections.ConfigDict()
    config.model.family = "mlp"        # mlp | cnn | rnn | glai | set_mlp | transformer (text) | vit (images)
    # per level: hidden layers (mlp), conv blocks (cnn), recurrent layers (rnn), encoder blocks (transformer, vit)
    config.model.levels = (1, 2, 4, 8)
    config.model.width = 64            # mlp, glai, set_mlp
    config.model.activation = "relu"   # mlp, set_mlp: relu | tanh | sigmoid | gelu
    config.model.channels = (16, 32, 64, 128)  # cnn: channels of conv block 1, 2, ...
    config.model.batch_norm = True     # cnn
    config.model.hidden = 64           # rnn
    config.model.embed_dim = 64        # rnn
    config.model.cell = "gru"          # rnn: gru | lstm
    # transformer, vit (sal_jax/models/transformer.py); embed_dim and hidden are the rnn's: here the token
    # embedding and every block share one width, dim
    config.model.dim = 64              # transformer, vit: width of the tokens (residual stream); divisible by heads
    config.model.heads = 4             # transformer, vit: attention heads, dim / heads features each
    config.model.mlp_ratio = 2         # transformer, vit: each block's MLP has mlp_ratio * dim hidden units (GELU)
    config.model.patch = 4             # vit: side of the square patches; must divide the image height and width
    config.model.pooling = "mean"      # transformer, vit: mean (over real tokens, or patches) | cls (a learned token)
    # transformer, vit: pre (h + f(LN(h)), final LN before pooling) | post (LN(h + f(h)), the original
    # Transformer; deep stacks are known to diverge without learning-rate warm-up)
    config.model.norm = "pre"
    config.model.epsilon = 20.0        # set_mlp: each layer's Erdős–Rényi density min(1, ε (n_in + n_out) / (n_in n_out))
    # set_mlp: one ε per level instead (() = epsilon for every level); e.g. (2.0, 5.0, 20.0) with levels
    # (2, 2, 2) makes a ladder that grows in density instead of depth
    config.model.epsilons = ()

    # Sparse levels (config.model.family = "set_mlp"; sal_jax/sparse.py): SET, and NPSET with prune_fraction > 0
    config.sparse = ml_collections.ConfigDict()
    config.sparse.zeta = 0.3           # fraction of each layer's weights removed and regrown per epoch (0: fixed sparsity)
    config.sparse.prune_fraction = 0.0  # neurons: this fraction of each hidden layer's units pruned (0.5: NPSET)
    config.sparse.prune_until = 0.5    # ... linearly over this fraction of the level's epochs

    # GLAI levels (config.model.family = "glai"; sal_jax/glai.py): ReLU MLPs whose structure (activation
    # pattern) is frozen once stable, after which only the values train.
    config.glai = ml_collections.ConfigDict()
    config.glai.flip_threshold = 0.01       # freeze at the first epoch end where at most this fraction of gates flipped
    config.glai.max_structure_fraction = 0.5  # ... and at the latest after this fraction of the level's epochs
    config.glai.probe_size = 512            # the gates are watched on the first probe_size training inputs

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 20           # per level and round
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    config.train.optimizer = "adam"    # adam | adamw | sgd (momentum 0.9)
    config.train.weight_decay = None   # adamw's decoupled weight decay; None = optax's default (1e-4). adamw only
    config.train.rounds = 1            # full top-down passes over the ladder
    config.train.eval_every = 1        # epochs between test evaluations (the last epoch is always evaluated)
    # Training steps per compiled call (sal_jax/chunks.py; README "Steps per call"). 0 = calls of ~0.1 s,
    # at most an epoch; 1 = one step per call (the host waits for every step: slow on an accelerator).
    # Results do not depend on it (bit-identical on a CPU); checkpoints, SIGTERM and the time budget act
    # between calls.
    config.train.steps_per_call = 0
    # Trainings as members of one compiled program (sal_jax.member_loop; README "Members"): a cell's seeds,
    # and the sweep points that differ only in member settings (sal_jax.members.MEMBER_SETTINGS: λ_h, λ_o,
    # T, learning rate, weight decay), in groups of this many, each group one program per level. 1 = one
    # training at a time; 0 = all of them in one program. Small models gain: one kernel serves every member,
    # and on a CPU the command line gives each core a device of its own. Families that cannot stack train
    # in turn.
    config.train.ensemble = 1

    config.guidance = ml_collections.ConfigDict()
    config.guidance.hidden_weight = 1.0    # λ_h; 0 = output-only ablation
    config.guidance.output_weight = 1.0    # λ_o; 0 = hidden-only ablation
    config.guidance.temperature = 4.0      # T of the output guidance
    config.guidance.distance = "mse"       # mse | cosine
    config.guidance.schedule = "constant"  # constant | linear_decay (λ -> 0 over the level's training)
    config.guidance.cache_teacher = True   # without augmentation, compute the teacher's outputs once per level
    config.guidance.layer_map = ""         # "" = relative depth; or "teacher:student,..." 1-based, e.g. "1:2,2:4"
    # Each epoch, on one batch: each term's gradient norm and the cosine between the CE's and the guidance's
    # gradients (history "diag_*", TensorBoard "diagnostics/"): which term drives training. Three backward
    # passes an epoch, off the training clock; changes no result.
    config.guidance.gradient_diagnostics = False
    # The hidden term over the matched layers: sum (grows with the teacher's depth) | mean (sum / pairs)
    config.guidance.layer_reduction = "sum"
    # Both features of a pair divided by the teacher's RMS over the training set, before D: none |
    # unit_rms (per unit; per channel of a conv feature) | layer_rms (one RMS per teacher layer)
    config.guidance.feature_norm = "none"

    config.baselines = ml_collections.ConfigDict()
    config.baselines.epoch_matched = True  # plain bottom level, epochs * rounds epochs
    config.baselines.time_matched = True   # plain bottom level, the whole SAL run's training time (wall clock)
    # plain bottom level, the whole SAL run's FLOPs (XLA's count; sal_jax/compute_budget.py): as many steps
    # as they buy, the same on every machine
    config.baselines.compute_matched = True
    # Also every level above the bottom, plain (the same kinds; a level's time- and compute-matched budgets
    # are SAL's training time and FLOPs until that level was final): which level is best, SAL or plain?
    config.baselines.every_level = False

    # TensorBoard event files under <workdir>/tensorboard, one run per cell/seed/ladder/level:
    # `tensorboard --logdir <workdir>` follows a run live (sal_jax/summaries.py).
    config.tensorboard = True

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.enabled = True        # sal-jax checkpoints under <workdir>/checkpoints and resumes from them
    config.checkpoint.every_steps = 1000    # training steps between checkpoints (each level's end is saved too)
    config.checkpoint.keep = 2              # newest checkpoints kept per run
    config.checkpoint.allow_config_change = False  # resume even if result-affecting config values changed

    # Devices and hosts (see sal_jax/parallel.py). Each batch is split over all mesh devices, so
    # train.batch_size must be divisible by data x fsdp. Results agree across meshes to float rounding.
    config.parallel = ml_collections.ConfigDict()
    config.parallel.data = -1               # data-parallel axis size; -1 = all devices (that fsdp leaves)
    config.parallel.fsdp = 1                # > 1: split big params / optimizer state over this many devices
    config.parallel.coordinator_address = ""  # multi-host "host:port" of process 0; "" = $JAX_COORDINATOR_ADDRESS / detect
    config.parallel.num_processes = 0       # 0 = detect (Slurm, Open MPI, Cloud TPU, k8s; else 1); 1 = never distribute
    config.parallel.process_id = -1         # -1 = detect
    # One process: a training set (with cached teacher outputs) up to this size is copied to every device
    # once per level and batches are gathered there; larger ones, or several processes: on the host.
    config.parallel.data_on_device_mb = 1024.0

    # Experiments: a sweep over training-set sizes, and the ablations, each run for every seed.
    config.sweep = ml_collections.ConfigDict()
    config.sweep.per_class = ()        # e.g. (10, 100, 0): one cell per size (0 = the full training set)
    config.sweep.epochs = ()           # epochs per level in each cell (small subsets need more epochs)
    # ...and over any config keys (sal_jax/sweep.py): each point runs at every size, with the same seeds.
    config.sweep.grid = ()             # (("dotted.key", (value, ...)), ...): every combination of the values
    config.sweep.points = ()           # ((("dotted.key", value), ...), ...): points listed one by one
    config.ablations = False           # also run SAL hidden-only (λ_o = 0) and output-only (λ_h = 0)
    config.quick = False               # apply `quick_overrides`: a smoke-test-sized version of the config
    config.quick_overrides = ()        # (("dotted.key", value), ...), set by each experiment config
    return config


def with_values(config: ml_collections.ConfigDict, values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with each dotted key of `values` set, e.g. {"train.epochs": 3, "seed": 1}: the one
    way the library derives a config (quick runs, sweep points, a cell's size, a seed, an ablation)."""
    copy = ml_collections.ConfigDict(config.to_dict())
    for key, value in values.items():
        *path, leaf = key.split(".")
        node = copy
        for part in path:
            node = node[part]
        node[leaf] = value
    return copy


def apply_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with `config.quick_overrides` applied when `config.quick` is set."""
    return with_values(config, dict(config.quick_overrides) if config.quick else {})


def check_values(config: ml_collections.ConfigDict) -> None:
    """The seeds, epochs and training values: what needs no data, devices or models (after `apply_quick`).

    Checked by the command line before it imports JAX (seconds), so a typo fails at once. The other
    values, and these again for other callers, are checked by sal_jax.validation before training.
    """
    check_positive(config.num_seeds, "num_seeds")
    sweep, train = config.sweep, config.train
    if len(sweep.per_class) != len(sweep.epochs):
        raise ConfigError(f"config.sweep.epochs: needs one entry per config.sweep.per_class entry, got "
                          f"{len(sweep.epochs)} for {len(sweep.per_class)}")
    if sweep.epochs and not all(is_integer(epochs) and epochs > 0 for epochs in sweep.epochs):
        raise ConfigError(f"config.sweep.epochs: must be positive integers, got {sweep.epochs!r}")
    check_train_values(train, epochs=not sweep.epochs)  # a sweep's cells train its epochs instead


def check_train_values(train: ml_collections.ConfigDict, epochs: bool = True) -> None:
    """config.train's counts and learning rate are positive (its epochs too, unless `epochs` is False)."""
    for field in ("epochs", "batch_size", "rounds", "eval_every")[0 if epochs else 1:]:
        check_positive(train[field], f"train.{field}")
    check_positive(train.learning_rate, "train.learning_rate", integer=False)
    decay = train.get("weight_decay")
    if decay is not None and (not is_number(decay) or not decay >= 0):  # `not >=`: NaN fails too
        raise ConfigError(f"config.train.weight_decay: must be None (optax's default) or a number >= 0, got {decay!r}")
    if decay is not None and train.optimizer != "adamw":
        raise ConfigError(f"config.train.weight_decay: only adamw decays weights; config.train.optimizer is "
                          f"{train.optimizer!r} (set it to 'adamw' or leave weight_decay None)")
    if not is_integer(train.ensemble) or train.ensemble < 0:
        raise ConfigError(f"config.train.ensemble: must be 0 (all of a cell's trainings in one program) or a positive "
                          f"integer, got {train.ensemble!r}")


def check_positive(value: Any, field: str, integer: bool = True) -> None:
    if not (is_integer(value) if integer else is_number(value)) or value <= 0:
        raise ConfigError(f"config.{field}: must be a positive {'integer' if integer else 'number'}, got {value!r}")


def flat_config(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    """{"train.epochs": 20, ...}: a config's leaves by dotted key (tuples as lists, as JSON stores them)."""
    items = config.items() if isinstance(config, dict) else config.to_dict().items()
    flat = {}
    for key, value in items:
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def unknown_key(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    """What is wrong with the key path `dotted` (e.g. "train.epochs") in `config`, or None if it exists."""
    node, section = config, "config"
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict):
            return f"{section} is a value ({node!r}), not a section with keys"
        if part not in node:
            keys = sorted(node.keys())
            close = difflib.get_close_matches(part, keys, n=3)
            hint = (f"did you mean {' or '.join(map(repr, close))}?" if close
                    else f"its keys are {', '.join(keys)}")
            return f"{section} has no key {part!r}; {hint}"
        node, section = node[part], f"{section}.{part}"
    return None

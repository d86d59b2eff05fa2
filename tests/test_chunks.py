"""Many steps per call (sal_jax.chunks): the same training whatever `train.steps_per_call`, one compilation
per level, and calls sized to the epoch, the next checkpoint and the time budget."""
import jax
import numpy as np
import pytest

from conftest import blobs
from promises import assert_reproduced
from sal_jax.chunks import CALL_SECONDS, ChunkSizer
from sal_jax.data.arrays import ArrayDataset
from sal_jax.ladder import train_ladder
from sal_jax.models import make_ladder


def images(n: int = 150, seed: int = 0) -> ArrayDataset:
    """8x8x1 images whose class sets the mean brightness of one quadrant."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 2 * n).astype(np.int32)
    x = rng.normal(0, 1, (2 * n, 8, 8, 1)).astype(np.float32)
    for c in range(3):
        x[y == c, 4 * (c % 2):4 * (c % 2) + 4, 4 * (c // 2):4 * (c // 2) + 4] += 2.0
    return ArrayDataset("images", x[:n], y[:n], x[n:n + 60], y[n:n + 60], 3)


def tokens(n: int = 150, seed: int = 0) -> ArrayDataset:
    """Token sequences (length 6, padded with 0 after 3..6 tokens) whose class is their first token's parity mod 3."""
    rng = np.random.default_rng(seed)
    x = np.where(np.arange(6) < rng.integers(3, 7, (2 * n, 1)), rng.integers(1, 30, (2 * n, 6)), 0).astype(np.int32)
    y = (x[:, 0] % 3).astype(np.int32)
    return ArrayDataset("tokens", x[:n], y[:n], x[n:n + 60], y[n:n + 60], 3, vocab_size=30)


def family_setup(family: str, config):
    config.model.family = family
    config.baselines.time_matched = False  # its length follows the clock
    config.train.epochs = 2
    if family == "mlp":
        return blobs()
    config.model.levels = (1, 2)
    if family == "cnn":  # BatchNorm and augmentation (keyed by the step) included
        config.model.channels, config.data.augment = (4, 8), True
        return images()
    config.model.hidden, config.model.embed_dim = 8, 8
    return tokens()


def outcome(result) -> tuple:
    """Every phase's variables and history, the clock's readings left out."""
    runs = result.sal + [result.plain_epoch_matched]
    history = [[{k: v for k, v in row.items() if k != "train_time"} for row in run.history] for run in runs]
    return [jax.tree.map(np.asarray, run.variables) for run in runs], history, [run.compiles for run in runs]


@pytest.mark.parametrize("family", ["mlp", "cnn", "rnn"])
def test_any_steps_per_call_trains_the_same_with_one_compilation_per_level(family, config):
    """150 examples at batch 32: 4 steps an epoch. 1, 3 (calls of 3 then a ragged 1) and 0 (sized by the
    clock) run the one compiled program of each level, so they give the same bits on a CPU (and on a GPU
    in deterministic mode); so do guidance with the teacher cache (level 2 and after) and the host layout."""
    data = family_setup(family, config)
    levels = make_ladder(config.model, data.num_classes, data.vocab_size)
    outcomes = {}
    for steps_per_call, on_device_mb in ((1, 1024.0), (3, 1024.0), (0, 1024.0), (1, 0.0), (3, 0.0)):
        config.train.steps_per_call, config.parallel.data_on_device_mb = steps_per_call, on_device_mb
        outcomes[steps_per_call, on_device_mb] = outcome(train_ladder(levels, data, config))
    reference = outcomes.pop((1, 1024.0))
    assert all(c == {"train": 1, "eval": 1} for c in reference[2])
    for key, got in outcomes.items():
        assert all(c == {"train": 1, "eval": 1} for c in got[2]), key  # ragged calls of 3 + 1 included
        assert_reproduced(got[:2], reference[:2], atol=1e-5)  # one program per layout, same batches


@pytest.mark.parametrize("family", ["mlp", "cnn", "rnn"])
def test_a_seed_reusing_another_seeds_programs_trains_the_same_and_compiles_nothing(family, config):
    """Seeds 0 then 1 through one ProgramCache (as `train_and_evaluate` runs a cell's seeds) against seed 1
    with its own: the same bits; seed 1 adds no program, except where the seed is part of one (the CNN's
    augmentation key); the time-matched baseline shares the epoch-matched one's program."""
    from sal_jax.chunks import ProgramCache

    data = family_setup(family, config)
    config.baselines.time_matched = family == "mlp"
    levels = make_ladder(config.model, data.num_classes, data.vocab_size)
    shared = ProgramCache()
    train_ladder(levels, data, config, program_cache=shared)
    per_seed = len(shared)
    assert per_seed == len(levels) + 1  # each SAL level, and the bottom level's plain baselines (one program)
    config.seed = 1
    reused = train_ladder(levels, data, config, program_cache=shared)
    fresh = train_ladder(levels, data, config)
    assert len(shared) == per_seed * (2 if config.data.augment else 1)
    assert_reproduced(outcome(reused)[:2], outcome(fresh)[:2], atol=1e-5)
    runs = reused.sal + [reused.plain_epoch_matched]
    assert all(c == {"train": 1, "eval": 1} for c in outcome(reused)[2])
    if not config.data.augment:  # no tracing, lowering or compiling: nothing measurable
        assert max(run.compile_time for run in runs) < 0.05 < min(run.compile_time for run in fresh.sal)


def test_the_sizer_runs_the_asked_steps_and_never_past_a_limit():
    fixed = ChunkSizer(steps_per_call=8)
    assert fixed.next(limit=100) == 8 and fixed.next(limit=5) == 5
    fixed.observe(8, 0.8)  # 0.1 s a step: 2.5 s left allow 25 steps, 0.15 s two, none left still one
    assert fixed.next(100, time_left=2.5) == 8
    assert fixed.next(100, time_left=0.15) == 2 and fixed.next(100, time_left=0.0) == 1


def test_the_library_sizes_calls_to_about_call_seconds():
    auto = ChunkSizer(steps_per_call=0)
    assert auto.next(limit=1000) == 1  # the first call (it compiles) runs one step
    auto.observe(1, 2.0)  # ...and is slow: one step again
    assert auto.next(1000) == 1
    auto.observe(1, CALL_SECONDS / 50)
    assert auto.next(1000) == 50 and auto.next(20) == 20
    assert auto.next(1000, time_left=CALL_SECONDS / 10) == 5  # near a time budget's end: shorter calls


def test_on_a_cpu_only_convolutions_leave_the_device_loop():
    """XLA:CPU compiles a convolution's weight gradient ~30x slower inside a loop: those steps run one per
    dispatch there; dense models, and every model on an accelerator, keep the loop."""
    import jax.numpy as jnp
    from sal_jax.chunks import needs_host_loop

    def conv_loss(w, x):
        return jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))

    conv = jax.make_jaxpr(jax.grad(conv_loss))(jnp.ones((3, 3, 2, 4)), jnp.ones((1, 8, 8, 2)))
    dense = jax.make_jaxpr(jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w))))(jnp.ones((8, 4)), jnp.ones((2, 8)))
    assert needs_host_loop(conv) == (jax.default_backend() == "cpu")
    assert not needs_host_loop(dense)


def test_a_time_budget_stops_within_a_step_by_shortening_the_last_calls(monkeypatch, config):
    """A fake clock on which every training step takes 10 ms and nothing else takes time: calls of up to
    64 steps (6,000 examples at batch 32: 187 steps an epoch) against a 1 s budget run 1 step (its time
    unknown), then 64, then the 35 the time left allows -- 100 steps, not the 129 of whole calls."""
    from sal_jax import chunks, level_loop

    class Clock:
        now = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            return cls.now

    make_train_chunk = chunks.make_train_chunk

    def timed_chunk(*args, **kwargs):
        chunk = make_train_chunk(*args, **kwargs)

        def call(*call_args):
            Clock.now += 0.01 * call_args[5]  # n, the steps this call runs
            return chunk(*call_args)
        call._cache_size = chunk._cache_size
        return call

    monkeypatch.setattr(level_loop, "time", Clock)
    monkeypatch.setattr(chunks, "make_train_chunk", timed_chunk)
    config.train.steps_per_call = 64
    data = blobs(n_train=6000)
    level = make_ladder(config.model, data.num_classes)[0]
    run = level_loop.train_level(level, data, config, level=1, time_budget=1.0)
    assert run.steps == 100
    assert run.train_time == pytest.approx(1.0)


def test_a_level_compiles_its_training_and_evaluation_once_each(monkeypatch, data, config):
    """Evaluation compiles in a thread beside training, from the state's shapes; the jitted evaluation
    then finds that executable: one compilation per program (whether XLA's or the persistent cache's)."""
    from jax._src import compiler

    from sal_jax import level_loop

    level_loop.train_level(make_ladder(config.model, data.num_classes)[1], data, config, level=2)  # eager ops, once
    compiled = []
    compile_or_get_cached = compiler.compile_or_get_cached

    def counted(*args, **kwargs):
        compiled.append(args[1] if len(args) > 1 else kwargs.get("computation"))
        return compile_or_get_cached(*args, **kwargs)
    monkeypatch.setattr(compiler, "compile_or_get_cached", counted)
    run = level_loop.train_level(make_ladder(config.model, data.num_classes)[1], data, config, level=2)
    assert len(compiled) == 2 and run.compiles == {"train": 1, "eval": 1}

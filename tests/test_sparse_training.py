"""SET evolution and neuron pruning between epochs, and sparse levels in a ladder."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sal_jax import sparse
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.models import SparseMLP, make_ladder
from sal_jax.models.sparse import MASKS
from sal_jax.step import init_state, make_train_step


def trained_state(tx, hidden_layers=2, width=24, epsilon=3.0, steps=4):
    """A sparse level after a few Adam steps: nonzero moments everywhere its weights live."""
    model = SparseMLP(hidden_layers, width, 3, epsilon=epsilon)
    x = jax.random.normal(jax.random.key(1), (32, 30))
    batch = {"x": x, "y": jnp.arange(32) % 3, "weight": jnp.ones(32)}
    state = init_state(model, tx, jax.random.key(2), x)
    step = make_train_step(model, tx)
    for _ in range(steps):
        state, _ = step(state, None, batch)
    return model, jax.tree.map(np.array, state)


def adam_moments(opt_state):
    adam = opt_state[0]
    return adam.mu["model"], adam.nu["model"]


def by_argsort(x, k):
    """What sparse.smallest replaced: the k first of a stable ascending argsort of every element."""
    order = jnp.argsort(x.reshape(-1), stable=True)
    ranks = jnp.zeros(order.shape, jnp.int32).at[order].set(jnp.arange(order.size, dtype=jnp.int32))
    return (ranks < k).reshape(x.shape)


def test_smallest_picks_what_a_stable_argsort_ranks_first_ties_included():
    """Many ties (a few distinct values, infinities, zeros), k traced, from 0 to the size and on each side of
    every candidate top-k count (size / 8^j): the same elements as the stable argsort, ties by position."""
    np.testing.assert_array_equal(sparse.smallest(jnp.array([[3.0, 1.0], [1.0, 0.0]]), 2), [[0, 1], [0, 1]])
    rng = np.random.default_rng(0)
    select, reference = jax.jit(sparse.smallest), jax.jit(by_argsort)
    for shape, levels in (((7,), 2), ((24, 40), 3), ((96, 80), 50)):
        x = rng.integers(0, levels, shape).astype(np.float32)
        x[rng.random(shape) < 0.3] = np.inf
        candidates = {max(1, x.size >> shift) for shift in range(0, 12, 3)}
        for k in sorted({0, x.size - 1, *candidates, *(c + 1 for c in candidates if c < x.size)}):
            np.testing.assert_array_equal(select(x, k), reference(x, k), err_msg=f"{shape}, k={k}")


def test_evolution_keeps_each_layers_connection_count_and_removes_the_smallest():
    tx = optax.adam(1e-2)
    model, state = trained_state(tx)
    evolving = sparse.evolving_layers(state.params["model"], 3.0)
    assert evolving == ("dense_0", "dense_1")  # the 24 -> 3 head is dense at epsilon 3
    target = jnp.array([24, 24])  # no pruning
    params, constants, opt_state = jax.jit(sparse.between_epochs, static_argnums=(0, 1, 2))(
        tx, evolving, 0.3, state.params, state.constants, state.opt_state, jax.random.key(7), target)
    before, after = state.constants[MASKS], constants[MASKS]
    mu_before, nu_before = adam_moments(state.opt_state)
    mu, nu = adam_moments(opt_state)
    for name in evolving:
        old, new = before[name]["kernel"] > 0, np.asarray(after[name]["kernel"]) > 0
        kernel, old_kernel = np.asarray(params["model"][name]["kernel"]), state.params["model"][name]["kernel"]
        assert new.sum() == old.sum()  # connection count constant
        kept = old & new & (kernel == old_kernel) & (old_kernel != 0)  # live before and after, untouched
        removed, grown = old & ~kept, new & ~kept  # (a removed position may be drawn again: then it restarts)
        assert removed.sum() == grown.sum() == int(np.floor(0.3 * old.sum())) > 0
        assert np.abs(old_kernel[removed]).max() <= np.abs(old_kernel[kept]).min()  # the smallest went
        assert np.all(kernel[~new] == 0) and np.all(kernel[grown] == 0)  # removed and grown weights are 0
        for moment, moment_before in ((mu, mu_before), (nu, nu_before)):
            m = np.asarray(moment[name]["kernel"])
            assert np.all(m[removed | grown] == 0)  # regrown weights start with zero optimizer moments
            np.testing.assert_array_equal(m[kept], np.asarray(moment_before[name]["kernel"])[kept])
    jax.tree.map(np.testing.assert_array_equal, after["head"], before["head"])  # a dense layer is left alone


def test_neuron_pruning_leaves_pruned_units_without_live_connections():
    tx = optax.adam(1e-2)
    model, state = trained_state(tx)
    params, constants, opt_state = jax.jit(sparse.between_epochs, static_argnums=(0, 1, 2))(
        tx, ("dense_0", "dense_1"), 0.3, state.params, state.constants, state.opt_state, jax.random.key(8),
        jnp.array([12, 18]))
    masks, model_params = constants[MASKS], params["model"]
    for name, following, alive in (("dense_0", "dense_1", 12), ("dense_1", "head", 18)):
        units = np.asarray(masks[name]["units"]) > 0
        assert units.sum() == alive
        assert np.all(np.asarray(masks[name]["kernel"])[:, ~units] == 0)      # no incoming connection
        assert np.all(np.asarray(masks[following]["kernel"])[~units, :] == 0)  # no outgoing connection
        assert np.all(np.asarray(model_params[following]["kernel"])[~units, :] == 0)
        # the least important units went: importance = sum of |live incoming weights| before pruning
        importance = np.sum(np.abs(state.params["model"][name]["kernel"]) * state.constants[MASKS][name]["kernel"], 0)
        if name == "dense_0":
            assert importance[~units].max() <= importance[units].min()
    x = jax.random.normal(jax.random.key(3), (5, 30))
    _, features = model.apply({"params": model_params, MASKS: masks}, x)
    assert np.all(np.asarray(features[0])[:, np.asarray(masks["dense_0"]["units"]) == 0] == 0)


def test_alive_target_falls_linearly_to_the_pruned_fraction():
    assert [sparse.alive_target(100, 0.5, 4, e) for e in range(6)] == [100, 88, 75, 62, 50, 50]
    assert sparse.alive_target(100, 0.0, 4, 3) == 100


@pytest.fixture
def sparse_config(config):
    config.model.family = "set_mlp"
    config.model.levels, config.model.width, config.model.epsilon = (1, 2), 16, 3.0
    config.train.epochs = 4
    config.baselines.time_matched = False
    return config


def test_a_sparse_ladder_evolves_prunes_and_records_it(data, sparse_config):
    sparse_config.sparse.prune_fraction = 0.5
    result = train_ladder(make_ladder(sparse_config.model, 3), data, sparse_config)
    for run in [*result.sal, result.plain_epoch_matched]:
        alive = [row["alive_units"] for row in run.history]
        hidden = run.level if run in result.sal else 2
        assert alive == [16 * hidden, 12 * hidden, 8 * hidden, 8 * hidden]  # pruned over the first 2 of 4 epochs
        assert sparse.live_param_count(run.variables) < sum(np.size(p) for p in jax.tree.leaves(run.variables["params"]))


def test_evolution_and_pruning_choose_as_the_argsort_did(data, sparse_config, monkeypatch):
    """A short NPSET level (pruning and evolution between its epochs) trains to the same variables and history,
    bit for bit, with the argsort selection that sparse.smallest replaced."""
    sparse_config.model.levels, sparse_config.baselines.epoch_matched, sparse_config.train.epochs = (2,), False, 3
    sparse_config.sparse.prune_fraction = 0.5

    def train():
        sparse._between_epochs.cache_clear()  # jitted with the selection of its first trace
        (level,) = train_ladder(make_ladder(sparse_config.model, 3), data, sparse_config).sal
        return level.variables, [{k: v for k, v in row.items() if "time" not in k} for row in level.history]
    new = train()
    monkeypatch.setattr(sparse, "smallest", by_argsort)
    jax.tree.map(np.testing.assert_array_equal, new, train())
    sparse._between_epochs.cache_clear()


def test_fixed_sparsity_is_zeta_zero(data, sparse_config):
    """zeta 0: no rewiring; the bottom level's masks at the end are those it started with (the plain
    baseline of the same level starts from the same initial variables)."""
    sparse_config.sparse.zeta = 0.0
    result = train_ladder(make_ladder(sparse_config.model, 3), data, sparse_config)
    bottom = make_ladder(sparse_config.model, 3)[1]
    initial = init_state(bottom, optax.adam(1e-3), jax.random.fold_in(jax.random.key(sparse_config.seed), 2),
                         jnp.asarray(data.x_train[:sparse_config.train.batch_size])).constants[MASKS]
    for run in (result.sal[-1], result.plain_epoch_matched):
        jax.tree.map(np.testing.assert_array_equal, run.variables[MASKS], initial)


def test_expected_live_params_is_what_a_trained_npset_level_has(data, sparse_config):
    """The estimate that sizes the equal-parameter dense baseline is close to a trained NPSET level's live
    count, and below it: the pruned units, the least important, tend to be the least connected."""
    sparse_config.model.width, sparse_config.model.epsilon, sparse_config.sparse.prune_fraction = 64, 4.0, 0.5
    result = train_ladder(make_ladder(sparse_config.model, 3), data, sparse_config)
    live = sparse.live_param_count(result.plain_epoch_matched.variables)
    expected = sparse.expected_live_params(8, 64, 2, 3, 4.0, 0.5)
    assert expected < live < 1.25 * expected, (live, expected)


def test_a_ladder_that_grows_in_density_instead_of_depth(data, sparse_config):
    """One ε per level (model.epsilons): levels of the same depth and width, each denser than the one above, the lower one
    guided by the upper as usual; a ladder whose density falls is refused before training."""
    sparse_config.model.levels, sparse_config.model.epsilons = (2, 2), (1.5, 4.0)
    result = train_ladder(make_ladder(sparse_config.model, 3), data, sparse_config)
    upper, lower = (run.variables[MASKS]["dense_1"]["kernel"] for run in result.sal)
    assert float(np.mean(upper)) < float(np.mean(lower))
    assert "train_hidden" in result.sal[1].history[0]  # guided by the sparser level above
    sparse_config.model.epsilons = (4.0, 1.5)
    with pytest.raises(ConfigError, match="the ladder must grow in complexity, but level 2"):
        train_ladder(make_ladder(sparse_config.model, 3), data, sparse_config)
    sparse_config.model.epsilons = (4.0,)
    with pytest.raises(ConfigError, match=r"config.model.epsilons: needs one value per level \(2\), got 1"):
        make_ladder(sparse_config.model, 3)

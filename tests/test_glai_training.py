"""GLAI training: the structure monitor's measures, the freeze as a phase boundary, cached gates, path
norms and pruning, the equal-parameter MLP."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from promises import assert_same_math
from sal_jax import families, glai
from sal_jax.checkpoint import load_level
from sal_jax.errors import ConfigError
from sal_jax.ladder import Run, ladder_phases, run_phases, train_ladder
from sal_jax.levels import num_params
from sal_jax.models import MLP, GlaiMLP, make_ladder
from sal_jax.models.mlp import mlp_param_count
from sal_jax.models.glai import STRUCTURE
from sal_jax.report import param_count


def pattern(*layers):
    return [np.array(layer, bool) for layer in layers]


def test_flip_fraction_and_path_distance_by_hand():
    # two examples, layers of 3 and 2 units
    before = pattern([[1, 1, 0], [1, 0, 0]], [[1, 1], [1, 0]])
    after = pattern([[1, 0, 0], [1, 0, 0]], [[1, 1], [0, 1]])
    assert glai.flip_fraction(before, after) == 3 / 10
    # example 0: n = 2*2 = 4 paths, m = 1*2 = 2, shared 1*2 = 2 -> 1 - 2/(4+2-2) = 0.5
    # example 1: n = 1*1, m = 1*1, shared 1*0 = 0 (no common path) -> 1
    assert glai.path_distance(before, after) == pytest.approx((0.5 + 1.0) / 2)
    assert glai.path_distance(before, before) == 0.0
    dead = pattern([[0, 0, 0]], [[1, 1]])
    assert glai.path_distance(dead, dead) == 0.0  # no path either way
    assert glai.path_distance(dead, pattern([[1, 0, 0]], [[1, 1]])) == 1.0


def test_path_distance_does_not_overflow_for_deep_levels():
    wide = [np.ones((1, 512), bool)] * 200  # 512^200 paths
    half = [np.concatenate([np.ones((1, 256), bool), np.zeros((1, 256), bool)], 1)] * 200
    assert glai.path_distance(wide, half) == pytest.approx(1.0)  # shares 2^-200 of the paths
    assert glai.path_distance(wide, wide) == 0.0


def test_patterns_pack_into_json_and_back():
    rng = np.random.default_rng(0)
    original = [rng.random((5, 7)) > 0.5, rng.random((5, 3)) > 0.5]
    restored = glai.unpack(glai.pack(original))
    assert all(np.array_equal(a, b) for a, b in zip(original, restored))


@pytest.fixture
def glai_config(config):
    config.model.family = "glai"
    config.model.levels = (1, 2)
    config.train.epochs = 4
    config.baselines.time_matched = False
    config.baselines.compute_matched = False  # these tests count the phases of SAL and the epoch-matched baseline
    return config


@pytest.mark.parametrize("threshold, frozen_after", [(1.0, 1), (0.0, 2)])
def test_structure_phase_ends_when_stable_or_at_its_epoch_limit(data, glai_config, threshold, frozen_after):
    """Threshold 1: stable after the first epoch. Threshold 0 on a moving level: never, so the freeze
    comes at max_structure_fraction (0.5) of the 4 epochs. The structure phase's epochs carry the monitor's
    measures; the value phase continues them to the level's 4 epochs."""
    glai_config.glai.flip_threshold = threshold
    result = train_ladder(make_ladder(glai_config.model, 3), data, glai_config)
    for run in [*result.sal, result.plain_epoch_matched]:
        assert [row["epoch"] for row in run.history] == [1, 2, 3, 4]
        measured = [row for row in run.history if "structure_flips" in row]
        assert len(measured) == frozen_after
        assert all(0 <= row["structure_flips"] <= 1 and 0 <= row["path_distance"] <= 1 for row in measured)
        assert run.steps == 4 * (150 // 32) and STRUCTURE in run.variables


def test_freeze_is_a_phase_boundary_and_the_structure_never_moves(data, glai_config):
    """Each level's training is two phases; the value phase starts from the structure phase's variables
    (same outputs) and ends with its structure still those variables' hidden layers, bit for bit."""
    phases = ladder_phases(2, glai_config)
    assert [(p.name, p.part) for p in phases] == [
        ("SAL r1 L1 structure", "structure"), ("SAL r1 L1", ""), ("SAL r1 L2 structure", "structure"),
        ("SAL r1 L2", ""), ("plain (epoch-matched) structure", "structure"), ("plain (epoch-matched)", "")]
    levels = make_ladder(glai_config.model, 3)
    done = run_phases(Run(levels, data, glai_config, phases))
    for structure_run, value_run in zip(done[::2], done[1::2]):
        hidden = {k: v for k, v in structure_run.variables["params"].items() if k != "head"}
        jax.tree.map(np.testing.assert_array_equal, value_run.variables[STRUCTURE], hidden)
        assert value_run.history[:len(structure_run.history)] == structure_run.history
        assert value_run.steps > structure_run.steps
        assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in  # the values did train
                   zip(jax.tree.leaves(value_run.variables["params"]), jax.tree.leaves(structure_run.variables["params"])))


def test_a_freeze_off_the_evaluation_grid_still_evaluates_the_structure_phase_last_row(data, glai_config):
    """Evaluation every 2 epochs; the monitor freezes after epoch 1 (threshold 1): the structure phase
    ends there, and its last row is evaluated, as every level's last row is."""
    glai_config.train.eval_every = 2
    glai_config.glai.flip_threshold = 1.0
    phases = ladder_phases(2, glai_config)
    done = run_phases(Run(make_ladder(glai_config.model, 3), data, glai_config, phases))
    for phase, run in zip(phases, done):
        assert "test_accuracy" in run.history[-1], phase.name
        if phase.part == "structure":
            assert len(run.history) == 1
        else:  # epochs 2 and 4 on the grid; epoch 1 was the structure phase's last
            assert ["test_accuracy" in row for row in run.history] == [True, True, False, True]


def test_cached_gates_train_as_the_structure_would(data, glai_config, monkeypatch):
    """The value phase reads each example's gates from the cache; computing them from the structure in
    every step instead gives the same training."""
    cached = train_ladder(make_ladder(glai_config.model, 3), data, glai_config)
    calls = []
    original = families.batch_cache

    def no_cache(*args):
        calls.append(original(*args))
        return {}
    monkeypatch.setattr(families, "batch_cache", no_cache)
    uncached = train_ladder(make_ladder(glai_config.model, 3), data, glai_config)
    # both levels' and the baseline's value phases over the training set (the FLOP count reads one batch's)
    full = [c for c in calls if c and len(next(iter(c.values()))) == len(data.x_train)]
    assert len(full) == 3
    assert_same_math(jax.tree.leaves([r.variables for r in uncached.sal]),
                     jax.tree.leaves([r.variables for r in cached.sal]), atol=1e-6)
    cache = calls[-1]
    gates = glai.activation_pattern(cached.plain_epoch_matched.variables, data.x_train, 2)
    assert sorted(cache) == ["gates/dense_0", "gates/dense_1"]
    assert all(np.array_equal(cache[f"gates/dense_{i}"], g) for i, g in enumerate(gates))


def test_unit_path_norms_by_hand():
    params = {"dense_0": {"kernel": np.array([[1.0, 2.0], [3.0, 0.0]]), "bias": np.zeros(2)},
              "head": {"kernel": np.array([[1.0, 1.0, 2.0], [0.5, 0.0, 0.0]]), "bias": np.zeros(3)}}
    # unit 0: paths (in0 or in1) x (out0, out1, out2): (1 + 9) * (1 + 1 + 4); unit 1: (4 + 0) * 0.25
    norms, = glai.unit_path_norms(params, 1)
    np.testing.assert_allclose(norms, [np.sqrt(60.0), np.sqrt(1.0)])


def test_weight_path_norms_by_hand():
    params = {"dense_0": {"kernel": np.array([[1.0, 2.0], [3.0, 0.0]]), "bias": np.zeros(2)},
              "head": {"kernel": np.array([[1.0, 1.0, 2.0], [0.5, 0.0, 0.0]]), "bias": np.zeros(3)}}
    # into the inputs: 1; out of hidden unit 0: 1 + 1 + 4 = 6, of unit 1: 0.25. Into hidden 0: 1 + 9, 1: 4 + 0
    first, head = glai.weight_path_norms(params, 1)
    np.testing.assert_allclose(first, np.sqrt([[1 * 6, 4 * 0.25], [9 * 6, 0.0]]))
    np.testing.assert_allclose(head, np.sqrt([[10 * 1, 10 * 1, 10 * 4], [4 * 0.25, 0, 0]]))


def test_weight_pruning_keeps_a_fraction_of_each_layer_and_every_kept_path():
    """Each layer keeps floor(keep * size) weights, those of largest path norm; the pruned level's output
    is the sum over the paths whose edges were all kept, the gates those of the whole structure."""
    model = GlaiMLP(2, 6, 3)
    x = jax.random.normal(jax.random.key(4), (10, 5))
    frozen = glai.freeze(model.init(jax.random.key(5), x))
    pruned = glai.prune_weights(frozen, 2, 0.4)
    p, q = jax.tree.map(np.asarray, frozen["params"]), jax.tree.map(np.asarray, pruned["params"])
    for name, norms in zip(["dense_0", "dense_1", "head"], glai.weight_path_norms(p, 2)):
        kept = q[name]["kernel"] != 0
        assert kept.sum() == int(0.4 * norms.size)
        assert norms[kept].min() >= norms[~kept].max()
        np.testing.assert_array_equal(q[name]["kernel"][kept], p[name]["kernel"][kept])
    gates = glai.activation_pattern(frozen, x, 2)
    h = np.asarray(x)
    for i in range(2):
        h = gates[i] * (h @ q[f"dense_{i}"]["kernel"] + p[f"dense_{i}"]["bias"])
    np.testing.assert_allclose(model.apply(pruned, x)[0], h @ q["head"]["kernel"] + p["head"]["bias"],
                               rtol=1e-5, atol=1e-6)


def test_pruning_removes_exactly_the_paths_through_pruned_units():
    """One hidden layer: the logits are b_head + sum_j g_j(x) (w_j . x + b_j) v_j; pruning keeps the terms
    of the kept units (those of largest path norm) exactly and drops the others."""
    model = GlaiMLP(1, 6, 3)
    x = jax.random.normal(jax.random.key(0), (10, 4))
    frozen = glai.freeze(model.init(jax.random.key(1), x))
    frozen = {**frozen, "params": jax.tree.map(lambda p: p * 1.7 + 0.05, frozen["params"])}  # values != structure
    pruned = glai.prune_units(frozen, 1, [2])
    p = jax.tree.map(np.asarray, frozen["params"])
    kept = np.argsort(-glai.unit_path_norms(p, 1)[0])[:2]
    gate, = glai.activation_pattern(frozen, x, 1)
    hidden = gate * (np.asarray(x) @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
    expected = p["head"]["bias"] + hidden[:, kept] @ p["head"]["kernel"][kept]
    logits, _ = model.apply(pruned, x)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert glai.pruned_param_count(4, [2], 6, 3) == (4 + 1) * 2 + (2 + 1) * 3 + (4 + 1) * 6


def test_pruning_deep_levels_keeps_every_kept_units_gate():
    """Two hidden layers: the pruned level equals the frozen one with the pruned units' activations set to
    zero (their paths removed), the gates of the kept units unchanged."""
    model = GlaiMLP(2, 5, 3)
    x = jax.random.normal(jax.random.key(2), (12, 4))
    frozen = glai.freeze(model.init(jax.random.key(3), x))
    pruned = glai.prune_units(frozen, 2, [3, 2])
    p = jax.tree.map(np.asarray, frozen["params"])
    gates = glai.activation_pattern(frozen, x, 2)
    kept = [np.isin(np.arange(5), np.argsort(-n)[:k]) for n, k in zip(glai.unit_path_norms(p, 2), [3, 2])]
    h = np.asarray(x)
    for i in range(2):
        h = gates[i] * kept[i] * (h @ p[f"dense_{i}"]["kernel"] + p[f"dense_{i}"]["bias"])
    np.testing.assert_allclose(model.apply(pruned, x)[0], h @ p["head"]["kernel"] + p["head"]["bias"],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="keep\\[1\\] must be in 1..5"):
        glai.prune_units(frozen, 2, [3, 0])
    with pytest.raises(ValueError, match="prune a frozen GLAI level"):
        glai.prune_units({"params": frozen["params"]}, 2, [3, 2])


@pytest.mark.parametrize("hidden_layers, width", [(1, 64), (3, 90)])
def test_the_equal_parameter_mlp(hidden_layers, width):
    x = jnp.ones((1, 784))
    frozen = glai.freeze(GlaiMLP(hidden_layers, width, 10).init(jax.random.key(0), x))
    glai_count = sum(leaf.size for leaf in jax.tree.leaves(frozen))
    assert glai_count == glai.glai_param_count(784, width, hidden_layers, 10)
    assert param_count(frozen) == glai_count  # what results.json and the tables report
    mlp_width = glai.matched_mlp_width(784, width, hidden_layers, 10)
    mlp_count = num_params(MLP(hidden_layers, mlp_width, 10), x)
    assert mlp_count == mlp_param_count(784, mlp_width, hidden_layers, 10)
    assert abs(mlp_count - glai_count) <= mlp_param_count(784, mlp_width + 1, hidden_layers, 10) - mlp_count


def test_a_checkpointed_glai_level_loads_frozen_and_its_plain_baseline_too(tmp_path, data, glai_config):
    result = train_ladder(make_ladder(glai_config.model, 3), data, glai_config, checkpoint_dir=str(tmp_path))
    module, variables = load_level(str(tmp_path), 2)
    assert isinstance(module, GlaiMLP) and glai.is_frozen(variables)
    jax.tree.map(np.testing.assert_array_equal, variables, jax.tree.map(np.asarray, result.sal[-1].variables))
    _, plain = load_level(str(tmp_path), 2, kind="plain_epoch_matched")
    jax.tree.map(np.testing.assert_array_equal, plain, jax.tree.map(np.asarray, result.plain_epoch_matched.variables))
    with pytest.raises(ConfigError, match="the plain_time_matched baseline of level 2 has not finished training"):
        load_level(str(tmp_path), 2, kind="plain_time_matched")

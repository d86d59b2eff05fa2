"""Transformer levels (sal_jax/models/transformer.py): the level contract, padding, pre- vs post-LN,
patches and positions, the config checks, and a SAL ladder that trains."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from promises import MATMUL_RTOL
from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.levels import num_params
from sal_jax.models import TextTransformer, ViT, make_ladder, make_level
from sal_jax.validation import validate_inputs

# Padded and unpadded inputs differ in shape, so their float32 sums round alike only where matmuls run in
# full float32 (promises.MATMUL_RTOL), as in test_rnn.py.
TOKENS = jnp.array([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11]])


def residual_streams(model, variables, x):
    """Every block's output, per token: (B, L, dim) each."""
    _, state = model.apply(variables, x, capture_intermediates=True)
    return [state["intermediates"][f"block_{i}"]["__call__"][0] for i in range(model.blocks)]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_text_levels_return_logits_and_one_pooled_feature_per_block(pooling):
    model = TextTransformer(blocks=3, vocab_size=20, num_classes=4, dim=8, heads=2, pooling=pooling)
    logits, features = model.apply(model.init(jax.random.key(0), TOKENS), TOKENS)
    assert logits.shape == (2, 4)
    assert [f.shape for f in features] == [(2, 8)] * 3  # batch first, pooled like the logits


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_logits_or_features(pooling, norm):
    model = TextTransformer(blocks=2, vocab_size=20, num_classes=3, dim=8, heads=2, norm=norm, pooling=pooling)
    more_padding = jnp.pad(TOKENS, ((0, 0), (0, 4)))
    variables = model.init(jax.random.key(0), more_padding)  # positions for the longest input
    logits, features = model.apply(variables, TOKENS)
    logits_padded, features_padded = model.apply(variables, more_padding)
    np.testing.assert_allclose(logits, logits_padded, rtol=MATMUL_RTOL, atol=1e-5)
    for f, g in zip(features, features_padded):
        np.testing.assert_allclose(f, g, rtol=MATMUL_RTOL, atol=1e-5)
    # ...while every real token counts, the first of a sentence too
    changed, _ = model.apply(variables, TOKENS.at[0, 0].set(6))
    assert not np.allclose(changed[0], logits[0], atol=1e-4)
    np.testing.assert_allclose(changed[1], logits[1], rtol=MATMUL_RTOL, atol=1e-6)  # rows stay independent


def test_a_shorter_input_uses_the_first_positions_a_longer_one_is_refused():
    model = TextTransformer(blocks=1, vocab_size=20, num_classes=3, dim=8, heads=2)
    variables = model.init(jax.random.key(0), TOKENS)
    assert variables["params"]["position"].shape == (5, 8)
    model.apply(variables, TOKENS[:, :3])
    with pytest.raises(ValueError, match="initialised on 5"):
        model.apply(variables, jnp.pad(TOKENS, ((0, 0), (0, 1))))


def test_post_ln_blocks_output_normalised_tokens_and_pre_ln_blocks_do_not():
    """Post-LN ends each block in a LayerNorm (scale 1, bias 0 at init): every token of every block's output
    has mean 0 and variance 1 over its features. Pre-LN adds to an unnormalised residual stream."""
    x = jax.random.randint(jax.random.key(1), (4, 6), 1, 20)
    stats = {}
    for norm in ("pre", "post"):
        model = TextTransformer(blocks=3, vocab_size=20, num_classes=3, dim=16, heads=4, norm=norm)
        variables = model.init(jax.random.key(0), x)
        streams = jnp.stack(residual_streams(model, variables, x))
        stats[norm] = np.abs(streams.mean(-1)).max(), np.abs(streams.var(-1) - 1).max()
        assert ("ln_final" in variables["params"]) == (norm == "pre")  # post-LN's last block already normalises
    assert stats["post"][0] < 1e-5 and stats["post"][1] < 1e-3
    assert stats["pre"][1] > 0.1


@pytest.mark.parametrize("pooling, tokens", [("mean", 4), ("cls", 5)])
def test_vit_embeds_one_token_per_patch(pooling, tokens):
    model = ViT(blocks=2, num_classes=3, dim=8, heads=2, patch=4, pooling=pooling)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    variables = model.init(jax.random.key(1), x)
    logits, features = model.apply(variables, x)
    assert logits.shape == (2, 3) and [f.shape for f in features] == [(2, 8)] * 2
    assert [s.shape for s in residual_streams(model, variables, x)] == [(2, tokens, 8)] * 2  # 2x2 patches (+ CLS)
    assert variables["params"]["patch_embed"]["kernel"].shape == (4 * 4 * 3, 8)


def test_vit_sees_patch_order_only_through_its_position_embedding():
    model = ViT(blocks=2, num_classes=3, dim=8, heads=2, patch=4)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    swapped = x.at[:, :4, :4].set(x[:, 4:, 4:]).at[:, 4:, 4:].set(x[:, :4, :4])  # top-left <-> bottom-right patch
    variables = model.init(jax.random.key(1), x)
    assert not np.allclose(model.apply(variables, x)[0], model.apply(variables, swapped)[0], atol=1e-4)
    params = dict(variables["params"], position=jnp.zeros_like(variables["params"]["position"]))
    without_positions = {"params": params}  # self-attention and mean pooling ignore order
    np.testing.assert_allclose(model.apply(without_positions, x)[0], model.apply(without_positions, swapped)[0],
                               rtol=MATMUL_RTOL, atol=1e-5)


def transformer_config(family="transformer", **model):
    config = default_config()
    config.model.family, config.model.levels, config.model.dim, config.model.heads = family, (1, 2, 4), 8, 2
    config.model.update(model)
    return config


@pytest.mark.parametrize("family, x", [("transformer", TOKENS), ("vit", jnp.ones((1, 8, 8, 1)))])
def test_the_ladder_from_a_config_grows_in_blocks_and_parameters(family, x):
    levels = make_ladder(transformer_config(family).model, 3, vocab_size=20)
    assert [level.blocks for level in levels] == [1, 2, 4]
    counts = [num_params(level, x) for level in levels]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("family, key, value, message", [
    ("transformer", "norm", "sideways", r"config.model.norm: unknown 'sideways'; choose from \['pre', 'post'\]"),
    ("vit", "pooling", "max", r"config.model.pooling: unknown 'max'; choose from \['mean', 'cls'\]"),
    ("transformer", "dim", 9, r"config.model.dim: 9 is not divisible by config.model.heads \(2\)"),
    ("vit", "heads", 0, "config.model.heads: must be a positive integer, got 0"),
    ("transformer", "mlp_ratio", 0, "config.model.mlp_ratio: must be a positive number"),
    ("vit", "patch", 0, "config.model.patch: must be a positive integer, got 0"),
])
def test_bad_settings_fail_naming_the_field(family, key, value, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        make_level(family, 0, transformer_config(family, **{key: value}).model, 3, vocab_size=20)


def test_a_text_transformer_needs_a_vocabulary_and_a_vit_a_patch_that_divides_the_image():
    with pytest.raises(ConfigError, match="'transformer' needs a text dataset"):
        make_level("transformer", 0, transformer_config().model, 3)
    model = ViT(blocks=1, num_classes=3, dim=8, heads=2, patch=3)
    with pytest.raises(ConfigError, match="^config.model.patch: 3 does not divide the 8x8 images"):
        model.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))


def test_each_family_refuses_the_other_kind_of_input():
    text = ArrayDataset("text", np.ones((4, 5), np.int32), np.zeros(4, np.int32), np.ones((2, 5), np.int32),
                        np.zeros(2, np.int32), 3, vocab_size=20)
    images = ArrayDataset("images", np.ones((4, 8, 8), np.float32), np.zeros(4, np.int32),
                          np.ones((2, 8, 8), np.float32), np.zeros(2, np.int32), 3)
    with pytest.raises(ConfigError, match=r"level 1 \(ViT\) needs images of shape \(N, H, W, C\)$"):
        validate_inputs([ViT(1, 3, dim=8, heads=2)], images)
    with pytest.raises(ConfigError, match=r"level 1 \(TextTransformer\) needs integer token ids"):
        validate_inputs([TextTransformer(1, 20, 3, dim=8, heads=2)], images)
    validate_inputs([TextTransformer(1, 20, 3, dim=8, heads=2)], text)


def tiny_tokens(n: int = 96) -> ArrayDataset:
    """Length-6 token rows padded after 3..6 tokens; class = first token mod 3."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2 * n).astype(np.int32)
    x = np.where(np.arange(6) < rng.integers(3, 7, (2 * n, 1)), rng.integers(1, 30, (2 * n, 6)), 0)
    x[:, 0] = 3 * rng.integers(1, 9, 2 * n) + y
    x = x.astype(np.int32)
    return ArrayDataset("tokens", x[:n], y[:n], x[n:], y[n:], 3, vocab_size=30)


def test_a_two_level_ladder_trains_with_guidance():
    """Through the trainer with the family's defaults (pre-LN, mean pooling). Text only: a ViT level runs the
    same encoder, and each ladder costs ~10 s of compilation on a CPU."""
    config = transformer_config(levels=(1, 2))
    config.train.epochs, config.train.batch_size, config.train.learning_rate = 3, 32, 3e-3
    config.baselines.epoch_matched = config.baselines.time_matched = False
    data = tiny_tokens()
    result = train_ladder(make_ladder(config.model, data.num_classes, data.vocab_size), data, config)
    assert [run.level for run in result.sal] == [1, 2]
    rows = [row for run in result.sal for row in run.history]
    assert all(np.isfinite(value) for row in rows for value in row.values())
    assert result.sal[1].history[-1]["train_hidden"] > 0  # the student was guided by the teacher's features
    assert all(run.history[-1]["train_loss"] < run.history[0]["train_loss"] for run in result.sal)


def test_a_saved_level_is_recognised_as_the_built_in_one_it_is_and_not_another():
    """load_level's check (checkpoint._built_in_mismatch) rebuilds the sample input from the saved position
    table: a level's own variables match (text of 5 tokens, 8x8x1 images), another width does not."""
    from sal_jax.checkpoint import _built_in_mismatch

    for family, x, level, other in (
            ("transformer", TOKENS, TextTransformer(2, 20, 3, dim=8, heads=2), TextTransformer(2, 20, 3, dim=12, heads=2)),
            ("vit", jnp.ones((1, 8, 8, 1)), ViT(2, 3, dim=8, heads=2), ViT(2, 3, dim=12, heads=2))):
        variables = level.init(jax.random.key(0), x)
        assert _built_in_mismatch(level, family, variables) is None
        assert "has shape" in _built_in_mismatch(other, family, variables)

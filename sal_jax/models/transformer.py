"""Transformer levels: a ladder of encoder blocks at fixed width, for text (TextTransformer) and images (ViT).

Both embed their input as a sequence of `dim`-wide tokens and run the same `EncoderBlock`s; a level's
depth is its number of blocks. features[j] is block j+1's residual stream pooled the way the logits are
(mean over real tokens, or the CLS token): (batch, dim), so feature matching needs no mask, and levels of
one `dim` match without projections.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sal_jax.data.text import PAD_ID
from sal_jax.errors import ConfigError, is_integer, is_number

NORMS = ("pre", "post")
POOLINGS = ("mean", "cls")

# BERT and ViT initialise their learned tokens, positions and CLS token at this scale.
embed_init = nn.initializers.normal(stddev=0.02)


def check_settings(dim: int, heads: int, mlp_ratio: float, norm: str, pooling: str) -> None:
    """ConfigError naming the config.model field of the first bad transformer setting."""
    for field, value in (("dim", dim), ("heads", heads)):
        if not is_integer(value) or value <= 0:
            raise ConfigError(f"config.model.{field}: must be a positive integer, got {value!r}")
    if dim % heads:
        raise ConfigError(f"config.model.dim: {dim} is not divisible by config.model.heads ({heads}); "
                          f"each head gets dim / heads features")
    if not is_number(mlp_ratio) or int(mlp_ratio * dim) < 1:
        raise ConfigError(f"config.model.mlp_ratio: must be a positive number with mlp_ratio * dim >= 1, "
                          f"got {mlp_ratio!r}")
    if norm not in NORMS:
        raise ConfigError(f"config.model.norm: unknown {norm!r}; choose from {list(NORMS)}")
    if pooling not in POOLINGS:
        raise ConfigError(f"config.model.pooling: unknown {pooling!r}; choose from {list(POOLINGS)}")


class EncoderBlock(nn.Module):
    """Multi-head self-attention, then an MLP (mlp_ratio * dim hidden units, GELU), each a residual branch.

    norm "pre": h + f(LN(h)); the residual stream itself is never normalised, which keeps deep stacks
    trainable without warm-up. "post": LN(h + f(h)), the original Transformer; every block's output is
    normalised per token, and deep stacks are known to diverge without learning-rate warm-up.
    """

    dim: int
    heads: int
    mlp_ratio: float = 2
    norm: str = "pre"

    @nn.compact
    def __call__(self, h: jax.Array, mask: jax.Array) -> jax.Array:
        attention = nn.MultiHeadDotProductAttention(self.heads, qkv_features=self.dim, name="attention")

        def mlp(x: jax.Array) -> jax.Array:
            x = nn.gelu(nn.Dense(int(self.mlp_ratio * self.dim), name="mlp_in")(x))
            return nn.Dense(self.dim, name="mlp_out")(x)

        if self.norm == "pre":
            h = h + attention(nn.LayerNorm(name="ln_attention")(h), mask=mask)
            return h + mlp(nn.LayerNorm(name="ln_mlp")(h))
        h = nn.LayerNorm(name="ln_attention")(h + attention(h, mask=mask))
        return nn.LayerNorm(name="ln_mlp")(h + mlp(h))


def pool(h: jax.Array, valid: jax.Array, pooling: str) -> jax.Array:
    """(B, L, dim) -> (B, dim): the CLS token (position 0), or the mean over valid tokens (0 if none)."""
    if pooling == "cls":
        return h[:, 0]
    count = jnp.maximum(valid.sum(axis=1, keepdims=True), 1)
    return jnp.where(valid[..., None], h, 0.0).sum(axis=1) / count  # `where`, not `*`: pads never leak in


def _encode(level: nn.Module, h: jax.Array, valid: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """The shared body, called inside a level's compact `__call__` (so its layers are the level's):
    `level` has fields blocks, dim, heads, mlp_ratio, norm, pooling, num_classes; h is (B, L, dim)."""
    check_settings(level.dim, level.heads, level.mlp_ratio, level.norm, level.pooling)
    if level.pooling == "cls":  # learned, so it needs no position of its own
        cls = level.param("cls", embed_init, (level.dim,))
        h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, level.dim)), h], axis=1)
        valid = jnp.concatenate([jnp.ones((h.shape[0], 1), bool), valid], axis=1)
    # (B, heads, queries, keys) by broadcasting: no token attends to a pad key, so the real tokens' values
    # do not depend on the padding; pad queries still attend to the real keys (no all-masked softmax row).
    mask = valid[:, None, None, :]
    features = []
    for i in range(level.blocks):
        h = EncoderBlock(level.dim, level.heads, level.mlp_ratio, level.norm, name=f"block_{i}")(h, mask)
        features.append(pool(h, valid, level.pooling))
    if level.norm == "pre":  # post-LN blocks already end in a LayerNorm
        h = nn.LayerNorm(name="ln_final")(h)
    return nn.Dense(level.num_classes, name="head")(pool(h, valid, level.pooling)), tuple(features)


class TextTransformer(nn.Module):
    """Int token ids (B, L) (PAD_ID = 0 is padding) -> token + learned position embeddings -> `blocks`
    encoder blocks -> pooled -> linear head.

    The position table has one row per token of the input the level is initialised on (the dataset's
    max_len), inferred like a Dense layer's input width; a shorter input uses its first rows, so the same
    sentence with more or less padding gives the same result.
    """

    blocks: int
    vocab_size: int
    num_classes: int
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 2
    norm: str = "pre"
    pooling: str = "mean"

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        del train  # no dropout
        length = tokens.shape[1]
        if self.has_variable("params", "position"):  # read, not `param`: that would demand the init shape
            positions = self.get_variable("params", "position")
            if length > positions.shape[0]:
                raise ValueError(f"TextTransformer: {length} tokens, but it was initialised on {positions.shape[0]}")
        else:
            positions = self.param("position", embed_init, (length, self.dim))
        h = nn.Embed(self.vocab_size, self.dim, embedding_init=embed_init, name="embed")(tokens)
        return _encode(self, h + positions[:length], tokens != PAD_ID)


class ViT(nn.Module):
    """Images (B, H, W, C) -> non-overlapping `patch` x `patch` patches, linearly embedded, + learned
    position embeddings -> `blocks` encoder blocks -> pooled -> linear head."""

    blocks: int
    num_classes: int
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 2
    patch: int = 4
    norm: str = "pre"
    pooling: str = "mean"

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        del train  # no dropout
        b, height, width, c = images.shape
        p = self.patch
        if height % p or width % p:
            raise ConfigError(f"config.model.patch: {p} does not divide the {height}x{width} images")
        # Patches flattened by a reshape and embedded by one Dense: the map of a Conv with kernel = stride =
        # patch, but no convolution, whose gradient XLA:CPU runs slowly inside the training loop (chunks.py).
        x = images.reshape(b, height // p, p, width // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        h = nn.Dense(self.dim, name="patch_embed")(x.reshape(b, height // p, width // p, p * p * c))
        # (rows, cols, dim): the saved table's shape tells the image size the level was built for
        h = h + self.param("position", embed_init, h.shape[1:])
        h = h.reshape(b, -1, self.dim)
        return _encode(self, h, jnp.ones(h.shape[:2], bool))

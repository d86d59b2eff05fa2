"""NNX models for the tests (tests/test_nnx_levels.py and the checkpoint and parallel children)."""
from flax import nnx

from sal_jax.auto_ladder import ladder_from


class NnxMLP(nnx.Module):
    """The built-in MLP (sal_jax.models.mlp.MLP) written in NNX: the same layers under the same names, so a
    Linen MLP's params fit it, returning (logits, features) like the Linen one."""

    def __init__(self, in_dim: int, hidden_layers: int, width: int, num_classes: int, rngs: nnx.Rngs):
        for i in range(hidden_layers):
            setattr(self, f"dense_{i}", nnx.Linear(in_dim if i == 0 else width, width, rngs=rngs))
        self.hidden_layers = hidden_layers
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x):
        h, features = x.reshape(x.shape[0], -1), []
        for i in range(self.hidden_layers):
            h = nnx.relu(getattr(self, f"dense_{i}")(h))
            features.append(h)
        return self.head(h), tuple(features)


class Block(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.linear = nnx.Linear(width, width, use_bias=False, rngs=rngs)  # BatchNorm follows: a bias there has no gradient
        self.norm = nnx.BatchNorm(width, rngs=rngs)

    def __call__(self, x):
        return x + nnx.relu(self.norm(self.linear(x)))


class NnxResNet(nnx.Module):
    """A residual MLP with BatchNorm and Dropout that returns logits only, as NNX users write one: its
    features are named ("blocks/*"), its BatchNorm statistics and Dropout RNG stream are state."""

    def __init__(self, in_dim: int, blocks: int, width: int, num_classes: int, rngs: nnx.Rngs):
        self.embed = nnx.Linear(in_dim, width, rngs=rngs)
        self.blocks = nnx.List([Block(width, rngs) for _ in range(blocks)])
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(self.dropout(h))


def resnet_ladder(depths, in_dim: int, width: int, num_classes: int, seed: int = 0) -> list:
    """NnxResNet levels of the given depths, features named by pattern; level k's Rngs from seed + k."""
    seeds = iter(range(seed, seed + len(depths)))
    return ladder_from(lambda d: NnxResNet(in_dim, d, width, num_classes, nnx.Rngs(next(seeds))), depths=depths,
                       features=("blocks/*",))

"""RNN levels: token embedding + a ladder of stacked GRU/LSTM layers for text classification."""
from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from sal_jax.data.text import PAD_ID

CELLS = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}


class RNN(nn.Module):
    """Embeds int token ids (B, L) (0 = padding), runs `layers` stacked recurrent layers, classifies
    from the top layer's state at each sequence's last real token.

    features[j] is layer j+1's hidden state at the last real token (B, hidden): padding never enters
    a feature, so feature matching needs no mask.
    """

    layers: int
    hidden: int
    vocab_size: int
    num_classes: int
    embed_dim: int = 64
    cell: str = "gru"

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        del train
        lengths = jnp.maximum(jnp.sum(tokens != PAD_ID, axis=1), 1)  # an all-padding row reads one step
        h = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(tokens)
        features = []
        for i in range(self.layers):
            carry, h = nn.RNN(CELLS[self.cell](self.hidden), return_carry=True, name=f"rnn_{i}")(
                h, seq_lengths=lengths)
            features.append(carry[1] if self.cell == "lstm" else carry)  # LSTM carry is (c, h)
        return nn.Dense(self.num_classes, name="head")(features[-1]), tuple(features)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from promises import MATMUL_RTOL
from sal_jax.models import RNN

# Padding must not change the result; the padded and unpadded programs differ in shape, so their
# float32 matmuls round alike only where they run in full float32 (promises.MATMUL_RTOL).


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_does_not_change_logits_or_features(cell):
    model = RNN(layers=2, hidden=6, vocab_size=20, num_classes=3, embed_dim=5, cell=cell)
    tokens = jnp.array([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11]])
    more_padding = jnp.pad(tokens, ((0, 0), (0, 4)))
    variables = model.init(jax.random.key(0), tokens)
    logits, features = model.apply(variables, tokens)
    logits_padded, features_padded = model.apply(variables, more_padding)
    assert logits.shape == (2, 3) and [f.shape for f in features] == [(2, 6), (2, 6)]
    np.testing.assert_allclose(logits, logits_padded, rtol=MATMUL_RTOL, atol=1e-6)
    for f, g in zip(features, features_padded):
        np.testing.assert_allclose(f, g, rtol=MATMUL_RTOL, atol=1e-6)


def test_the_last_real_token_matters_padding_tokens_do_not():
    model = RNN(layers=1, hidden=4, vocab_size=10, num_classes=2)
    variables = model.init(jax.random.key(0), jnp.ones((1, 3), jnp.int32))
    a, _ = model.apply(variables, jnp.array([[1, 2, 0]]))
    b, _ = model.apply(variables, jnp.array([[1, 3, 0]]))  # the second (last real) token differs
    c, _ = model.apply(variables, jnp.array([[1, 2]]))
    assert not np.allclose(a, b)
    np.testing.assert_allclose(a, c, rtol=MATMUL_RTOL, atol=1e-6)

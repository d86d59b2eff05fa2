import numpy as np

from sal_jax.data.arrays import batches, epoch_order, num_batches
from sal_jax.data.digits import load_digits_dataset


def test_batches_have_fixed_shape_and_padding_weighs_zero():
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10) % 3
    out = list(batches(x, y, 4))
    assert len(out) == num_batches(10, 4) == 3
    assert all(b["x"].shape == (4, 1) and b["y"].dtype == np.int32 for b in out)
    np.testing.assert_array_equal(out[-1]["weight"], [1, 1, 0, 0])
    seen = np.concatenate([b["x"][b["weight"] > 0, 0] for b in out])
    np.testing.assert_array_equal(np.sort(seen), np.arange(10))  # every example exactly once


def test_epoch_order_is_a_pure_function_of_seed_and_stream():
    a = epoch_order(100, 0, 2, 1, 5)
    np.testing.assert_array_equal(a, epoch_order(100, 0, 2, 1, 5))
    np.testing.assert_array_equal(np.sort(a), np.arange(100))
    assert not np.array_equal(a, epoch_order(100, 0, 2, 1, 6))
    assert not np.array_equal(a, epoch_order(100, 1, 2, 1, 5))


def test_digits_is_the_embedded_default():
    d = load_digits_dataset()
    assert (len(d.x_train), len(d.x_test)) == (1257, 540)  # 1,797 digits, 30% held out
    assert d.x_train.shape[1:] == (64,) and d.x_train.dtype == np.float32
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    np.testing.assert_array_equal(np.unique(d.y_test), np.arange(10))
    assert load_digits_dataset(flatten=False).x_train.shape[1:] == (8, 8, 1)

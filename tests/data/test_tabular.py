"""scikit-learn's tabular sets: stratified, seeded splits, standardised by the training split."""
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data import load_dataset


@pytest.mark.parametrize("name, size, features, classes", [("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3)])
def test_tabular_sets_split_stratified_and_standardised(name, size, features, classes):
    data_config = default_config().data
    data_config.name = name
    data = load_dataset(data_config)
    assert len(data.x_train) + len(data.x_test) == size and data.x_train.shape[1] == features
    assert data.num_classes == classes and data.x_train.dtype == np.float32
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(0), 1, atol=1e-4)
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.02)  # stratified
    again = load_dataset(data_config)
    np.testing.assert_array_equal(again.x_test, data.x_test)
    data_config.subset_seed = 1
    assert not np.array_equal(load_dataset(data_config).y_test, data.y_test)  # the split follows the seed

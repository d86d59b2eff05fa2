"""Shared fixtures: a tiny synthetic task, configs small enough for fast, exact tests, and the datasets.

Real-data tests take `real_tfds_dir` / `real_text_dir`. Their root is $SAL_JAX_TEST_DATA (a folder holding
`tensorflow_datasets/` and `datasets/`, see the README's "Datasets"), else `<repo>/../shared` if it exists.
Without it they skip, so a fresh clone passes; with SAL_JAX_REQUIRE_TEST_DATA=1 (CI) they fail instead.

Loader tests take `tiny_tfds_dir` / `tiny_text_dir`: tiny copies of every dataset in the real on-disk
formats, written here, so a clone without the real data still tests the loaders end to end. Tests state
their expected values by hand from these contents:

`tiny_tfds_dir`: a TFDS data directory written by TFDS's own writer (ArrayRecord, no TensorFlow), with the
features, names and versions of the real `mnist` 3.0.1 and `cifar10` 3.0.2:
- mnist train: 20 images, image i (i = 0..19) filled with the value 13 * i, label i % 10;
  mnist test: 10 images, image j (j = 0..9) filled with 255 - 25 * j, label j.
- cifar10 train: 10 images, label k (k = 0..9), id b"train_0000k"; channel R is 0 for k < 5 and 255 for
  k >= 5, G is 51 for even k and 153 for odd k, B is 0 in columns 0-15 and 204 in columns 16-31;
  cifar10 test: 10 images, label k, id b"test_0000k", every pixel (R, G, B) = (204, 204, 102).

`tiny_text_dir`: `trec/TREC.{train,test}` and `emotion/{train,val,test}.txt` with the lines of TREC_* and
EMOTION_* below.

(One conftest.py for all of them: a second one, in tests/data, would shadow this module for the
`from conftest import blobs` of test_checkpoint.py and test_parallel.py.)
"""
from __future__ import annotations

import os
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.determinism import enable_determinism

# The suite runs in deterministic mode (before anything starts JAX's backend, for the child processes
# that import this module too): on a GPU the tests then promise what a deterministic run gives, bit for
# bit where tests/promises.py says so. On a CPU it changes nothing. SAL_JAX_TEST_DETERMINISTIC=0 runs
# the suite in the backend's default mode (see DEVELOPERS.md).
if os.environ.get("SAL_JAX_TEST_DETERMINISTIC", "1") != "0":
    enable_determinism()


def blobs(n_train: int = 150, n_test: int = 60, dim: int = 8, classes: int = 3, seed: int = 0) -> ArrayDataset:
    """Gaussian class blobs: learnable in a few steps, so tests can check that training does something."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (classes, dim))

    def split(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        return (centers[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y

    (x_tr, y_tr), (x_te, y_te) = split(n_train), split(n_test)
    return ArrayDataset("blobs", x_tr, y_tr, x_te, y_te, num_classes=classes)


@pytest.fixture
def data() -> ArrayDataset:
    return blobs()


@pytest.fixture
def config() -> ml_collections.ConfigDict:
    """A 3-level MLP ladder, 3 epochs per level, batch 32 (150 examples: a ragged last batch)."""
    c = default_config()
    c.model.levels = (1, 2, 3)
    c.model.width = 16
    c.train.epochs = 3
    c.train.batch_size = 32
    c.train.learning_rate = 3e-2
    return c


# --- the real datasets --------------------------------------------------------------------------------------

def _real_data(subfolder: str) -> Path:
    """<root>/<subfolder>, or a skip (a failure when SAL_JAX_REQUIRE_TEST_DATA is set) that says what to set."""
    root = os.environ.get("SAL_JAX_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared"  # <repo>/../shared
    path = Path(root) / subfolder
    if path.is_dir():
        return path
    reason = (f"real data not found at {path}: set SAL_JAX_TEST_DATA to a folder holding tensorflow_datasets/ "
              f'and datasets/ (README, "Datasets")')
    required = os.environ.get("SAL_JAX_REQUIRE_TEST_DATA", "0")
    if required not in ("", "0"):  # any value but 0: "true" must not quietly mean "may skip"
        pytest.fail(f"{reason}; SAL_JAX_REQUIRE_TEST_DATA={required} forbids skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_tfds_dir() -> Path:
    """The TFDS data directory with the prepared `mnist` and `cifar10`."""
    return _real_data("tensorflow_datasets")


@pytest.fixture(scope="session")
def real_text_dir() -> Path:
    """The folder holding `trec/` and `emotion/` raw text files."""
    return _real_data("datasets")


# --- tiny copies in the real formats -------------------------------------------------------------------------

# TREC: `COARSE:fine question`. Line 2 has TREC.train's one non-ASCII byte, 0xF0 (latin-1 'ð').
TREC_TRAIN = """\
ABBR:exp What does NASA stand for ?
DESC:def What is a sister\xf0city ?
ENTY:animal What animal is Flipper ?
HUM:ind Who is Flipper ?
LOC:city Where is Paris ?
NUM:count How many legs does a spider have ?
"""
TREC_TEST = """\
HUM:ind Who is Zorro ?
LOC:country Where is Peru ?
"""
# CARER: `text;label`, lower-case. Train counts per label (sadness, joy, love, anger, fear, surprise): 3 4 2 2 2 2.
EMOTION_TRAIN = """\
i feel sad;sadness
i feel low;sadness
i feel lost;sadness
i feel happy;joy
i feel glad;joy
i feel great;joy
i feel cheerful;joy
i feel loved;love
i feel tender;love
i feel angry;anger
i feel mad;anger
i feel afraid;fear
i feel scared;fear
i feel amazed;surprise
i feel shocked;surprise
"""
EMOTION_VAL = "i feel calm;joy\n"
EMOTION_TEST = """\
i feel blue;sadness
i feel happy;joy
"""
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_tfds_dataset(data_dir: Path, name: str, version: str, features, splits: dict[str, list[dict]]) -> None:
    """Writes `data_dir/name/version/` the way `tfds.builder(name).download_and_prepare()` would.

    A throwaway GeneratorBasedBuilder, because TFDS 4.9.10's simpler `store_as_tfds_dataset` imports the
    `importlib_resources` backport, which it only installs on Python < 3.9.
    """
    import tensorflow_datasets as tfds

    class Tiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # the real `name` stays registered
        VERSION = tfds.core.Version(version)
        code_path = None  # no checksums file to look for, and it avoids the same importlib_resources lookup

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(examples) for split, examples in splits.items()}

        def _generate_examples(self, examples):
            yield from enumerate(examples)

    Tiny.name = name  # after the class body: `name = name` there would not see this function's argument
    Tiny(data_dir=data_dir).download_and_prepare(file_format="array_record")


def _png(pixels: np.ndarray):
    # TFDS encodes numpy images with TensorFlow; a PIL image it encodes itself (lossless PNG).
    import PIL.Image  # here, like tensorflow_datasets: the child processes that import this module need neither

    return PIL.Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)


def _cifar10_train_image(k: int) -> np.ndarray:
    image = np.empty((32, 32, 3), np.uint8)
    image[..., 0] = 0 if k < 5 else 255
    image[..., 1] = 51 if k % 2 == 0 else 153
    image[:, :16, 2], image[:, 16:, 2] = 0, 204
    return image


@pytest.fixture(scope="session")
def tiny_tfds_dir(tmp_path_factory) -> Path:
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    mnist = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(28, 28, 1)),
                                        "label": tfds.features.ClassLabel(num_classes=10)})
    write_tfds_dataset(root, "mnist", "3.0.1", mnist, {
        "train": [{"image": _png(np.full((28, 28, 1), 13 * i, np.uint8)), "label": i % 10} for i in range(20)],
        "test": [{"image": _png(np.full((28, 28, 1), 255 - 25 * j, np.uint8)), "label": j} for j in range(10)],
    })
    cifar10 = tfds.features.FeaturesDict({"id": tfds.features.Text(),
                                          "image": tfds.features.Image(shape=(32, 32, 3)),
                                          "label": tfds.features.ClassLabel(names=CIFAR10_NAMES)})
    test_image = np.full((32, 32, 3), (204, 204, 102), np.uint8)
    write_tfds_dataset(root, "cifar10", "3.0.2", cifar10, {
        "train": [{"id": f"train_{k:05d}", "image": _png(_cifar10_train_image(k)), "label": k} for k in range(10)],
        "test": [{"id": f"test_{k:05d}", "image": _png(test_image), "label": k} for k in range(10)],
    })
    return root


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text")
    files = {"trec/TREC.train": TREC_TRAIN, "trec/TREC.test": TREC_TEST, "emotion/train.txt": EMOTION_TRAIN,
             "emotion/val.txt": EMOTION_VAL, "emotion/test.txt": EMOTION_TEST}
    for relative, text in files.items():
        (root / relative).parent.mkdir(exist_ok=True)
        (root / relative).write_bytes(text.encode("latin-1"))  # one byte per character, 0xF0 included
    return root

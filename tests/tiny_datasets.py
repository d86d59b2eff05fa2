"""Tiny copies of MNIST, CIFAR-10, TREC and CARER in their real on-disk formats, for the loader tests
(fixtures `tiny_tfds_dir` and `tiny_text_dir` in conftest.py).

`tiny_tfds_dir`: a TFDS data directory written by TFDS's own writer (ArrayRecord, no TensorFlow), with the
features, names and versions of the real `mnist` 3.0.1 and `cifar10` 3.0.2:
- mnist train: 20 images, image i (i = 0..19) filled with the value 13 * i, label i % 10;
  mnist test: 10 images, image j (j = 0..9) filled with 255 - 25 * j, label j.
- cifar10 train: 10 images, label k (k = 0..9), id b"train_0000k"; channel R is 0 for k < 5 and 255 for
  k >= 5, G is 51 for even k and 153 for odd k, B is 0 in columns 0-15 and 204 in columns 16-31;
  cifar10 test: 10 images, label k, id b"test_0000k", every pixel (R, G, B) = (204, 204, 102).

`tiny_text_dir`: `trec/TREC.{train,test}` and `emotion/{train,val,test}.txt` with the lines of TREC_* and
EMOTION_* below.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

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

    class LocalInfo(tfds.core.DatasetInfo):
        def initialize_from_bucket(self) -> None:
            """Nothing: TFDS's, called by a builder of a dataset not on disk yet, makes an empty tmp*tfds folder
            in the temp directory, never removed, to copy the dataset's metadata from gs://tfds-data into."""

    class Tiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # the real `name` stays registered
        VERSION = tfds.core.Version(version)
        code_path = None  # no checksums file to look for, and it avoids the same importlib_resources lookup

        def _info(self):
            return LocalInfo(builder=self, features=features)

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


def write_tiny_tfds(root: Path) -> Path:
    """The tiny `mnist` and `cifar10` (see the module docstring) under the TFDS data directory `root`."""
    import tensorflow_datasets as tfds

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


def write_tiny_text(root: Path) -> Path:
    """`trec/` and `emotion/` with the lines above, under `root`."""
    files = {"trec/TREC.train": TREC_TRAIN, "trec/TREC.test": TREC_TEST, "emotion/train.txt": EMOTION_TRAIN,
             "emotion/val.txt": EMOTION_VAL, "emotion/test.txt": EMOTION_TEST}
    for relative, text in files.items():
        (root / relative).parent.mkdir(exist_ok=True)
        (root / relative).write_bytes(text.encode("latin-1"))  # one byte per character, 0xF0 included
    return root

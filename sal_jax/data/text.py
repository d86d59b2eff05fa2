"""TREC (6 coarse classes) and CARER emotion (6 classes) as padded int32 token ids with a train-only vocabulary.

The vocabulary is built from the training split alone, so test words the model never saw map to the
unknown id, as they would for a deployed model.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import os
import re

import numpy as np

from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError

PAD_ID, UNK_ID = 0, 1
PAD, UNK = "<pad>", "<unk>"

# Label id = position in these tuples. TREC: coarse classes, alphabetical. Emotion: the order of the
# CARER release (as in the widely used `emotion` dataset: 0 sadness ... 5 surprise).
LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "trec": ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
    "emotion": ("sadness", "joy", "love", "anger", "fear", "surprise"),
}
# Files under `data_dir` for (train, test). Emotion's val.txt is not used yet.
_FILES = {"trec": ("trec/TREC.train", "trec/TREC.test"), "emotion": ("emotion/train.txt", "emotion/test.txt")}
_TOKEN = re.compile(r"\w+|[^\w\s]")  # runs of word characters, or one punctuation mark


def tokenize(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: 'What's up?' -> what ' s up ?"""
    return _TOKEN.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token strings indexed by id: tokens[0] is the padding token, tokens[1] the unknown token."""

    tokens: tuple[str, ...]

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(token, UNK_ID) for token in tokenize(text)]


def build_vocab(texts: list[str], min_count: int = 1, max_vocab: int | None = None) -> Vocab:
    """Tokens seen at least `min_count` times, most frequent first, ties alphabetical (so it is deterministic).

    `max_vocab` caps the whole vocabulary, padding and unknown included, i.e. the embedding table size.
    """
    counts = collections.Counter(token for text in texts for token in tokenize(text))
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    if max_vocab is not None:
        kept = kept[:max_vocab - 2]
    return Vocab((PAD, UNK, *kept))


def encode_texts(texts: list[str], vocab: Vocab, max_len: int) -> np.ndarray:
    """int32 ids (N, max_len): truncated at the end, padded with PAD_ID at the end."""
    ids = np.full((len(texts), max_len), PAD_ID, np.int32)
    for row, text in enumerate(texts):
        encoded = vocab.encode(text)[:max_len]
        ids[row, :len(encoded)] = encoded
    return ids


def _read_lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise ConfigError(f"text dataset file {path} is missing; set data_dir (config.data.data_dir) "
                          f"to the folder that holds trec/ and emotion/")
    # latin-1 decodes every byte; TREC.train has one stray 0xF0 byte, the rest is ASCII.
    with open(path, encoding="latin-1") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _parse(name: str, path: str) -> tuple[list[str], np.ndarray]:
    """(texts, int32 label ids) of one file: TREC `COARSE:fine question ...`, emotion `text;label`."""
    label_ids = {label: i for i, label in enumerate(LABEL_NAMES[name])}
    texts, labels = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        if name == "trec":
            label_field, _, text = line.partition(" ")
            label = label_field.split(":")[0]
        else:
            text, _, label = line.rpartition(";")
        if label not in label_ids:
            raise ConfigError(f"{path} line {number}: unknown label {label!r}; expected one of {list(label_ids)}")
        texts.append(text)
        labels.append(label_ids[label])
    return texts, np.asarray(labels, np.int32)


def load_text_dataset(name: str, data_dir: str, max_len: int = 32, min_count: int = 1,
                      max_vocab: int | None = None) -> tuple[ArrayDataset, Vocab]:
    """TREC or emotion as (N, max_len) int32 token ids, with the vocabulary built from the train split."""
    if name not in LABEL_NAMES:
        raise ConfigError(f"config.data.name: unknown text dataset {name!r}; choose from {list(LABEL_NAMES)}")
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    if min_count < 1:
        raise ConfigError(f"min_count must be >= 1, got {min_count}")
    if max_vocab is not None and max_vocab < 2:
        raise ConfigError(f"max_vocab must be >= 2 (padding and unknown ids), got {max_vocab}")
    train_path, test_path = (os.path.join(data_dir, file) for file in _FILES[name])
    train_texts, y_train = _parse(name, train_path)
    test_texts, y_test = _parse(name, test_path)
    vocab = build_vocab(train_texts, min_count, max_vocab)
    dataset = ArrayDataset(name, encode_texts(train_texts, vocab, max_len), y_train,
                           encode_texts(test_texts, vocab, max_len), y_test,
                           num_classes=len(LABEL_NAMES[name]), vocab_size=len(vocab))
    return dataset, vocab

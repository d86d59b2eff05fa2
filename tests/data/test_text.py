"""TREC and emotion loading; expected counts are those of ../shared/datasets/README.md."""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from sal_jax.data.text import LABEL_NAMES, PAD_ID, UNK_ID, build_vocab, encode_texts, load_text_dataset, tokenize
from sal_jax.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets"  # <repo>/../shared/datasets


@pytest.fixture(scope="module")
def trec():
    return load_text_dataset("trec", str(DATA_DIR))


@pytest.fixture(scope="module")
def emotion():
    return load_text_dataset("emotion", str(DATA_DIR))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="latin-1").splitlines()


def test_trec_sizes_and_coarse_label_counts(trec):
    data, vocab = trec
    assert LABEL_NAMES["trec"] == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert data.x_train.shape == (5452, 32) and data.x_test.shape == (500, 32)
    assert data.x_train.dtype == np.int32 and data.y_train.dtype == np.int32
    assert data.num_classes == 6 and data.vocab_size == len(vocab)
    assert np.bincount(data.y_train).tolist() == [86, 1162, 1250, 1223, 835, 896]
    assert np.bincount(data.y_test).tolist() == [9, 138, 94, 65, 81, 113]


def test_emotion_sizes_and_label_counts(emotion):
    data, vocab = emotion
    assert LABEL_NAMES["emotion"] == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert data.x_train.shape == (16000, 32) and data.x_test.shape == (2000, 32)
    assert np.bincount(data.y_train).tolist() == [4666, 5362, 1304, 2159, 1937, 572]
    assert np.bincount(data.y_test).tolist() == [581, 695, 159, 275, 224, 66]
    assert 0 <= data.x_train.min() and data.x_train.max() < data.vocab_size == len(vocab)


def test_first_trec_question_is_encoded_in_order(trec):
    data, vocab = trec
    first = _lines(DATA_DIR / "trec" / "TREC.train")[0]  # "DESC:manner How did serfdom develop in ..."
    words = tokenize(first.split(" ", 1)[1])
    assert data.y_train[0] == LABEL_NAMES["trec"].index("DESC")
    assert [vocab.tokens[i] for i in data.x_train[0, :len(words)]] == words
    assert np.all(data.x_train[0, len(words):] == PAD_ID)


def test_vocab_is_train_only_ordered_by_frequency_then_alphabet(emotion):
    data, vocab = emotion
    train_texts = [line.rsplit(";", 1)[0] for line in _lines(DATA_DIR / "emotion" / "train.txt")]
    counts = collections.Counter(t for text in train_texts for t in tokenize(text))
    assert vocab.tokens[PAD_ID] == "<pad>" and vocab.tokens[UNK_ID] == "<unk>"
    assert set(vocab.tokens[2:]) == set(counts)
    keys = [(-counts[t], t) for t in vocab.tokens[2:]]
    assert keys == sorted(keys)


def test_test_only_words_map_to_unknown(emotion):
    data, vocab = emotion
    train_words = {t for line in _lines(DATA_DIR / "emotion" / "train.txt") for t in tokenize(line.rsplit(";", 1)[0])}
    test_texts = [line.rsplit(";", 1)[0] for line in _lines(DATA_DIR / "emotion" / "test.txt")]
    found = 0
    for row, text in enumerate(test_texts):
        for pos, token in enumerate(tokenize(text)[:32]):
            if token not in train_words:
                assert data.x_test[row, pos] == UNK_ID, token
                found += 1
    assert found > 0  # the test split does have words the train split lacks
    assert UNK_ID not in data.x_train  # min_count=1: every train word is in the vocabulary


def test_truncation_padding_and_vocab_limits():
    vocab = build_vocab(["b a a", "c b a"], min_count=1)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b", "c")  # a:3, b:2, c:1
    assert build_vocab(["b a a", "c b a"], min_count=2).tokens == ("<pad>", "<unk>", "a", "b")
    assert build_vocab(["z y", "y z"], max_vocab=3).tokens == ("<pad>", "<unk>", "y")  # tie: alphabetical
    ids = encode_texts(["a b c a", "c, zebra!"], vocab, max_len=3)
    assert ids.dtype == np.int32
    assert ids.tolist() == [[2, 3, 4], [4, UNK_ID, UNK_ID]]  # ',' and 'zebra' unseen; '!' truncated
    assert encode_texts(["b"], vocab, max_len=3).tolist() == [[3, PAD_ID, PAD_ID]]


def test_options_reach_the_dataset():
    data, vocab = load_text_dataset("trec", str(DATA_DIR), max_len=8, min_count=3, max_vocab=500)
    assert data.x_train.shape == (5452, 8) and len(vocab) == data.vocab_size == 500


def test_trec_stray_byte_line_is_read():
    # README: TREC.train line 66 holds a 0xF0 byte ("sister\xf0city"); latin-1 keeps it as one character.
    assert "sister\xf0city" in _lines(DATA_DIR / "trec" / "TREC.train")[65]
    assert tokenize("sister\xf0city") == ["sister\xf0city"]


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_text_dataset("emotion", str(tmp_path))
    assert str(tmp_path / "emotion" / "train.txt") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown text dataset"):
        load_text_dataset("imdb", str(DATA_DIR))


def test_bad_label_names_the_file_and_line(tmp_path):
    (tmp_path / "emotion").mkdir()
    (tmp_path / "emotion" / "train.txt").write_text("i feel fine;joy\ni feel odd;boredom\n")
    (tmp_path / "emotion" / "test.txt").write_text("ok;joy\n")
    with pytest.raises(ConfigError, match=r"train\.txt line 2: unknown label 'boredom'"):
        load_text_dataset("emotion", str(tmp_path))

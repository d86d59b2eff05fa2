"""TREC and emotion loading.

The `tiny_text_dir` tests check parsing, vocabulary and encoding on small files in the real formats,
written by the tests (tests/conftest.py holds their lines); the `real_text_dir` tests check the real
files against the counts of the README of the prepared data (shared/datasets/README.md).
"""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from sal_jax.data.text import LABEL_NAMES, PAD_ID, UNK_ID, build_vocab, encode_texts, load_text_dataset, tokenize
from sal_jax.errors import ConfigError

# The vocabulary of the tiny TREC.train, worked out by hand: '?' ends all 6 questions, 'is' is in 4 and
# 'what' in 3; 'a', 'does', 'flipper' are in 2; the other 13 words once; ties in alphabetical order.
TINY_TREC_VOCAB = ("<pad>", "<unk>", "?", "is", "what", "a", "does", "flipper", "animal", "for", "have", "how",
                   "legs", "many", "nasa", "paris", "sister\xf0city", "spider", "stand", "where", "who")


def test_tiny_trec_labels_are_the_coarse_classes_in_file_order(tiny_text_dir):
    data, vocab = load_text_dataset("trec", str(tiny_text_dir))
    assert data.y_train.tolist() == [0, 1, 2, 3, 4, 5]  # ABBR, DESC, ENTY, HUM, LOC, NUM; fine labels dropped
    assert data.y_test.tolist() == [3, 4]  # HUM, LOC
    assert data.x_train.shape == (6, 32) and data.x_train.dtype == np.int32 and data.num_classes == 6
    assert vocab.tokens == TINY_TREC_VOCAB and data.vocab_size == 21


def test_tiny_trec_questions_are_encoded_in_order_and_padded(tiny_text_dir):
    data, _ = load_text_dataset("trec", str(tiny_text_dir), max_len=8)
    ids = {token: i for i, token in enumerate(TINY_TREC_VOCAB)}
    # "ABBR:exp What does NASA stand for ?": lower-cased, then padded to max_len.
    assert data.x_train[0].tolist() == [ids[t] for t in ("what", "does", "nasa", "stand", "for", "?")] + [PAD_ID] * 2
    # "DESC:def What is a sister\xf0city ?": the latin-1 byte stays inside its word.
    assert data.x_train[1, :5].tolist() == [ids[t] for t in ("what", "is", "a", "sister\xf0city", "?")]
    # "HUM:ind Who is Zorro ?": 'zorro' is not in the train split.
    assert data.x_test[0].tolist() == [ids["who"], ids["is"], UNK_ID, ids["?"]] + [PAD_ID] * 4


def test_tiny_trec_options_reach_the_dataset(tiny_text_dir):
    data, vocab = load_text_dataset("trec", str(tiny_text_dir), max_len=4, min_count=2, max_vocab=6)
    assert vocab.tokens == ("<pad>", "<unk>", "?", "is", "what", "a")  # count >= 2, then cut to 6
    # "NUM:count How many legs does a spider have ?" cut to its first 4 tokens, 'does' now unknown.
    assert data.x_train[5].tolist() == [UNK_ID, UNK_ID, UNK_ID, UNK_ID]
    assert data.x_train[3].tolist() == [UNK_ID, 3, UNK_ID, 2]  # who is flipper ?
    assert data.x_train.shape == (6, 4) and data.vocab_size == 6


def test_tiny_emotion_labels_vocab_and_unknown_words(tiny_text_dir):
    data, vocab = load_text_dataset("emotion", str(tiny_text_dir))
    assert LABEL_NAMES["emotion"] == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert np.bincount(data.y_train).tolist() == [3, 4, 2, 2, 2, 2]
    assert data.y_test.tolist() == [0, 1]
    # 'feel' and 'i' are in all 15 lines (tie: alphabetical), then the 15 one-off words; val.txt's 'calm' is
    # not there because only train.txt makes the vocabulary.
    assert vocab.tokens == ("<pad>", "<unk>", "feel", "i", "afraid", "amazed", "angry", "cheerful", "glad",
                            "great", "happy", "lost", "loved", "low", "mad", "sad", "scared", "shocked", "tender")
    assert data.vocab_size == 19
    assert data.x_test[:, :4].tolist() == [[3, 2, UNK_ID, PAD_ID], [3, 2, 10, PAD_ID]]  # i feel blue / happy


# --- the real files -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trec(real_text_dir):
    return load_text_dataset("trec", str(real_text_dir))


@pytest.fixture(scope="module")
def emotion(real_text_dir):
    return load_text_dataset("emotion", str(real_text_dir))


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


def test_first_trec_question_is_encoded_in_order(trec, real_text_dir):
    data, vocab = trec
    first = _lines(real_text_dir / "trec" / "TREC.train")[0]  # "DESC:manner How did serfdom develop in ..."
    words = tokenize(first.split(" ", 1)[1])
    assert data.y_train[0] == LABEL_NAMES["trec"].index("DESC")
    assert [vocab.tokens[i] for i in data.x_train[0, :len(words)]] == words
    assert np.all(data.x_train[0, len(words):] == PAD_ID)


def test_vocab_is_train_only_ordered_by_frequency_then_alphabet(emotion, real_text_dir):
    data, vocab = emotion
    train_texts = [line.rsplit(";", 1)[0] for line in _lines(real_text_dir / "emotion" / "train.txt")]
    counts = collections.Counter(t for text in train_texts for t in tokenize(text))
    assert vocab.tokens[PAD_ID] == "<pad>" and vocab.tokens[UNK_ID] == "<unk>"
    assert set(vocab.tokens[2:]) == set(counts)
    keys = [(-counts[t], t) for t in vocab.tokens[2:]]
    assert keys == sorted(keys)


def test_test_only_words_map_to_unknown(emotion, real_text_dir):
    data, vocab = emotion
    train_lines = _lines(real_text_dir / "emotion" / "train.txt")
    train_words = {t for line in train_lines for t in tokenize(line.rsplit(";", 1)[0])}
    test_texts = [line.rsplit(";", 1)[0] for line in _lines(real_text_dir / "emotion" / "test.txt")]
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


def test_options_reach_the_dataset(real_text_dir):
    data, vocab = load_text_dataset("trec", str(real_text_dir), max_len=8, min_count=3, max_vocab=500)
    assert data.x_train.shape == (5452, 8) and len(vocab) == data.vocab_size == 500


def test_trec_stray_byte_line_is_read(real_text_dir):
    # README: TREC.train line 66 holds a 0xF0 byte ("sister\xf0city"); latin-1 keeps it as one character.
    assert "sister\xf0city" in _lines(real_text_dir / "trec" / "TREC.train")[65]
    assert tokenize("sister\xf0city") == ["sister\xf0city"]


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_text_dataset("emotion", str(tmp_path))
    assert str(tmp_path / "emotion" / "train.txt") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown text dataset"):
        load_text_dataset("imdb", str(tmp_path))


def test_bad_label_names_the_file_and_line(tmp_path):
    (tmp_path / "emotion").mkdir()
    (tmp_path / "emotion" / "train.txt").write_text("i feel fine;joy\ni feel odd;boredom\n")
    (tmp_path / "emotion" / "test.txt").write_text("ok;joy\n")
    with pytest.raises(ConfigError, match=r"train\.txt line 2: unknown label 'boredom'"):
        load_text_dataset("emotion", str(tmp_path))

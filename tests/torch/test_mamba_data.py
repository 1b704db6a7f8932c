"""The character-level task from ``pydoc_data.topics`` (``ctrlreduce_torch.mamba.data``)."""

from __future__ import annotations

import math

import pytest
import torch
from ctrlreduce_torch.mamba.data import (
    SEPARATOR,
    bits_per_char,
    load_pydoc_corpus,
    sample_windows,
    topic_groups,
)


@pytest.fixture(scope="module")
def corpus():
    return load_pydoc_corpus()


def test_split_is_deterministic_and_by_topic(corpus):
    import pydoc_data.topics

    again = load_pydoc_corpus()
    assert again.chars == corpus.chars
    assert again.train_topics == corpus.train_topics
    assert again.valid_topics == corpus.valid_topics
    assert torch.equal(again.train, corpus.train) and torch.equal(again.valid, corpus.valid)
    names = sorted(pydoc_data.topics.topics)
    groups = topic_groups(pydoc_data.topics.topics)
    assert corpus.valid_topics == tuple(sorted(n for g in groups[1::10] for n in g))
    assert sorted(n for g in groups for n in g) == names
    sizes = [sum(len(pydoc_data.topics.topics[n]) for n in g) for g in groups]
    assert sizes == sorted(sizes, reverse=True)
    assert 0.08 < len(corpus.valid) / (len(corpus.train) + len(corpus.valid)) < 0.15
    assert set(corpus.train_topics) | set(corpus.valid_topics) == set(names)
    assert not set(corpus.train_topics) & set(corpus.valid_topics)
    topics = pydoc_data.topics.topics
    assert corpus.decode(corpus.train) == SEPARATOR.join(topics[n] for n in corpus.train_topics)
    assert corpus.decode(corpus.valid) == SEPARATOR.join(topics[n] for n in corpus.valid_topics)


def test_no_validation_text_in_train(corpus):
    import pydoc_data.topics

    train = corpus.decode(corpus.train)
    for name in corpus.valid_topics:
        text = pydoc_data.topics.topics[name]
        assert text not in train
        for i in range(0, len(text) - 150, 20):  # no passage of 150 characters either
            assert text[i : i + 150] not in train


def test_topics_sharing_a_paragraph_are_grouped():
    para = "x" * 80
    groups = topic_groups({"a": para + "\n\nmore", "b": "other\n\n" + para, "c": "c" * 500})
    assert groups == [["c"], ["a", "b"]]
    assert topic_groups({"a": "y" * 79, "b": "y" * 79}) == [["a"], ["b"]]  # too short to count


def test_vocabulary(corpus):
    train = corpus.decode(corpus.train)
    assert corpus.chars == "".join(sorted(set(train)))
    assert corpus.vocab_size == len(corpus.chars) + 1 == corpus.unk_id + 1
    assert int(corpus.train.max()) < corpus.unk_id
    assert corpus.encode("a\u2603").tolist() == [corpus.chars.index("a"), corpus.unk_id]
    assert corpus.decode(corpus.encode("def f(x):")) == "def f(x):"


def test_toy_topics_and_unknown_characters():
    c = load_pydoc_corpus(valid_every=2, topics={"b": "xyzw", "a": "aab", "c": "Q!"})
    assert c.valid_topics == ("a",) and c.train_topics == ("b", "c")  # groups: b, a, c
    assert c.chars == "\n!Qwxyz"
    assert c.valid.tolist() == [7, 7, 7]  # "aab": all unknown
    with pytest.raises(ValueError, match="valid_every"):
        load_pydoc_corpus(valid_every=1)
    with pytest.raises(TypeError, match="topics"):
        load_pydoc_corpus(topics={"a": 1})


def test_windows_are_deterministic_slices(corpus):
    a = sample_windows(corpus.train, 4, 64, torch.Generator().manual_seed(3))
    b = sample_windows(corpus.train, 4, 64, torch.Generator().manual_seed(3))
    c = sample_windows(corpus.train, 4, 64, torch.Generator().manual_seed(4))
    assert a.shape == (4, 64) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)
    text = corpus.decode(corpus.train)
    assert all(corpus.decode(row) in text for row in a)
    with pytest.raises(ValueError, match="seq_len"):
        sample_windows(corpus.train[:10], 2, 11, torch.Generator())


def test_bits_per_char_counts_every_character_once():
    ids = torch.arange(50) % 7
    V = 7
    uniform = bits_per_char(lambda x: torch.zeros(*x.shape, V), ids, seq_len=8, batch_size=3)
    assert uniform == pytest.approx(math.log2(V), rel=1e-12)
    scored = []

    def spy(x):
        scored.extend(x[:, 1:].reshape(-1).tolist())
        return torch.zeros(*x.shape, V)

    bits_per_char(spy, ids, seq_len=8, batch_size=3)
    assert len(scored) == len(ids) - 1  # every character but the first, exactly once

    def oracle(x):  # puts all its mass on the next id of the cycle
        return 50.0 * torch.nn.functional.one_hot((x + 1) % 7, V).float()

    assert bits_per_char(oracle, ids, seq_len=8) < 1e-15
    assert bits_per_char(oracle, ids, seq_len=8, max_windows=2) < 1e-15

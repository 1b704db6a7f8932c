"""A character-level causal language-modelling task that needs no download.

CPython ships ``pydoc_data/topics.py``: a dict ``topic -> text`` of the
language reference (about 80 topics, 465,000 characters of English prose and
code in Python 3.11).  The task:

* **Split by topic, keeping shared text on one side.**  Some topics repeat
  others' paragraphs verbatim (``else`` is ``if``'s text; the data-model and
  compound-statement topics share many), so topics that share a paragraph
  (a ``"\n\n"``-separated block of at least 80 characters, stripped) are
  joined into one group (transitively).  Groups are sorted by size
  (characters, descending; ties by their first topic name) and group ``i``
  goes to validation when ``i % valid_every == 1``: a systematic sample over
  the sizes that leaves the largest group (half the corpus) in train.  With
  the default ``valid_every = 10`` and Python 3.11's topics that is 6 groups
  (``types``, ``import``, ``slicings``, ``return``, ``conversions``,
  ``bltin-type-objects``), 51,000 of 465,000 characters.  The longest text
  the splits share is 127 characters (a sentence of ``return`` that
  ``break`` and ``continue`` repeat), so the validation loss measures
  generalisation to unseen documents.
* **Vocabulary.**  The sorted set of the characters of the train split, ids
  ``0 .. V-1``, and one unknown id ``V`` for characters seen only in
  validation; ``vocab_size = V + 1``.
* **Streams.**  Each split is its topics' texts, in sorted topic order,
  joined by a blank line (``"\\n\\n"``), encoded as one int64 tensor.
* **Batches.**  :func:`sample_windows` draws random windows of ``seq_len``
  characters from a stream (the model predicts characters ``1 .. L-1`` of
  each window from the ones before).
* **Metric.**  :func:`bits_per_char`: the mean next-character cross-entropy
  over the validation stream, in bits (``nats / ln 2``), evaluated on
  consecutive windows that overlap by one character, so every character
  after the first is predicted exactly once.

Everything is deterministic: the split and vocabulary depend on the topic
names and texts only, the batches on a ``torch.Generator``.
"""

from __future__ import annotations

import math
import pydoc_data.topics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from .._checks import check_int, seen

__all__ = [
    "CharCorpus",
    "bits_per_char",
    "load_pydoc_corpus",
    "sample_windows",
    "topic_groups",
]

SEPARATOR = "\n\n"
#: Paragraphs at least this long, shared verbatim, put their topics in one group.
MIN_SHARED = 80


@dataclass(frozen=True)
class CharCorpus:
    """A character corpus split by topic, with its vocabulary.

    Attributes
    ----------
    chars : str
        The vocabulary: character ``chars[i]`` has id ``i``; ``len(chars)`` is
        the unknown id.
    train_topics, valid_topics : tuple of str
        Topic names of each split, sorted.
    train, valid : Tensor, shape (n_train,), (n_valid,), int64
        The encoded streams (read-only by convention; never modified here).
    """

    chars: str
    train_topics: tuple[str, ...]
    valid_topics: tuple[str, ...]
    train: torch.Tensor = field(repr=False)
    valid: torch.Tensor = field(repr=False)

    @property
    def unk_id(self) -> int:
        """Id of characters outside the vocabulary (``len(chars)``)."""
        return len(self.chars)

    @property
    def vocab_size(self) -> int:
        """Number of ids, ``len(chars) + 1``."""
        return len(self.chars) + 1

    def encode(self, text: str) -> torch.Tensor:
        """``text`` as ids, shape ``(len(text),)``, int64; unknown characters -> ``unk_id``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {seen(text)}")
        table = {c: i for i, c in enumerate(self.chars)}
        unk = self.unk_id
        return torch.tensor([table.get(c, unk) for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor) -> str:
        """Ids back to text; the unknown id reads as ``"\\ufffd"``."""
        chars = self.chars + "\ufffd"
        return "".join(map(chars.__getitem__, torch.as_tensor(ids).reshape(-1).tolist()))


def topic_groups(topics: Mapping[str, str], min_len: int = MIN_SHARED) -> list[list[str]]:
    """Topics joined when they share a paragraph, largest group first.

    A paragraph is a ``"\n\n"``-separated block, stripped, of at least
    ``min_len`` characters; two topics holding the same paragraph are in one
    group, and groups are closed transitively (union-find).  Each group's
    names are sorted; groups are sorted by total characters, descending, then
    by first name.
    """
    names = sorted(topics)
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    first: dict[str, str] = {}
    for n in names:
        for para in topics[n].split("\n\n"):
            para = para.strip()
            if len(para) < min_len:
                continue
            if para in first:
                parent[root(n)] = root(first[para])
            else:
                first[para] = n
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return sorted(groups.values(), key=lambda g: (-sum(len(topics[n]) for n in g), g[0]))


def load_pydoc_corpus(
    valid_every: int = 10, topics: Mapping[str, str] | None = None
) -> CharCorpus:
    """The ``pydoc_data.topics`` corpus, split by topic (see the module notes).

    Parameters
    ----------
    valid_every : int, default 10
        Every ``valid_every``-th group of topics by size (indices ``1, 1 +
        valid_every, ...``) goes to validation; ``>= 2``.
    topics : mapping of str to str, optional
        Another ``topic -> text`` mapping (default: ``pydoc_data.topics.topics``).

    Returns
    -------
    CharCorpus

    Raises
    ------
    TypeError, ValueError
        Bad ``valid_every`` or ``topics`` (named); fewer than 2 topics.
    """
    valid_every = check_int(valid_every, "valid_every", minimum=2)
    if topics is None:
        topics = pydoc_data.topics.topics
    if not isinstance(topics, Mapping):
        raise TypeError(f"topics must be a mapping of str to str, got {seen(topics)}")
    for k, v in topics.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"topics must map str to str, got {seen(k)} -> {seen(v)}")
    names = sorted(topics)
    if len(names) < 2:
        raise ValueError(f"topics must hold at least 2 topics, got {len(names)}")
    groups = topic_groups(topics)
    valid_names = tuple(sorted(n for i, g in enumerate(groups) if i % valid_every == 1 for n in g))
    train_names = tuple(sorted(n for i, g in enumerate(groups) if i % valid_every != 1 for n in g))
    train_text = SEPARATOR.join(topics[n] for n in train_names)
    valid_text = SEPARATOR.join(topics[n] for n in valid_names)
    chars = "".join(sorted(set(train_text)))
    table = {c: i for i, c in enumerate(chars)}
    unk = len(chars)

    def enc(text: str) -> torch.Tensor:
        return torch.tensor([table.get(c, unk) for c in text], dtype=torch.int64)

    return CharCorpus(chars, train_names, valid_names, enc(train_text), enc(valid_text))


def sample_windows(
    ids: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch_size`` random windows of ``seq_len`` consecutive ids.

    Window starts are uniform on ``0 .. len(ids) - seq_len`` (drawn with
    ``torch.randint`` from ``generator``, so a seeded generator gives the same
    batches on every run).

    Returns
    -------
    Tensor, shape (batch_size, seq_len), int64
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise TypeError(f"ids must be a 1-D tensor, got {seen(ids)}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seq_len = check_int(seq_len, "seq_len", minimum=2, maximum=len(ids))
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {seen(generator)}")
    starts = torch.randint(0, len(ids) - seq_len + 1, (batch_size,), generator=generator)
    return ids[starts[:, None] + torch.arange(seq_len)]


@torch.no_grad()
def bits_per_char(
    model: Callable[[torch.Tensor], torch.Tensor] | torch.nn.Module,
    ids: torch.Tensor,
    seq_len: int = 256,
    batch_size: int = 16,
    max_windows: int | None = None,
) -> float:
    """Mean next-character cross-entropy of ``model`` on ``ids``, in bits per character.

    The stream is cut into windows ``ids[s : s + seq_len]`` with
    ``s = 0, seq_len - 1, 2 (seq_len - 1), ...`` (consecutive windows share one
    character), the last one shorter; window ``w`` contributes
    ``-sum_{t >= 1} log p(w_t | w_<t)``, so every character but the first is
    scored exactly once (with a context that restarts at each window)::

        bpc = sum of -log p / (number of scored characters) / ln 2

    Parameters
    ----------
    model : callable
        ``model(input_ids)`` with ``input_ids`` of shape (B, L) returning logits
        (B, L, V), or an object with a ``.logits`` attribute (a Hugging Face
        output).  Called under ``torch.no_grad``; its train/eval mode is
        left to the caller.
    ids : Tensor, shape (n,), int64
    seq_len, batch_size : int
        Window length (``>= 2``) and windows per forward pass.
    max_windows : int, optional
        Score only the first ``max_windows`` windows (a quicker estimate).

    Returns
    -------
    float
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or len(ids) < 2:
        raise TypeError(f"ids must be a 1-D tensor of at least 2 ids, got {seen(ids)}")
    seq_len = check_int(seq_len, "seq_len", minimum=2)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if max_windows is not None:
        max_windows = check_int(max_windows, "max_windows", minimum=1)
    step = seq_len - 1
    starts = list(range(0, len(ids) - 1, step))
    if max_windows is not None:
        starts = starts[:max_windows]
    device = next(iter(model.parameters())).device if isinstance(model, torch.nn.Module) else None
    total, count = 0.0, 0
    full = [s for s in starts if s + seq_len <= len(ids)]
    last = [s for s in starts if s + seq_len > len(ids)]
    groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
    groups += [[s] for s in last]
    for group in groups:
        n = min(seq_len, len(ids) - group[0])
        x = torch.stack([ids[s : s + n] for s in group])
        if device is not None:
            x = x.to(device)
        out = model(x)
        logits = getattr(out, "logits", out)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).double(),
            x[:, 1:].reshape(-1),
            reduction="sum",
        )
        total += float(nll)
        count += x[:, 1:].numel()
    return total / count / math.log(2)

"""The project's own sentence set: 416 hand-written English sentences in 8 topics, for the sentence encoder.

`sample_models/data/sentences.jsonl` holds one {"topic": ..., "text": ...} per line, written for this project
(52 per topic: cooking, sports, weather, technology, health, finance, travel, music), in varied length and
style (statements, questions, instructions). Split: stratified by topic, 70/30 train/test
(`train_test_split(test_size=0.3, stratify=topic, random_state=0)`); calibration is the first 64 rows of train.

Inputs X are token ids (N, L) padded with 0 to the longest sentence of the set; y is the topic index into
`TOPICS`. The splits are `kind="embedding"`: the model's outputs are embeddings, scored by fidelity to the
uncompressed model's (`compressor.fidelity`), not by argmax accuracy.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from compressor.data import DataSplits, Split

SENTENCES_PATH = Path(__file__).parent / "data" / "sentences.jsonl"
TEST_FRACTION = 0.3
SPLIT_SEED = 0
CALIBRATION_SIZE = 64


@lru_cache(maxsize=1)
def sentences() -> tuple[tuple[str, str], ...]:
    """Every (topic, text) pair of the shipped set, in file order."""
    rows = [json.loads(line) for line in SENTENCES_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple((row["topic"], row["text"]) for row in rows)


def topics() -> tuple[str, ...]:
    """The topic names, in order of first appearance; a label y is an index into this."""
    return tuple(dict.fromkeys(topic for topic, _ in sentences()))


@lru_cache(maxsize=1)
def split_indices() -> tuple[list[int], list[int]]:
    """Row numbers of the train and test parts (seeded, stratified by topic)."""
    from sklearn.model_selection import train_test_split

    labels = [topic for topic, _ in sentences()]
    train, test = train_test_split(range(len(labels)), test_size=TEST_FRACTION, stratify=labels,
                                   random_state=SPLIT_SEED)
    return list(train), list(test)


@lru_cache(maxsize=1)
def sentence_splits() -> DataSplits:
    """Token ids and topic labels of the train/calibration/test parts (cached: read them, don't modify them)."""
    from sample_models.minilm import tokenize

    rows = sentences()
    names = topics()
    X = tokenize([text for _, text in rows])  # (N, L) int64
    y = torch.tensor([names.index(topic) for topic, _ in rows])  # (N,)
    train_rows, test_rows = (torch.tensor(rows_) for rows_ in split_indices())
    train = Split(X[train_rows], y[train_rows])
    calibration = Split(train.X[:CALIBRATION_SIZE], train.y[:CALIBRATION_SIZE])
    return DataSplits(train=train, calibration=calibration, test=Split(X[test_rows], y[test_rows]), kind="embedding")

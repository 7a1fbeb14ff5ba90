"""Fidelity measures against a case small enough to compute by hand (2-D embeddings, 4 test sentences)."""
import pytest
import torch

from compressor import fidelity
from compressor.data import DataSplits, Split

# Reference (uncompressed) test embeddings, unit length, and the compressed model's (c2 deliberately not unit).
R = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
C = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [-0.8, 0.6]])
TEST_Y = torch.tensor([0, 0, 1, 1])
TRAIN_X = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])  # topic 0 twice along x, topic 1 along y
TRAIN_Y = torch.tensor([0, 0, 1])


def reference() -> fidelity.Reference:
    return fidelity.Reference(test_embeddings=R, test_labels=TEST_Y, centroids=fidelity.centroids(TRAIN_X, TRAIN_Y))


def test_cosines_by_hand():
    # cos(c1, r1) = 0.6·0.8 + 0.8·0.6 = 0.96; cos(c2, r2) = 2/2 = 1; cos(c3, r3) = 0.48 + 0.48 = 0.96
    assert fidelity.cosine_similarities(C, R).tolist() == pytest.approx([1.0, 0.96, 1.0, 0.96])


def test_centroids_are_unit_means_of_unit_embeddings():
    assert fidelity.centroids(TRAIN_X, TRAIN_Y).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_nearest_neighbours_by_hand():
    # reference similarities: r0·r1 = 0.8, r1·r2 = 0.6, r2·r3 = 0.8, r0·r3 = −0.6, r0·r2 = r1·r3 = 0
    assert fidelity.nearest_neighbours(R, 1).view(-1).tolist() == [1, 0, 3, 2]
    # compressed (unit): c0·c1 = 0.6, c1·c2 = 0.8, c2·c3 = 0.6, c0·c3 = −0.8, c0·c2 = c1·c3 = 0
    assert fidelity.nearest_neighbours(C, 1).view(-1).tolist() == [1, 2, 1, 2]


def test_compare_by_hand():
    found = fidelity.compare(C, reference(), k=1)
    assert found.mean_cosine == pytest.approx(0.98)  # (1 + 0.96 + 1 + 0.96) / 4
    assert found.worst_cosine == pytest.approx(0.96)
    assert found.neighbour_agreement == 0.5  # rows 0 and 3 keep their nearest neighbour, rows 1 and 2 do not
    # nearest centroid: reference → [0, 0, 1, 1] (all right); compressed c1 = (0.6, 0.8) goes to topic 1
    assert found.baseline_topic_accuracy == 1.0
    assert found.topic_accuracy == 0.75
    # predicted [0, 1, 1, 1] vs [0, 0, 1, 1]: F1 topic 0 = 2·1/(2·1 + 0 + 1) = 2/3, topic 1 = 2·2/(2·2 + 1 + 0) = 4/5
    assert found.topic_macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert found.examples == 4 and found.neighbours == 1


def test_all_other_rows_as_neighbours_always_agree():
    assert fidelity.neighbour_agreement(R, C, k=3) == 1.0


def test_measure_takes_any_callable_and_reference_uses_the_baseline():
    data = DataSplits(train=Split(TRAIN_X, TRAIN_Y), calibration=Split(TRAIN_X, TRAIN_Y), test=Split(R, TEST_Y),
                      kind="embedding")
    ref = fidelity.reference(lambda X: X, data)  # identity "encoder": its embeddings are the inputs
    assert torch.equal(ref.test_embeddings, R)
    found = fidelity.measure(lambda X: C[: len(X)] if len(X) == 4 else X, data, ref, k=1)
    assert found.topic_accuracy == 0.75


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="embeddings must be two"):
        fidelity.cosine_similarities(R, R[:2])
    with pytest.raises(ValueError, match="k"):
        fidelity.nearest_neighbours(R, 4)

"""minilm-l6: the real all-MiniLM-L6-v2, its shipped sentence set, and every technique applied to it.

Heavy: one model load, one reference embedding and few compressions per module (module-scoped fixtures),
on a small slice of the sentences (fidelity is checked on 32 held-out sentences).
"""
from __future__ import annotations

import pytest
import torch

import compressor as cz
from compressor import fidelity
from compressor.embedding_training import finetune_embeddings
from compressor.heads import attention_blocks, head_count
from sample_models import sentences
from sample_models.minilm import model_dir, tokenize

FFN = ["*.intermediate.dense"]
ATTENTION = ["*.attention.self.query", "*.attention.self.key", "*.attention.self.value"]


@pytest.fixture(scope="module")
def ref(minilm, minilm_small) -> fidelity.Reference:
    return fidelity.reference(minilm.model, minilm_small)


def mean_cosine(model, data, ref) -> float:
    embeddings = fidelity.embed(model, data.test.X)
    assert torch.isfinite(embeddings).all()
    assert embeddings.shape == ref.test_embeddings.shape
    return fidelity.compare(embeddings, ref).mean_cosine


def test_sentence_set_is_large_labelled_unique_and_split_stratified():
    rows = sentences.sentences()
    texts = [text.strip().lower() for _, text in rows]
    assert len(rows) >= 400 and len(set(texts)) == len(texts)
    topics = sentences.topics()
    assert len(topics) >= 8
    counts = {t: sum(topic == t for topic, _ in rows) for t in topics}
    assert min(counts.values()) >= 40, counts
    train, test = sentences.split_indices()
    assert sorted(train + test) == list(range(len(rows)))
    for t in topics:  # stratified: each topic's share of the test part is its share of the set, within one sentence
        in_test = sum(rows[i][0] == t for i in test)
        assert abs(in_test - counts[t] * sentences.TEST_FRACTION) <= 1


def test_loads_offline_and_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = ["Stir the risotto constantly.", "The striker scored twice.", "Is it safe to drink the tap water?"]
    expected = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True).encode(
        texts, convert_to_tensor=True)
    ours = fidelity.embed(minilm.model, tokenize(texts))
    torch.testing.assert_close(ours, expected.float(), atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in minilm.model.parameters()) == 22_565_376  # BERT without its pooler
    assert minilm.data.kind == "embedding" and len(minilm.data.test) + len(minilm.data.train) >= 400


def test_padding_columns_do_not_change_embeddings(minilm, minilm_small):
    X = minilm_small.test.X[:4]
    padded = torch.cat([X, torch.zeros(4, 7, dtype=X.dtype)], dim=1)  # more [PAD] columns
    torch.testing.assert_close(fidelity.embed(minilm.model, padded), fidelity.embed(minilm.model, X))


def test_report_scores_fidelity(minilm, minilm_small, ref):
    q = cz.quantize(minilm.model, bits=8, scheme="symmetric", granularity="channel")
    report = cz.evaluate(q, minilm_small, baseline=minilm.model, latency=None, reference=ref)
    assert report.metric == "cosine" and report.baseline_accuracy == 1.0
    assert report.accuracy == pytest.approx(report.fidelity["mean_cosine"])
    assert 0.99 < report.fidelity["worst_cosine"] <= report.accuracy < 1.0  # 8-bit per channel: almost lossless
    assert report.fidelity["neighbour_agreement"] > 0.8
    assert report.compressed_bytes < 0.6 * report.baseline_dense_bytes
    assert "topic accuracy" in report.summary_frame().index


@pytest.mark.parametrize("step, low, high", [
    (cz.Prune(amount=0.3), 0.9, 0.9999),  # unstructured magnitude, per layer
    (cz.Quantize(bits=4, scheme="symmetric", granularity="channel"), 0.7, 0.995),
    (cz.Quantize(bits=4, method="kmeans", layers=("bert.encoder.layer.5.*",)), 0.95, 0.99999),
    (cz.LowRank(rank_ratio=0.5, layers=("*.output.dense",)), 0.2, 0.999),
])
def test_technique_gives_finite_embeddings_and_lower_fidelity(minilm, minilm_small, ref, step, low, high):
    compressed = cz.compress(minilm.model, step, minilm_small)
    assert low < mean_cosine(compressed, minilm_small, ref) < high


def test_structured_ffn_and_heads_really_shrink(minilm, minilm_small, ref):
    ffn = cz.compress(minilm.model, cz.Prune(amount=0.5, structured=True, layers=tuple(FFN)), minilm_small)
    assert ffn.bert.encoder.layer[0].intermediate.dense.out_features == 768
    assert ffn.bert.encoder.layer[0].output.dense.in_features == 768
    heads = cz.compress(minilm.model, cz.Prune(amount=0.25, structured=True, layers=tuple(ATTENTION)), minilm_small)
    blocks = attention_blocks(heads)
    assert len(blocks) == 6 and all(head_count(heads, b) == 9 for b in blocks.values())  # 12 − 3 heads of 32
    assert heads.bert.encoder.layer[0].attention.output.dense.in_features == 9 * 32
    for model in (ffn, heads):
        assert 0.2 < mean_cosine(model, minilm_small, ref) < 0.999


def test_heads_removed_are_the_ones_whose_output_is_dropped(minilm):
    """Zeroing a head's output columns equals removing the head: the block computes the same function."""
    from compressor.heads import _keep_heads

    block = attention_blocks(minilm.model)["bert.encoder.layer.0.attention.self"]
    keep = torch.ones(12, dtype=torch.bool)
    keep[[2, 7]] = False
    import copy

    removed, zeroed = copy.deepcopy(minilm.model), copy.deepcopy(minilm.model)
    _keep_heads(removed, block, keep)
    with torch.no_grad():
        out = zeroed.get_submodule(block.output).weight
        for h in (2, 7):
            out[:, h * 32:(h + 1) * 32] = 0
    X = tokenize(["Heads are coupled groups.", "Remove two of them."])
    torch.testing.assert_close(removed(X), zeroed(X), atol=1e-5, rtol=1e-5)


def test_finetuning_recovers_fidelity_by_distillation(minilm, minilm_small, ref):
    pruned = cz.compress(minilm.model, cz.Prune(amount=0.5, structured=True, layers=tuple(FFN)), minilm_small)
    targets = fidelity.embed(minilm.model, minilm_small.train.X)
    tuned, history = finetune_embeddings(pruned, minilm_small.train, targets, epochs=2, lr=1e-4, batch_size=16)
    assert [set(h) for h in history] == [{"epoch", "loss"}] * 2 and history[1]["loss"] < history[0]["loss"]
    assert mean_cosine(tuned, minilm_small, ref) > mean_cosine(pruned, minilm_small, ref) + 0.01
    assert tuned.bert.encoder.layer[0].intermediate.dense.out_features == 768  # the pruned shape is kept


def test_taylor_is_refused_for_embeddings(minilm, minilm_small):
    with pytest.raises(ValueError, match="taylor"):
        cz.compress(minilm.model, cz.Prune(amount=0.3, criterion="taylor"), minilm_small)


def test_export_load_round_trip_through_the_registry(minilm, minilm_small, tmp_path):
    recipe = cz.Recipe((cz.Prune(amount=0.25, structured=True),  # heads and FFN width
                        cz.Quantize(bits=8, scheme="symmetric", granularity="channel")))
    small_model = cz.compress(minilm.model, recipe, minilm_small)
    path = tmp_path / "minilm.clab"
    artifact = cz.export(small_model, path)
    assert path.stat().st_size == artifact.size
    loaded = cz.load(path)  # rebuilt from source "minilm-l6": the package's model, then the stored tensors
    X = minilm_small.test.X[:8]
    torch.testing.assert_close(loaded(X), small_model(X), atol=0, rtol=0)

"""minilm-l6 deployed on ONNX Runtime: the fp32 export against PyTorch, integer kernels in the graph, deployed
fidelity, and per-layer fp32 (mixed precision) carried into the graph.

Heavy: one model load and three compressions per module (module-scoped fixtures), on 32 held-out sentences.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import compressor as cz
from compressor import fidelity
from compressor.deploy import (
    TOKEN_AXES, deploy, deployed_graph, export_inputs, feeds, plan_kernels, session, token_inputs,
)
from compressor.latency import LatencyConfig
from compressor.onnx_export import op_types, scopes_of, to_onnx

FFN_OUTPUT = re.compile(r"layer\.\d+\.output\.dense$")  # the six FFN output projections (not attention's)


@pytest.fixture(scope="module")
def linears(minilm) -> list[str]:
    return [name for name, m in minilm.model.named_modules() if isinstance(m, torch.nn.Linear)]


@pytest.fixture(scope="module")
def mixed(minilm, minilm_small, linears) -> torch.nn.Module:
    """int8 per channel on every Linear except the FFN output projections, which stay fp32."""
    kept = tuple(name for name in linears if not FFN_OUTPUT.search(name))
    return cz.compress(minilm.model, cz.Quantize(bits=8, scheme="symmetric", granularity="channel", layers=kept), minilm_small)


@pytest.fixture(scope="module")
def mixed_graph(mixed, minilm_small):
    example, axes = export_inputs(minilm_small)
    return deployed_graph(mixed, example, dynamic_axes=axes)


def test_fp32_export_matches_pytorch_at_other_batch_and_sequence_lengths(minilm, minilm_small):
    example, axes = export_inputs(minilm_small)  # traced on 2 sentences
    assert set(example) == {"input_ids", "attention_mask"} and axes == TOKEN_AXES
    assert all(t.dtype == torch.int64 for t in example.values())
    sess = session(to_onnx(minilm.model, example, axes))
    ids = minilm_small.test.X[2:18]  # 16 sentences of other lengths
    inputs = token_inputs(ids)
    assert inputs["input_ids"].shape[1] != example["input_ids"].shape[1]
    ours = torch.from_numpy(sess.run(None, feeds(inputs))[0])
    with torch.inference_mode():
        expected = minilm.model(ids)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-3)  # unit vectors: 1e-4 per coordinate
    assert fidelity.cosine_similarities(ours, expected).min() > 0.9999


def test_int8_and_int4_run_on_integer_kernels(minilm, minilm_small, linears, mixed_graph):
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= op_types(mixed_graph)
    int4 = cz.compress(minilm.model, cz.Quantize(bits=4, scheme="symmetric", granularity="channel",
                                                 layers=tuple(linears)), minilm_small)
    assert plan_kernels(int4).kernel == "int4"
    example, axes = export_inputs(minilm_small)
    graph = deployed_graph(int4, example, dynamic_axes=axes)
    assert sum(node.op_type == "MatMulNBits" for node in graph.graph.node) == len(linears)


def test_mixed_precision_keeps_the_excluded_layers_in_fp32(mixed, mixed_graph, linears):
    plan = plan_kernels(mixed)
    assert plan.kernel == "int8" and plan.per_channel and len(plan.layers) == len(linears) - 6
    ffn_outputs = [name for name in linears if FFN_OUTPUT.search(name)]
    assert len(ffn_outputs) == 6
    integer = [node for node in mixed_graph.graph.node if node.op_type == "MatMulInteger"]
    assert len(integer) == len(linears) - 6
    for name in ffn_outputs:
        scopes = scopes_of(name)
        assert not [n.name for n in integer if n.name.startswith(scopes)], name  # no integer op on it
        assert [n for n in mixed_graph.graph.node if n.op_type == "MatMul" and n.name.startswith(scopes)], name


def test_deployed_fidelity_is_measured_on_the_runtime(minilm, minilm_small, mixed, mixed_graph):
    ref = fidelity.reference(minilm.model, minilm_small)
    config = LatencyConfig(batch_size=8, warmup=1, runs=20)
    d, proto = deploy(mixed, minilm_small, minilm.model, config, reference=ref)
    assert d.kernel == "int8" and d.metric == "cosine" and "MatMulInteger" in d.op_types
    # independently: the deployed graph's embeddings, cosine against the eager fp32 model's, in numpy. One batch of
    # all 32 sentences, as fidelity.embed runs them (dynamic int8 scales each batch's activations: batching matters)
    sess = session(proto)
    deployed = sess.run(None, feeds(token_inputs(minilm_small.test.X)))[0].astype(np.float64)
    with torch.inference_mode():
        expected = minilm.model(minilm_small.test.X).numpy().astype(np.float64)
    cosines = (deployed * expected).sum(1) / np.linalg.norm(deployed, axis=1) / np.linalg.norm(expected, axis=1)
    assert d.deployed_accuracy == pytest.approx(cosines.mean(), abs=1e-6)
    assert d.deployed_worst_cosine == pytest.approx(cosines.min(), abs=1e-6)
    assert 0.95 < d.deployed_worst_cosine <= d.deployed_accuracy < 1.0
    assert d.baseline_accuracy > 0.9999 and d.simulated_accuracy > 0.99
    assert d.sequence_length == int((minilm_small.test.X[:8] != 0).sum(dim=1).max())  # the timed batch's real length
    assert d.batch_size == 8 and d.deployed_latency_ms > 0 and d.deployed_baseline_latency_ms > 0
    assert d.deployed_bytes < d.baseline_bytes
    assert any("mean cosine" in note for note in d.notes)

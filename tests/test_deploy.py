"""Deployment on ONNX Runtime: exported graphs compute what PyTorch computes, integer kernels are really used,
and reports carry the deployed measurement. ONNX Runtime is the independent reference for the export."""
from __future__ import annotations

import copy
import importlib
import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import compressor as cz
from compressor.data import DataSplits, Split
from compressor.deploy import (
    BASELINES, BaselineCache, Deployment, KernelPlan, baseline_key, deploy, deployed_graph, evaluate_deployed, outputs, plan_kernels, session, time_sessions,
)
from compressor.latency import LatencyConfig
from compressor.onnx_export import gemm_to_matmul, layer_nodes, op_types, scope_of, to_onnx
from compressor.sparse_kernel import SparseTiming, _first_lasting_win, linear_sparsity, to_csr
from tests import models

deploy_module = importlib.import_module("compressor.deploy")  # the module (compressor.deploy is also a function)
FAST = LatencyConfig(batch_size=8, threads=1, warmup=1, runs=20)
# ONNX Runtime and PyTorch sum in different orders: 1e-4 on logits of size ~1–10
ATOL, RTOL = 1e-4, 1e-4

TECHNIQUES = {  # label -> recipe steps (structured pruning is added per model where it applies)
    "none": [],
    "prune 80%": [cz.Prune(amount=0.8, scope="global")],
    "int8 per channel": [cz.Quantize(bits=8, scheme="symmetric", granularity="channel")],
    "int8 per tensor, inputs too": [cz.Quantize(bits=8, activations=True)],
    "4-bit": [cz.Quantize(bits=4, scheme="symmetric", granularity="channel")],
    "3-bit": [cz.Quantize(bits=3)],
    "k-means 4-bit": [cz.Quantize(bits=4, method="kmeans")],
    "low-rank": [cz.LowRank(rank_ratio=0.5)],
    "deep compression": [cz.Prune(amount=0.8, scope="global"), cz.Quantize(bits=4, method="kmeans")],
}


def _data(name: str) -> tuple[torch.nn.Module, DataSplits]:
    if name.startswith("digits"):
        sample = cz.load_sample(name)
        return sample.model, sample.data
    if name == "residual-cnn":
        X, y = models.residual_cnn_data()
        return models.residual_cnn(), DataSplits.from_test(Split(X, y))
    X = torch.randn(48, 6, 8, generator=torch.Generator().manual_seed(3))
    return models.tiny_transformer(), DataSplits.from_test(Split(X))


MODELS = ("digits-mlp", "digits-cnn", "residual-cnn", "transformer")
STRUCTURED = {"digits-mlp": None, "digits-cnn": None, "residual-cnn": None,
              "transformer": ["layers.0.mlp.0", "layers.1.mlp.0"]}  # attention heads are not channel-prunable


KERNEL_OPS = {"int8": {"MatMulInteger", "QuantizeLinear"}, "int4": {"MatMulNBits"}}  # an integer plan's operators


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("technique", [*TECHNIQUES, "structured 50%"])
def test_exported_graph_computes_what_pytorch_computes_and_deploys(name, technique):
    model, data = _data(name)
    steps = TECHNIQUES.get(technique) or [cz.Prune(amount=0.5, structured=True, layers=STRUCTURED[name])]
    small = cz.compress(model, steps, data)
    X = data.test.X[:16]
    proto = to_onnx(small, X[:2])  # traced on 2 inputs, run on 16: the batch axis is free
    with torch.inference_mode():
        want = small(X)
    torch.testing.assert_close(outputs(session(proto, optimize=False), X), want, atol=ATOL, rtol=RTOL)
    optimized = outputs(session(proto), X)  # ORT's fusions: QDQ pairs around quantized inputs move across ops
    if "inputs too" in technique:  # and round a few inputs one 8-bit step apart
        assert (optimized - want).abs().max() < 0.02 * want.abs().max()
    else:
        torch.testing.assert_close(optimized, want, atol=ATOL, rtol=RTOL)

    plan = plan_kernels(small)  # deployed: integer kernels where the weights allow, most predictions kept
    deployed = deployed_graph(small, X[:2], plan, calibration=data.train.X)
    if plan.kernel in KERNEL_OPS:
        assert KERNEL_OPS[plan.kernel] & op_types(deployed)
    agreement = (outputs(session(deployed), X).argmax(-1) == want.argmax(-1)).float().mean()
    assert agreement >= (1.0 if plan.kernel in ("fp32", "simulated") else 0.8)  # seeded untrained models: near ties


def test_export_leaves_the_model_alone():
    model, data = _data("digits-mlp")
    small = cz.compress(model, [cz.Quantize(bits=8)], data).train()
    before = {k: v.clone() for k, v in small.state_dict().items()}
    to_onnx(small, data.test.X[:2])
    assert small.training and all(torch.equal(before[k], v) for k, v in small.state_dict().items())


def test_gemm_becomes_matmul_plus_add_with_equal_outputs():
    model, data = _data("digits-mlp")
    proto = to_onnx(model, data.test.X[:2])
    rewritten = gemm_to_matmul(proto)
    assert "Gemm" in op_types(proto) and "Gemm" not in op_types(rewritten) and "MatMul" in op_types(rewritten)
    X = data.test.X[:32]
    torch.testing.assert_close(outputs(session(rewritten), X), outputs(session(proto), X), atol=1e-5, rtol=1e-5)


def test_layer_names_map_to_the_nodes_that_compute_them():
    assert scope_of("layers.0.mlp.0") == "/layers/layers.0/mlp/mlp.0/"
    proto = to_onnx(models.tiny_transformer(), torch.randn(2, 5, 8))
    assert layer_nodes(proto, "layers.1.attn.qkv", ("MatMul",)) == ["/layers/layers.1/attn/qkv/MatMul"]
    assert layer_nodes(proto, "layers.1.attn", ("MatMul",)) == ["/layers/layers.1/attn/MatMul",
                                                                 "/layers/layers.1/attn/MatMul_1"]  # q·kᵀ, att·v


# ---------------------------------------------------------------- integer kernels


def _optimized_op_types(proto: onnx.ModelProto, tmp_path) -> set[str]:
    """Operators after ONNX Runtime's own graph fusions: what really runs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return op_types(onnx.load(options.optimized_model_filepath))


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_int8_linear_layers_run_on_dynamic_integer_kernels(granularity):
    model, data = _data("digits-mlp")
    small = cz.quantize(model, bits=8, scheme="symmetric", granularity=granularity)
    plan = plan_kernels(small)
    assert (plan.kernel, plan.per_channel) == ("int8", granularity == "channel")
    proto = deployed_graph(small, data.test.X[:2], plan)
    ops = op_types(proto)
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops and not ops & {"Gemm", "MatMul"}
    scales = [init for init in proto.graph.initializer if init.name.endswith("_scale")]
    assert any(np.prod(init.dims) == 300 for init in scales) == (granularity == "channel")  # fc1: 300 outputs
    X = data.test.X[:64]
    with torch.inference_mode():
        simulated = small(X)
    got = outputs(session(proto), X)
    assert (got.argmax(1) == simulated.argmax(1)).float().mean() >= 0.98
    assert (got - simulated).abs().max() < 0.05 * simulated.abs().max()  # 8-bit inputs add a small error


def test_int8_convolutions_run_as_qlinearconv(tmp_path):
    model, data = _data("digits-cnn")
    small = cz.quantize(model, bits=8, scheme="symmetric", granularity="channel")
    proto = deployed_graph(small, data.test.X[:2], calibration=data.train.X)
    ops = op_types(proto)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMulInteger"} <= ops  # QDQ conv, dynamic Linear
    assert "QLinearConv" in _optimized_op_types(proto, tmp_path)
    with torch.inference_mode():
        simulated = small(data.test.X).argmax(1)
    assert (outputs(session(proto), data.test.X).argmax(1) == simulated).float().mean() >= 0.97


def test_int8_convolutions_need_calibration_data():
    model, data = _data("digits-cnn")
    with pytest.raises(ValueError, match="calibration"):
        deployed_graph(cz.quantize(model, bits=8), data.test.X[:2])


def test_a_plan_layer_missing_from_the_graph_is_an_error_not_a_wrong_label():
    model, data = _data("digits-mlp")
    with pytest.raises(ValueError, match="fc9 not found in the exported ONNX graph"):
        deployed_graph(model, data.test.X[:2], KernelPlan("int8", ("fc1", "fc9")))


def test_int4_linear_layers_run_on_matmulnbits():
    model, data = _data("digits-mlp")
    small = cz.quantize(model, bits=4, scheme="symmetric", granularity="channel")
    assert plan_kernels(small).kernel == "int4"
    proto = deployed_graph(small, data.test.X[:2])
    assert "MatMulNBits" in op_types(proto) and not op_types(proto) & {"Gemm", "MatMul"}
    with torch.inference_mode():
        simulated = small(data.test.X).argmax(1)
    assert (outputs(session(proto), data.test.X).argmax(1) == simulated).float().mean() >= 0.95


def test_only_the_quantized_layers_take_integer_kernels():
    model, data = _data("digits-mlp")
    small = cz.quantize(model, bits=8, layers=["fc2"])
    proto = deployed_graph(small, data.test.X[:2])
    assert [n.name for n in proto.graph.node if n.op_type == "MatMulInteger"] == ["/fc2/Gemm_quant"]
    transformer = cz.quantize(models.tiny_transformer(), bits=4, scheme="symmetric", layers=["layers.*.mlp.*"])
    proto = deployed_graph(transformer, torch.randn(2, 5, 8))
    assert sum(n.op_type == "MatMulNBits" for n in proto.graph.node) == 4  # two MLPs of two Linears each


def test_transformer_weights_take_integer_kernels_and_attention_products_stay_fp32():
    small = cz.quantize(models.tiny_transformer(), bits=8, scheme="symmetric", granularity="channel")
    X = torch.randn(16, 6, 8, generator=torch.Generator().manual_seed(4))
    proto = deployed_graph(small, X[:2])
    kinds = [node.op_type for node in proto.graph.node]
    assert kinds.count("MatMulInteger") == 10  # embed, head, and qkv, proj, two MLP layers per encoder layer
    assert kinds.count("MatMul") == 4  # q·kᵀ and att·v of both layers: activations, not weights
    with torch.inference_mode():
        simulated = small(X)
    assert (outputs(session(proto), X) - simulated).abs().max() < 0.05 * simulated.abs().max()


def test_named_int64_inputs_export_with_a_free_sequence_axis():
    class Bag(torch.nn.Module):  # token ids → embedding bag → classifier: a tokenizer's inputs, int64
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.head = torch.nn.Embedding(50, 16), torch.nn.Linear(16, 3)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).float()
            return self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))

    torch.manual_seed(0)
    model = cz.quantize(Bag().eval(), bits=4, scheme="symmetric")
    inputs = {"input_ids": torch.randint(0, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    proto = deployed_graph(model, inputs, dynamic_axes={"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}})
    assert "MatMulNBits" in op_types(proto)
    longer = {k: torch.cat([v, v], dim=1) for k, v in inputs.items()}  # 14 tokens: the sequence axis is free
    with torch.inference_mode():
        want = model(**longer)
    got = outputs(session(proto), longer)
    assert got.shape == want.shape and (got - want).abs().max() < 0.1 * want.abs().max()


@pytest.mark.parametrize("steps, kernel", [
    ([], "fp32"),
    ([cz.Prune(amount=0.5, structured=True)], "fp32"),
    ([cz.Quantize(bits=3)], "simulated"),
    ([cz.Quantize(bits=6, granularity="channel")], "simulated"),
    ([cz.Quantize(bits=8, method="kmeans")], "simulated"),
    ([cz.Quantize(bits=8, overrides={"fc3": {"bits": 4}})], "simulated"),  # mixed widths
])
def test_what_has_no_native_kernel_is_simulated(steps, kernel):
    model, data = _data("digits-mlp")
    assert plan_kernels(cz.compress(model, steps, data)).kernel == kernel


def test_four_bit_convolutions_are_simulated():
    model, data = _data("digits-cnn")
    plan = plan_kernels(cz.quantize(model, bits=4))
    assert plan.simulated and "convolution" in plan.reason


# ---------------------------------------------------------------- the measurement in reports


def test_report_carries_the_deployed_measurement():
    model, data = _data("digits-mlp")
    small = cz.compress(model, [cz.Prune(amount=0.5, scope="global"), cz.Quantize(bits=8, granularity="channel")], data)
    report = evaluate_deployed(small, data, baseline=model, latency=FAST)
    d = report.deployment
    assert isinstance(d, Deployment) and d.kernel == "int8" and not d.simulated
    assert d.runtime == "onnxruntime" and d.runtime_version == ort.__version__
    assert (d.batch_size, d.threads, d.runs, d.sequence_length) == (8, 1, 20, None)
    assert d.deployed_latency_ms > 0 and d.deployed_speedup == pytest.approx(d.deployed_baseline_latency_ms / d.deployed_latency_ms)
    assert report.deployed_latency_ms == d.deployed_latency_ms and report.deployed_speedup == d.deployed_speedup
    assert d.simulated_accuracy == report.accuracy and d.baseline_accuracy == pytest.approx(report.baseline_accuracy)
    assert d.deployed_bytes < d.baseline_bytes / 3  # int8 weights in the file ORT runs
    assert d.sparse is not None and d.sparse.sparsity == pytest.approx(0.5, abs=0.01)
    assert set(d.cpu_flags) <= {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
    assert any("Deployed on ONNX Runtime" in note for note in report.notes)
    assert "deployed latency (ms per batch)" in report.summary_frame().index
    assert json.loads(json.dumps(report.to_dict()))["deployment"]["kernel"] == "int8"


def test_simulated_models_say_so_and_time_the_fp32_graph():
    model, data = _data("digits-mlp")
    small = cz.quantize(model, bits=3)
    deployment, proto = deploy(small, data, model, FAST)
    assert deployment.simulated and deployment.kernel == "simulated"
    assert op_types(proto) == op_types(to_onnx(model, data.test.X[:2]))  # the fp32 graph
    assert any("Simulated quantization" in note for note in deployment.notes)
    assert deployment.deployed_accuracy == pytest.approx(deployment.simulated_accuracy, abs=1e-9)


def test_unlabelled_data_scores_agreement_with_the_deployed_baseline():
    model, data = _data("transformer")
    deployment, _ = deploy(model, data, model, FAST)
    assert deployment.deployed_accuracy == 1.0 and deployment.baseline_accuracy == 1.0


def test_the_fp32_baseline_is_built_once_for_every_configuration(monkeypatch):
    """A second configuration exports only its own graph: the baseline's export, session and scores are reused
    (the app deploys every new configuration of minilm-l6 against the same baseline); it is still timed."""
    model, data = _data("digits-mlp")
    exported = []
    real = deploy_module.to_onnx
    monkeypatch.setattr(deploy_module, "to_onnx", lambda m, *a, **k: exported.append(m) or real(m, *a, **k))
    BASELINES.clear()
    configs = [[cz.Quantize(bits=8, scheme="symmetric", granularity="channel")], [cz.Prune(amount=0.5, structured=True)]]
    first, second = (deploy(cz.compress(model, steps, data), data, model, FAST)[0] for steps in configs)
    assert sum(m is model for m in exported) == 1 and len(exported) == 3  # the baseline once, each model once
    assert first.baseline_bytes == second.baseline_bytes
    assert first.baseline_accuracy == second.baseline_accuracy == pytest.approx(evaluate_deployed(
        model, data, latency=FAST).deployment.deployed_accuracy)  # the fp32 graph scored as itself
    before = len(exported)
    deploy(cz.compress(model, configs[0], data), data, model, replace(FAST, threads=2))
    assert sum(m is model for m in exported[before:]) == 1  # another thread count is another session


def test_mixed_precision_starts_from_the_deployed_baselines_fp32_export(monkeypatch):
    """One place builds the fp32 graph: `MixedInt8` of a model that `deploy` already used as its baseline exports
    nothing, and times against that same session; `shared=False` builds its own the same way, outside the cache."""
    from compressor.deploy import MixedInt8, fp32_baseline

    model, data = _data("digits-mlp")
    exported = []
    real = deploy_module.to_onnx
    monkeypatch.setattr(deploy_module, "to_onnx", lambda m, *a, **k: exported.append(m) or real(m, *a, **k))
    BASELINES.clear()
    deploy(cz.compress(model, [cz.Quantize(bits=8)], data), data, model, FAST)
    before = len(exported)
    mixed = MixedInt8(model, data, latency=FAST)
    assert len(exported) == before  # no second export of the fp32 graph
    base = fp32_baseline(model, data, FAST)
    assert mixed.fp32_session is base.session
    assert mixed.fp32 == deploy_module.gemm_to_matmul(onnx.load_from_string(base.graph))  # that graph, Linear as MatMul
    assert mixed.measure(["fc2"]).onnx_bytes == mixed.graph(["fc2"]).ByteSize()
    private = MixedInt8(model, data, latency=FAST, shared=False)
    assert len(exported) == before + 1 and private.fp32_session is not base.session and len(BASELINES) == 1


def test_baseline_identity_is_canonical_and_the_cache_is_bounded():
    model, data = _data("digits-mlp")
    twin = copy.deepcopy(model)
    assert baseline_key(model, data, FAST) == baseline_key(twin, data, replace(FAST, runs=50))  # equal models, one key
    with torch.no_grad():
        twin.fc1.weight[0, 0] += 1
    assert baseline_key(model, data, FAST) != baseline_key(twin, data, FAST)
    cache = BaselineCache(size=1)
    first = cache.get(model, data, FAST)
    assert cache.get(copy.deepcopy(model), data, FAST) is first
    cache.get(twin, data, FAST)
    assert len(cache) == 1 and cache.get(model, data, FAST) is not first  # the oldest went


# ---------------------------------------------------------------- sparse kernels


def test_csr_layers_compute_what_dense_layers_compute():
    model, data = _data("digits-mlp")
    pruned = cz.prune(model, amount=0.9, scope="global")
    X = data.test.X[:5]
    with torch.inference_mode():
        torch.testing.assert_close(to_csr(pruned)(X), pruned(X), atol=1e-5, rtol=1e-5)
    assert linear_sparsity(pruned) == pytest.approx(0.9, abs=0.001)


def test_crossover_is_the_lowest_sparsity_from_which_csr_keeps_winning():
    t = lambda s, dense, csr: SparseTiming(s, dense, csr)  # noqa: E731
    assert _first_lasting_win([t(0.5, 1, 2), t(0.8, 1, 0.9), t(0.9, 1, 1.1), t(0.95, 1, 0.5)]) == 0.95
    assert _first_lasting_win([t(0.5, 1, 2), t(0.9, 1, 0.8), t(0.99, 1, 0.5)]) == 0.9
    assert _first_lasting_win([t(0.5, 1, 2), t(0.99, 1, 1.5)]) is None


# ---------------------------------------------------------------- command line


def test_cli_exports_the_graph_onnx_runtime_runs(tmp_path, capsys):
    from compressor.cli import main

    recipe = tmp_path / "int8.json"
    recipe.write_text(cz.Recipe((cz.Quantize(bits=8, scheme="symmetric", granularity="channel"),)).to_json())
    out = tmp_path / "mlp.onnx"
    assert main(["export", "--model", "digits-mlp", "--recipe", str(recipe), "--out", str(out), "--format", "onnx"]) == 0
    assert f"{out.stat().st_size:,} bytes" in capsys.readouterr().out
    assert "MatMulInteger" in op_types(onnx.load(out))
    X = cz.load_sample("digits-mlp").data.test.X[:8]
    (logits,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": X.numpy()})
    assert logits.shape == (8, 10)


def test_cli_evaluate_reports_the_deployment(capsys):
    from compressor.cli import main

    assert main(["evaluate", "--model", "digits-mlp", "--deployed", "--json", "--runs", "20", "--batch-size", "4"]) == 0
    deployment = json.loads(capsys.readouterr().out)["deployment"]
    assert deployment["kernel"] == "fp32" and deployment["batch_size"] == 4 and deployment["runs"] == 20


def test_cli_refuses_an_unknown_format(tmp_path, capsys):
    from compressor.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export", "--model", "digits-mlp", "--recipe", "r.json", "--out", str(tmp_path / "m"), "--format", "tflite"])
    assert exit_.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_exports_from_many_threads_take_turns():
    from concurrent.futures import ThreadPoolExecutor

    model, data = _data("digits-cnn")  # the dashboard's sessions are threads: the exporter has global state
    with ThreadPoolExecutor(4) as pool:
        protos = list(pool.map(lambda _: to_onnx(model, data.test.X[:2]), range(8)))
    assert len({proto.SerializeToString() for proto in protos}) == 1


def test_deploying_leaves_the_threads_denormal_flushing_as_it_was():
    """ORT's set_denormal_as_zero sets FTZ/DAZ on the calling thread for good; it once made every later
    subnormal count in the process read zero. Deploying must leave the thread as it found it."""
    from compressor.latency import denormals_are_flushed

    sample = cz.load_sample("digits-mlp")
    before = denormals_are_flushed()
    proto = deployed_graph(sample.model, sample.data.test.X[:2])
    sess = session(proto)
    outputs(sess, sample.data.test.X[:10])
    time_sessions({"model": sess}, sample.data.test.X, cz.LatencyConfig(runs=20, warmup=1))
    assert denormals_are_flushed() == before
    assert torch.tensor([2.0**-149]).mul(1.0).item() != 0.0  # a subnormal still computes as itself

"""Mixed precision on ONNX Runtime: exactly the chosen Linear layers run as dynamic int8, the rest stay fp32."""
from __future__ import annotations

import optuna
import pytest

import compressor as cz
from compressor.deploy import MixedInt8, outputs, session
from compressor.inference import score
from compressor.latency import LatencyConfig
from compressor.policy import DEPLOYED_INT8, FP32, Evaluator, Int8Deployment, LayerChoice
from compressor.search import SearchConfig, SearchSpace, front, run_search, trials_frame

optuna.logging.set_verbosity(optuna.logging.WARNING)
QUICK = LatencyConfig(batch_size=32, threads=1, warmup=1, runs=20)


@pytest.fixture(scope="module")
def sample():
    return cz.load_sample("digits-mlp")


@pytest.fixture(scope="module")
def mixed(sample):
    return MixedInt8(sample.model, sample.data, latency=QUICK)


def weights_of(proto, op_type: str) -> set[str]:
    """The constant weight each node of `op_type` multiplies by (its second input)."""
    return {node.input[1] for node in proto.graph.node if node.op_type == op_type}


def test_exactly_the_chosen_layers_are_quantized(mixed):
    proto = mixed.graph(["fc1", "fc3"])
    assert weights_of(proto, "MatMulInteger") == {"fc1.weight_KxN_quantized", "fc3.weight_KxN_quantized"}
    assert weights_of(proto, "MatMul") == {"fc2.weight_KxN"}  # the fp32 layer keeps its fp32 MatMul
    assert sum(node.op_type == "DynamicQuantizeLinear" for node in proto.graph.node) == 2  # one per int8 input
    assert weights_of(mixed.graph([]), "MatMul") == {"fc1.weight_KxN", "fc2.weight_KxN", "fc3.weight_KxN"}
    assert mixed.graph([]) is mixed.fp32  # exported once, re-quantized per choice
    with pytest.raises(ValueError, match="fc9"):
        mixed.graph(["fc9"])


def test_measured_quality_is_the_deployed_graphs(sample, mixed):
    point = mixed.measure(["fc2"])
    reference, _ = score(outputs(session(mixed.graph(["fc2"])), sample.data.test.X).argmax(dim=-1), sample.data.test.y)
    assert point.quality == reference and point.latency_ms > 0 and point.baseline_latency_ms > 0
    assert point.int8_layers == ("fc2",) and point.onnx_bytes == mixed.graph(["fc2"]).ByteSize()


def test_mixed_precision_search_goes_through_measure_deployed(sample):
    deployment = Int8Deployment(sample.model, sample.data, latency=QUICK)
    evaluator = Evaluator(sample.model, sample.data, measure_deployed=deployment)
    m = evaluator({"fc1": LayerChoice(bits=FP32), "fc2": LayerChoice(bits=DEPLOYED_INT8), "fc3": LayerChoice(bits=FP32)})
    assert m.quality == deployment.deployment(cz.Recipe(()))[0].measure(["fc2"]).quality
    assert m.latency_ms is not None and m.baseline_latency_ms is not None
    config = SearchConfig(trials=4, population=2, objectives=("quality", "latency_ms"), max_drop=0.02)
    study = run_search(evaluator, SearchSpace(amounts=None, bits=(DEPLOYED_INT8, FP32)), config)
    frame = trials_frame(study)
    assert len(frame) == 4 and frame["latency_ms"].notna().all()
    # one recipe (int8-deployed layers are not simulated), several policies: the front tells them apart
    assert frame["recipe"].nunique() == 1 and frame["policy"].nunique() >= 2
    best = front(frame, ("quality", "latency_ms"))
    assert len(best) >= 1 and best["policy"].is_unique
    assert study.trials[0].params == {f"fc{i}.bits": DEPLOYED_INT8 for i in (1, 2, 3)}  # warm start: all int8 ...
    assert study.trials[1].params == {f"fc{i}.bits": FP32 for i in (1, 2, 3)}  # ... and all fp32

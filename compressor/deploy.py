"""Deployed reality: the compressed model as ONNX Runtime runs it on this CPU, timed next to the fp32 baseline.

Eager PyTorch runs a fake-quantized model in fp32, so a quantized model is never faster there. Deployment
turns the recipe's weights into the kernels a runtime really has:

    kernel     when                                      graph ONNX Runtime runs
    fp32       nothing quantized (pruned, structured,    the exported fp32 graph: smaller layers and
               low-rank, distilled)                      factorized pairs run smaller dense kernels
    int8       every quantized layer has 8-bit uniform   Linear: dynamic quantization (MatMulInteger; the
               weights                                   input is quantized per batch, weights per tensor or
                                                         per channel as the recipe says); Conv: static QDQ
                                                         calibrated on the training split (QLinearConv)
    int4       every quantized layer is a Linear with    block-wise 4-bit weight-only MatMulNBits
               4-bit uniform weights                     (blocks of BLOCK_SIZE inputs, fp32 activations)
    simulated  anything else (1–3, 5–7 bits, k-means,    the fp32 graph: the compressed file is real, the
               4-bit convolutions, mixed widths)         latency is fp32's (no native kernel here)

Embedding models (`data.kind == "embedding"`, e.g. minilm-l6) take token ids and an attention mask: they are
exported with named int64 inputs `input_ids` and `attention_mask`, free batch and sequence axes, and scored by
fidelity (`compressor.fidelity`: mean and worst cosine to the uncompressed model's embeddings) instead of
argmax accuracy; every batch, scored or timed, is cut to its longest sentence, as a tokenizer padding to the
longest does, so latency is at the sentences' real lengths.

ONNX Runtime re-derives integer codes from the (already quantized) fp32 weights, so the deployed model
can differ a little from the simulated one: int8 dynamic also quantizes each layer's input to 8 bits per
batch, and int4 re-quantizes per block of BLOCK_SIZE inputs instead of per output channel. Accuracy is
therefore measured on the deployed model itself.

Timing: CPUExecutionProvider, `intra_op_num_threads` = threads, sequential execution, denormals flushed
to zero (ORT's `session.set_denormal_as_zero`), warm-up, then the median of many runs alternating model and
baseline run by run (as `compressor.latency.measure_latency` does for eager PyTorch). The baseline's export,
session and held-out outputs do not depend on the compressed model: they are built once per process for each
(baseline, data, threads) and reused (`BaselineCache`); only its timing is repeated, interleaved with each model.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from torch import nn

from compressor import fidelity
from compressor.data import DataSplits, Split
from compressor.inference import EVAL_BATCH
from compressor.latency import Latency, LatencyConfig, batch_of, denormal_state_kept, time_calls
from compressor.layers import eligible_layers
from compressor.onnx_export import Inputs, gemm_to_matmul, input_dict, layer_nodes, to_onnx
from compressor.report import Deployment, Report, evaluate, score
from compressor.sparse_kernel import SparseTiming, linear_sparsity, time_csr
from compressor.state import INPUT_QUANT, clear_input_quant, weight_quant
from sample_models.minilm import trim_padding

PROVIDER = "CPUExecutionProvider"
BLOCK_SIZE = 32  # MatMulNBits: inputs sharing one 4-bit scale (a power of two ≥ 16; ORT's default is 128)
CALIBRATION_EXAMPLES = 256  # training inputs the static (convolution) quantizer observes
CALIBRATION_BATCH = 64
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # what int8 / int4 kernels use on x86
KERNELS = ("fp32", "int8", "int4", "simulated")
TOKEN_AXES = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}}  # embedding models: free length
SPARSE_FROM = 0.25  # Linear layers at least this sparse (pruned, not just rounded) are also timed with CSR at batch 1
BASELINES_KEPT = 4  # deployed fp32 baselines a process keeps (minilm-l6's session holds about 90 MB of weights)
ACCURACY_GAP = 0.005  # a deployed accuracy this far (half a point) from the simulated one is explained


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizers log advice and per-node lines on the root logger: hold them back."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# ---------------------------------------------------------------- which kernels


@dataclass(frozen=True)
class KernelPlan:
    """Which ONNX Runtime kernels a compressed model can run on, and why."""

    kernel: str  # one of KERNELS
    layers: tuple[str, ...] = ()  # quantized layers the integer kernels compute (int8 / int4)
    per_channel: bool = False  # int8: one weight scale per output channel
    symmetric: bool = True  # weights on a grid symmetric about zero
    reason: str = ""  # one line, for reports

    @property
    def simulated(self) -> bool:
        return self.kernel == "simulated"


def plan_kernels(model: nn.Module) -> KernelPlan:
    """The kernel family a model's quantization maps onto (see the module docstring's table)."""
    quantized = {name: (m, weight_quant(m)) for name, m in eligible_layers(model).items() if weight_quant(m)}
    if not quantized:
        return KernelPlan("fp32", reason="no quantized weights: the fp32 graph runs as exported")
    specs = [spec for _, spec in quantized.values()]
    bits = sorted({spec.bits for spec in specs})
    names = tuple(quantized)
    symmetric = all(spec.scheme == "symmetric" for spec in specs)
    if any(spec.method == "kmeans" for spec in specs):
        return KernelPlan("simulated", reason="k-means codebooks have no integer kernel: runs in fp32")
    if bits == [8]:
        per_channel = any(spec.granularity == "channel" for spec in specs)
        return KernelPlan("int8", names, per_channel, symmetric, "8-bit weights run on integer kernels")
    if bits == [4] and all(isinstance(m, nn.Linear) for m, _ in quantized.values()):
        return KernelPlan("int4", names, False, symmetric, "4-bit Linear weights run on MatMulNBits")
    why = "4-bit convolutions have no 4-bit kernel" if bits == [4] else f"{'/'.join(map(str, bits))}-bit weights " \
        "have no native kernel"
    return KernelPlan("simulated", reason=f"{why} on this CPU: runs in fp32")


# ---------------------------------------------------------------- deployed graphs


class _Calibration(CalibrationDataReader):
    """Batches of training inputs for ONNX Runtime's static quantizer (activation ranges)."""

    def __init__(self, inputs: Inputs) -> None:
        named = {k: v[:CALIBRATION_EXAMPLES].numpy() for k, v in input_dict(inputs).items()}
        count = len(next(iter(named.values())))
        self._batches = iter(
            [{k: v[i : i + CALIBRATION_BATCH] for k, v in named.items()} for i in range(0, count, CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _nodes(proto: onnx.ModelProto, layers: tuple[str, ...], kinds: tuple[str, ...]) -> list[str]:
    return [node for layer in layers for node in layer_nodes(proto, layer, kinds)]


def _check_mapped(proto: onnx.ModelProto, plan: KernelPlan) -> None:
    """Every layer the plan quantizes must be found in the graph: a layer silently left in fp32 would be a wrong label."""
    missing = [layer for layer in plan.layers if not layer_nodes(proto, layer, ("Conv", "MatMul"))]
    if missing:
        raise ValueError(f"layer(s) {', '.join(missing)} not found in the exported ONNX graph; cannot put their "
                         f"weights on {plan.kernel} kernels")


def int8_graph(proto: onnx.ModelProto, plan: KernelPlan, calibration: Inputs) -> onnx.ModelProto:
    """Convolutions → static QDQ (calibrated); Linear (MatMul) → dynamic int8, only on the plan's layers."""
    proto = gemm_to_matmul(proto)
    _check_mapped(proto, plan)
    convs, matmuls = _nodes(proto, plan.layers, ("Conv",)), _nodes(proto, plan.layers, ("MatMul",))
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        if convs:
            path = str(Path(tmp) / "static.onnx")
            quantize_static(
                proto, path, _Calibration(calibration), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                nodes_to_quantize=convs, per_channel=plan.per_channel, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": plan.symmetric},
            )
            proto = onnx.load(path)
        if matmuls:
            path = str(Path(tmp) / "dynamic.onnx")
            quantize_dynamic(
                proto, path, op_types_to_quantize=["MatMul"], nodes_to_quantize=matmuls, per_channel=plan.per_channel,
                weight_type=QuantType.QInt8 if plan.symmetric else QuantType.QUInt8,
                extra_options={"WeightSymmetric": plan.symmetric},
            )
            proto = onnx.load(path)
    return proto


def int4_graph(proto: onnx.ModelProto, plan: KernelPlan) -> onnx.ModelProto:
    """The plan's Linear layers → MatMulNBits (4-bit weights in blocks of BLOCK_SIZE inputs)."""
    proto = gemm_to_matmul(proto)
    _check_mapped(proto, plan)
    chosen = set(_nodes(proto, plan.layers, ("MatMul",)))
    others = [node.name for node in proto.graph.node if node.op_type == "MatMul" and node.name not in chosen]
    quantizer = MatMulNBitsQuantizer(  # its nodes_to_include adds to the op types: exclude the others instead
        proto, bits=4, block_size=BLOCK_SIZE, is_symmetric=plan.symmetric, nodes_to_exclude=others,
        op_types_to_quantize=("MatMul",),
    )
    with _quiet_quantizer():
        quantizer.process()
    return quantizer.model.model


def deployed_graph(model: nn.Module, example: Inputs, plan: KernelPlan | None = None,
                   calibration: Inputs | None = None,
                   dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> onnx.ModelProto:
    """The ONNX graph that deploys `model` on the kernels of `plan` (default: `plan_kernels(model)`).

    `calibration` (training inputs) is needed when int8 convolutions are quantized statically. `example`
    may be named inputs (token ids and mask, int64) with `dynamic_axes` such as {"input_ids": {1: "sequence"}}.
    """
    plan = plan or plan_kernels(model)
    if plan.kernel == "int8":
        model = _inputs_left_to_kernels(model)
    proto = to_onnx(model, example, dynamic_axes)
    if plan.kernel == "int8":
        if calibration is None and any(isinstance(m, nn.Conv1d | nn.Conv2d) for m in _modules(model, plan.layers)):
            raise ValueError("int8 convolutions are quantized statically: pass calibration inputs (the training split)")
        return int8_graph(proto, plan, calibration if calibration is not None else example)
    if plan.kernel == "int4":
        return int4_graph(proto, plan)
    return proto


def _inputs_left_to_kernels(model: nn.Module) -> nn.Module:
    """A copy without simulated input quantization: int8 kernels quantize each layer's input themselves (per batch
    for Linear, calibrated on training data for convolutions), and ORT's static quantizer cannot stack its QDQ
    on the exported fake-quantization of a convolution's input."""
    if not any(hasattr(m, INPUT_QUANT) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        clear_input_quant(module)
    return model


def _modules(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    return [modules[name] for name in names if name in modules]


# ---------------------------------------------------------------- running and timing


def session(graph: onnx.ModelProto | bytes, threads: int = 1, optimize: bool = True) -> ort.InferenceSession:
    """An ONNX Runtime CPU session of a graph (or its serialized bytes, which the session then holds without a copy):
    `threads` intra-op threads, sequential, FTZ/DAZ, all graph optimizations (optimize=False runs the graph node by
    node as exported: how tests check the exporter itself)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.log_severity_level = 3  # errors only
    with denormal_state_kept():
        data = graph if isinstance(graph, bytes) else graph.SerializeToString()
        return ort.InferenceSession(data, options, providers=[PROVIDER])


def feeds(inputs: Inputs, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Session inputs for rows start:stop, in each input's own dtype (float32 features, int64 token ids)."""
    return {name: t[start:stop].numpy() for name, t in input_dict(inputs).items()}


def outputs(sess: ort.InferenceSession, inputs: Inputs) -> torch.Tensor:
    """The session's first output over all inputs, in batches of EVAL_BATCH."""
    count = len(next(iter(input_dict(inputs).values())))
    with denormal_state_kept():
        parts = [sess.run(None, feeds(inputs, i, i + EVAL_BATCH))[0] for i in range(0, count, EVAL_BATCH)]
    return torch.from_numpy(np.concatenate(parts))


def batch_feeds(inputs: Inputs, batch_size: int) -> dict[str, np.ndarray]:
    """The first batch_size inputs (repeated when there are fewer) as session inputs."""
    named = input_dict(inputs)
    count = len(next(iter(named.values())))
    repeats = -(-batch_size // count)
    return {k: (v.repeat((repeats,) + (1,) * (v.dim() - 1)) if repeats > 1 else v)[:batch_size].numpy()
            for k, v in named.items()}


def time_sessions(sessions: Mapping[str, ort.InferenceSession], inputs: Inputs,
                  config: LatencyConfig = LatencyConfig()) -> dict[str, Latency]:
    """Milliseconds per batch of each session on the same batch, interleaved."""
    batch = batch_feeds(inputs, config.batch_size)
    with denormal_state_kept():
        return time_calls({name: (lambda s=s: s.run(None, batch)) for name, s in sessions.items()}, config,
                          flushed=True)


def cpu_flags() -> tuple[str, ...]:
    """The instruction sets int8 / int4 speed depends on that this CPU has (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return tuple(flag for flag in CPU_FLAGS if flag in flags)


# ---------------------------------------------------------------- the measurement


def token_inputs(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """A sentence encoder's named int64 inputs for token ids (N, L) padded with 0: `input_ids` and
    `attention_mask`, cut to the longest sentence of these rows (its real sequence length)."""
    ids, mask = trim_padding(ids.long())
    return {"input_ids": ids, "attention_mask": mask.long()}


def export_inputs(data: DataSplits) -> tuple[Inputs, dict[str, dict[int, str]] | None]:
    """An example batch to trace the export on, and the free axes beyond the batch one (sequence length for token
    inputs), for the kind of data the model reads."""
    example = data.test.X[: min(2, len(data.test))]
    if data.kind == "embedding":
        return token_inputs(example), TOKEN_AXES
    return example, None


def export_graph(model: nn.Module, data: DataSplits) -> onnx.ModelProto:
    """The deployed graph of `model` for its data (what `deploy` runs), e.g. for a download."""
    example, axes = export_inputs(data)
    return deployed_graph(model, example, calibration=_calibration(data), dynamic_axes=axes)


def _calibration(data: DataSplits) -> Inputs:
    return token_inputs(data.train.X[:CALIBRATION_EXAMPLES]) if data.kind == "embedding" else data.train.X


def session_encoder(sess: ort.InferenceSession) -> fidelity.Encode:
    """Token ids → embeddings through an ONNX Runtime session, each batch cut to its longest sentence."""
    def encode(ids: torch.Tensor) -> torch.Tensor:
        with denormal_state_kept():
            return torch.from_numpy(sess.run(None, feeds(token_inputs(ids)))[0])
    return encode


@dataclass(frozen=True)
class _Scores:
    """Deployed, simulated (PyTorch) and deployed-baseline quality: accuracy, or mean cosine for embeddings."""

    deployed: float
    simulated: float
    baseline: float
    worst: float | None = None  # embedding models: the deployed model's worst cosine


def _classifier_scores(model: nn.Module, test: Split, sess: ort.InferenceSession, base: "Baseline",
                       simulated: float | None) -> _Scores:
    """Argmax accuracy of the session and of the baseline (against labels, else the baseline's predictions)."""
    reference = base.test_outputs.argmax(dim=-1)
    target = test.y if test.y is not None else reference
    accuracy, _ = score(outputs(sess, test.X).argmax(dim=-1), target)
    base_accuracy, _ = score(reference, target)
    if simulated is None:
        with torch.inference_mode():
            simulated, _ = score(model.eval()(test.X).argmax(dim=-1), target)
    return _Scores(accuracy, simulated, base_accuracy)


def _embedding_scores(model: nn.Module, data: DataSplits, baseline: nn.Module, sess: ort.InferenceSession,
                      base: "Baseline", simulated: float | None, ref: fidelity.Reference | None) -> _Scores:
    """Mean cosine of the session's and the fp32 graph's embeddings to the uncompressed (eager fp32) ones; worst
    cosine deployed."""
    ref = ref if ref is not None else fidelity.reference(baseline, data)
    found = fidelity.measure(session_encoder(sess), data, ref)
    base_cosine = fidelity.compare(base.test_outputs, ref).mean_cosine
    if simulated is None:
        simulated = fidelity.measure(model, data, ref).mean_cosine
    return _Scores(found.mean_cosine, simulated, base_cosine, found.worst_cosine)


def deploy(model: nn.Module, data: DataSplits, baseline: nn.Module, latency: LatencyConfig = LatencyConfig(),
           simulated_accuracy: float | None = None, sequence_length: int | None = None,
           reference: fidelity.Reference | None = None) -> tuple[Deployment, onnx.ModelProto]:
    """Export `model`, run it on ONNX Runtime next to the fp32 `baseline` (`fp32_baseline`: exported and scored
    once per process), score it and time both interleaved; returns the measurement and the deployed graph (write
    it with `proto.SerializeToString()`).

    Embedding data: the deployed "accuracy" is the mean cosine to the uncompressed embeddings (`reference`, from
    `fidelity.reference(baseline, data)`, is computed when not given), `deployed_worst_cosine` the worst, and
    the timed batch is the first `batch_size` held-out sentences at their real length (`sequence_length`).
    """
    plan = plan_kernels(model)
    test = data.test
    example, axes = export_inputs(data)
    proto = deployed_graph(model, example, plan, _calibration(data), dynamic_axes=axes)
    sess, base = session(proto, latency.threads), fp32_baseline(baseline, data, latency)
    if data.kind == "embedding":
        scores = _embedding_scores(model, data, baseline, sess, base, simulated_accuracy, reference)
    else:
        scores = _classifier_scores(model, test, sess, base, simulated_accuracy)
    timed, sequence_length = _timed_inputs(data, latency.batch_size)
    timing = time_sessions({"model": sess, "baseline": base.session}, timed, latency)
    lat, base_lat = timing["model"], timing["baseline"]
    ops = {node.op_type for node in proto.graph.node}
    deployment = Deployment(
        kernel=plan.kernel, kernel_detail=_detail(plan, ops), simulated=plan.simulated, runtime="onnxruntime",
        runtime_version=ort.__version__, execution_provider=PROVIDER, op_types=sorted(ops),
        deployed_bytes=proto.ByteSize(), baseline_bytes=base.onnx_bytes,
        deployed_accuracy=scores.deployed, simulated_accuracy=scores.simulated, baseline_accuracy=scores.baseline,
        deployed_latency_ms=lat.median_ms, deployed_latency_spread_ms=lat.spread_ms,
        deployed_baseline_latency_ms=base_lat.median_ms, deployed_speedup=base_lat.median_ms / lat.median_ms,
        batch_size=latency.batch_size, sequence_length=sequence_length, threads=latency.threads, runs=latency.runs,
        denormals_flushed=True, cpu_flags=list(cpu_flags()),
        sparse=_sparse_timing(model, test.X, latency) if data.kind != "embedding" else None,
        metric="cosine" if data.kind == "embedding" else "accuracy", deployed_worst_cosine=scores.worst,
    )
    return replace(deployment, notes=deployment_notes(deployment)), proto


def _timed_inputs(data: DataSplits, batch_size: int) -> tuple[Inputs, int | None]:
    """What latency is timed on, and its sequence length: token inputs are the first `batch_size` held-out
    sentences cut to their longest one; other inputs are the held-out split (`time_sessions` takes a batch)."""
    if data.kind == "embedding":
        timed = token_inputs(batch_of(data.test.X, batch_size))
        return timed, int(timed["input_ids"].shape[1])
    return data.test.X, None


# ---------------------------------------------------------------- the fp32 baseline, once per process


@dataclass(frozen=True)
class Baseline:
    """The fp32 baseline as deployed: what every configuration of one model is compared with."""

    session: ort.InferenceSession  # the exported fp32 graph on ONNX Runtime (thread-safe to run)
    graph: bytes  # that graph, serialized: the .onnx file (the session holds these same bytes, no copy)
    test_outputs: torch.Tensor  # (N_test, ·) its logits, or embeddings, of the held-out split

    @property
    def onnx_bytes(self) -> int:
        return len(self.graph)


class BaselineCache:
    """At most `size` deployed fp32 baselines, least recently used first out, keyed by what they depend on.

    The baseline's export, session and held-out outputs depend only on the baseline model, the data and the
    thread count, never on the compressed model; building them was most of a deployment's cost for minilm-l6,
    so a new configuration only exports, quantizes and scores its own graph. Its latency is not cached: it is
    timed again, interleaved run by run with each model, so the deployed speedup holds while the machine's
    load changes (a latency kept from another moment would not). The key is canonical: a digest of the
    baseline's class and state (names, dtypes, shapes, bytes), of the held-out inputs and labels, and the
    thread count, so equal models share an entry whoever built them. Concurrent callers asking for the same
    missing baseline build it once.
    """

    def __init__(self, size: int = BASELINES_KEPT) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, Baseline] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple, threading.Lock] = {}

    def get(self, baseline: nn.Module, data: DataSplits, latency: LatencyConfig) -> Baseline:
        key = baseline_key(baseline, data, latency)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                found = self._entries.get(key)
            if found is None:
                found = _build_baseline(baseline, data, latency)
                with self._lock:
                    self._entries[key] = found
                    self._building.pop(key, None)
                    while len(self._entries) > self.size:
                        self._entries.popitem(last=False)
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def baseline_key(baseline: nn.Module, data: DataSplits, latency: LatencyConfig) -> tuple:
    """The canonical identity of a deployed baseline: digests of the model and held-out data, the session's threads."""
    weights = hashlib.blake2b(type(baseline).__qualname__.encode(), digest_size=16)
    for name, tensor in baseline.state_dict().items():
        _digest(weights, name, tensor)
    held_out = hashlib.blake2b(data.kind.encode(), digest_size=16)
    _digest(held_out, "X", data.test.X)
    if data.test.y is not None:
        _digest(held_out, "y", data.test.y)
    return weights.hexdigest(), held_out.hexdigest(), latency.threads


def _digest(h: Any, name: str, tensor: torch.Tensor) -> None:
    """Feed a tensor's name, dtype, shape and bytes to the hash `h`."""
    tensor = tensor.detach().cpu().contiguous()
    h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
    h.update(tensor.reshape(-1).view(torch.uint8).numpy())


def _build_baseline(baseline: nn.Module, data: DataSplits, latency: LatencyConfig) -> Baseline:
    """Export the fp32 baseline, open its session and record its held-out outputs: the one place the fp32 graph of
    a deployment is built (`deploy` and `MixedInt8` both start from it)."""
    example, axes = export_inputs(data)
    graph = to_onnx(baseline, example, axes).SerializeToString()
    sess = session(graph, latency.threads)
    if data.kind == "embedding":
        test_outputs = fidelity.embed(session_encoder(sess), data.test.X)
    else:
        test_outputs = outputs(sess, data.test.X)
    return Baseline(sess, graph, test_outputs)


BASELINES = BaselineCache()  # this process's deployed baselines


def fp32_baseline(baseline: nn.Module, data: DataSplits, latency: LatencyConfig = LatencyConfig()) -> Baseline:
    """The deployed fp32 `baseline` for this data and `latency.threads`, built on first use (`BASELINES`)."""
    return BASELINES.get(baseline, data, latency)


def _sparse_timing(model: nn.Module, X: torch.Tensor, latency: LatencyConfig) -> SparseTiming | None:
    """Dense vs CSR at batch 1 when the Linear layers are pruned enough for the comparison to teach something."""
    if linear_sparsity(model) < SPARSE_FROM:
        return None
    return time_csr(model, X, runs=latency.runs, threads=latency.threads)


def _detail(plan: KernelPlan, ops: set[str]) -> str:
    """The kernels in words, from the plan and the operators the deployed graph really holds."""
    granularity = "per channel" if plan.per_channel else "per tensor"
    scheme = "symmetric" if plan.symmetric else "affine"
    if plan.kernel == "int8":
        parts = ["Linear as dynamic int8 (MatMulInteger)"] if "MatMulInteger" in ops else []
        if "QuantizeLinear" in ops and "Conv" in ops:
            parts.append("convolutions as static QDQ calibrated on the training split (QLinearConv)")
        return f"int8 {scheme} weights {granularity}: {', '.join(parts)}"
    if plan.kernel == "int4":
        return f"int4 {scheme} weight-only MatMulNBits, blocks of {BLOCK_SIZE} inputs, fp32 activations"
    return plan.reason


def deployment_notes(d: Deployment) -> list[str]:
    """What the deployed numbers mean, in plain words."""
    tokens = f" of {d.sequence_length} tokens" if d.sequence_length else ""
    notes = [f"Deployed on ONNX Runtime {d.runtime_version} ({d.execution_provider}, {d.threads} thread(s), batch "
             f"{d.batch_size}{tokens}, denormals flushed): {d.kernel_detail}. Deployed speedup {d.deployed_speedup:.2f}× "
             f"against the fp32 baseline on the same runtime."]
    if d.metric == "cosine":
        notes.append(f"Deployed fidelity: mean cosine {d.deployed_accuracy:.4f} (worst {d.deployed_worst_cosine:.4f}) to "
                     f"the uncompressed embeddings; the simulated (PyTorch) model's mean is {d.simulated_accuracy:.4f}, "
                     f"the fp32 graph's {d.baseline_accuracy:.4f}.")
    if d.simulated:
        notes.append("Simulated quantization: the compressed file is real, but no native kernel exists for these "
                     "weights on this CPU, so the deployed latency is the fp32 graph's.")
    if d.sparse is not None:
        pays = "pays" if d.sparse.csr_speedup > 1 else "does not pay yet"
        notes.append(f"{d.sparse.sparsity:.0%} of the Linear weights are zero: dense kernels skip none of them. A CSR "
                     f"sparse kernel at batch 1 takes {d.sparse.csr_ms:.3f} ms per input against {d.sparse.dense_ms:.3f} "
                     f"ms dense ({d.sparse.csr_speedup:.2f}×): at this sparsity and layer size it {pays}.")
    gap = d.deployed_accuracy - d.simulated_accuracy
    if abs(gap) > ACCURACY_GAP:
        convs = " and calibrates convolution activations on training data" if "QLinearConv" in d.op_types or (
            "Conv" in d.op_types and "QuantizeLinear" in d.op_types) else ""
        why = {"int8": f"ONNX Runtime also quantizes each Linear's input to 8 bits per batch (dynamic){convs}, which "
                       "the simulated model does not",
               "int4": f"ONNX Runtime re-quantizes the 4-bit weights in blocks of {BLOCK_SIZE} inputs instead of the "
                       "recipe's grid"}.get(d.kernel, "the runtime's kernels round differently from PyTorch's")
        what = "mean cosine" if d.metric == "cosine" else "accuracy"
        notes.append(f"Deployed {what} {d.deployed_accuracy:.1%} differs from the simulated {d.simulated_accuracy:.1%} "
                     f"by {gap * 100:+.1f} points: {why}.")
    return notes


def with_deployment(report: Report, deployment: Deployment) -> Report:
    """The report with its deployed measurement attached (and its notes appended)."""
    return replace(report, deployment=deployment, notes=[*report.notes, *deployment.notes])


def report_from_dict(data: dict[str, Any]) -> Report:
    """A report back from `Report.to_dict()` (e.g. a shared on-disk cache), its deployment rebuilt as data."""
    deployment = data.get("deployment")
    if isinstance(deployment, dict):
        sparse = deployment.get("sparse")
        sparse = SparseTiming(**sparse) if isinstance(sparse, dict) else sparse
        deployment = Deployment(**{**deployment, "sparse": sparse})
    return Report(**{**data, "deployment": deployment})


def evaluate_deployed(model: nn.Module, data: DataSplits, baseline: nn.Module | None = None,
                      latency: LatencyConfig = LatencyConfig(), recipe: dict[str, Any] | None = None,
                      reference: fidelity.Reference | None = None) -> Report:
    """`compressor.evaluate` plus the deployed measurement (ONNX Runtime latency, kernels, deployed accuracy or,
    for embedding data, deployed fidelity; `reference` skips re-embedding with the baseline)."""
    baseline = model if baseline is None else baseline
    if data.kind == "embedding" and reference is None:
        reference = fidelity.reference(baseline, data)
    report = evaluate(model, data, baseline=baseline, latency=latency, recipe=recipe, reference=reference)
    deployment, _ = deploy(model, data, baseline, latency, simulated_accuracy=report.accuracy, reference=reference)
    return with_deployment(report, deployment)


# ---------------------------------------------------------------- mixed precision: chosen Linear layers in int8


@dataclass(frozen=True)
class MixedPoint:
    """One mixed-precision deployment, measured: quality of the deployed graph and its latency, timed interleaved
    with the fp32 graph on the same batch (so the ratio holds under a shared machine's changing load)."""

    int8_layers: tuple[str, ...]  # Linear layers run as dynamic int8; every other layer stays fp32
    quality: float  # accuracy, or mean cosine to the uncompressed embeddings (embedding data)
    worst_cosine: float | None  # embedding data: the worst held-out sentence's cosine
    latency_ms: float  # median per batch
    baseline_latency_ms: float  # the fp32 graph, same run
    onnx_bytes: int

    @property
    def speedup(self) -> float:
        return self.baseline_latency_ms / self.latency_ms


class MixedInt8:
    """One model deployed with a chosen set of Linear layers as dynamic int8 (symmetric, per channel unless told
    otherwise: ONNX Runtime's MatMulInteger, the input quantized per batch) and every other layer in fp32.

    The fp32 graph and its session are the deployed baseline's (`fp32_baseline`: exported once per process and
    shared with `deploy`, so the app's deployments and a search of the same model export it once; `shared=False`
    builds a private one the same way, for a model that is not worth a place in that bounded cache, such as one
    recipe's model among a search's many). Each `measure(layers)` only re-quantizes it (`int8_graph`, i.e.
    `quantize_dynamic` with `nodes_to_quantize` = those layers' MatMul nodes), so a mixed-precision search pays
    for quantization, scoring and timing, never for another export. The fp32 session is the timing baseline.
    """

    def __init__(self, model: nn.Module, data: DataSplits, per_channel: bool = True,
                 latency: LatencyConfig = LatencyConfig(warmup=3, runs=20),
                 reference: fidelity.Reference | None = None, shared: bool = True) -> None:
        self.model, self.data, self.latency = model, data, latency
        self.plan = KernelPlan("int8", per_channel=per_channel, symmetric=True)
        base = fp32_baseline(model, data, latency) if shared else _build_baseline(model, data, latency)
        self.fp32 = gemm_to_matmul(onnx.load_from_string(base.graph))  # Linear as MatMul: what int8 rewrites
        self.fp32_session = base.session
        if data.kind == "embedding" and reference is None:
            reference = fidelity.reference(model, data)
        self.reference = reference
        self.timed = token_inputs(batch_of(data.test.X, latency.batch_size)) if data.kind == "embedding" else data.test.X

    @property
    def linear_layers(self) -> list[str]:
        """Layers that can run as int8 here: the Linear layers (convolutions would need static calibration)."""
        return [name for name, m in eligible_layers(self.model).items() if isinstance(m, nn.Linear)]

    def graph(self, layers: tuple[str, ...] | list[str]) -> onnx.ModelProto:
        """The fp32 graph with exactly `layers` quantized to dynamic int8 (no layers: the fp32 graph itself)."""
        unknown = sorted(set(layers) - set(self.linear_layers))
        if unknown:
            raise ValueError(f"layer(s) {', '.join(unknown)} are not Linear layers of the model; int8 mixed precision "
                             f"chooses among: {', '.join(self.linear_layers)}")
        if not layers:
            return self.fp32
        return int8_graph(self.fp32, replace(self.plan, layers=tuple(layers)), self.timed)

    def measure(self, layers: tuple[str, ...] | list[str]) -> MixedPoint:
        """Deploy with `layers` in int8, score on the held-out split, time against the fp32 graph."""
        proto = self.graph(layers)
        sess = session(proto, self.latency.threads)
        worst = None
        if self.data.kind == "embedding":
            found = fidelity.measure(session_encoder(sess), self.data, self.reference)
            quality, worst = found.mean_cosine, found.worst_cosine
        else:
            quality, _ = score(outputs(sess, self.data.test.X).argmax(dim=-1), self.data.test.y)
        timing = time_sessions({"model": sess, "baseline": self.fp32_session}, self.timed, self.latency)
        return MixedPoint(tuple(layers), quality, worst, timing["model"].median_ms, timing["baseline"].median_ms,
                          proto.ByteSize())

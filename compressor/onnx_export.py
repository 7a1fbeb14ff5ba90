"""Export a (compressed) PyTorch model to ONNX, the file format ONNX Runtime and most deployment runtimes read.

Every technique keeps standard layers (see `compressor.state`), so the exporter needs no special cases:
pruned weights are zeros in a dense tensor, structurally pruned layers are physically smaller, factorized
layers are two standard layers, fake-quantized weights hold their dequantized fp32 values (the file carries
the real weights the compressed model computes with), and a quantized layer input (`activations=True`)
exports as a QuantizeLinear → DequantizeLinear pair. Turning those fp32 weights into integer kernels is
`compressor.deploy`'s job.

Inputs are one tensor (named "input") or a mapping of named tensors (a tokenizer's `input_ids`,
`attention_mask`, …, int64 as they come); axis 0 of every input and of the output is the batch axis,
free in the exported graph, so one file serves any batch size.
"""
from __future__ import annotations

import copy
import io
import threading
import warnings
from collections.abc import Mapping

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

Inputs = torch.Tensor | Mapping[str, torch.Tensor]  # one input tensor, or named inputs (e.g. token ids and mask)
OPSET = 17  # ONNX opset of exported graphs (LayerNormalization needs ≥ 17); ORT 1.32 runs up to 23
INPUT_NAME, OUTPUT_NAME = "input", "output"
_EXPORTING = threading.Lock()  # the TorchScript exporter keeps global state ("in_onnx_export"): one export at a time


def input_dict(inputs: Inputs) -> dict[str, torch.Tensor]:
    """Named inputs: a lone tensor is called "input"."""
    return {INPUT_NAME: inputs} if isinstance(inputs, torch.Tensor) else dict(inputs)


def to_onnx(model: nn.Module, example: Inputs, dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> onnx.ModelProto:
    """The model as an ONNX graph, traced on `example` (a batch of inputs); the model is not changed.

    Uses the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`): it exports these models in
    0.1–0.2 s where the dynamo exporter takes 1.3–4 s (measured on digits-mlp, digits-cnn and the test
    Transformer), and the dashboard exports every configuration it times. It is not thread-safe (the
    dashboard's sessions are threads), so exports take turns. `dynamic_axes` adds free axes
    beyond the batch axis (e.g. {"input_ids": {1: "sequence"}}).
    """
    named = input_dict(example)
    axes = {name: {0: "batch"} for name in named} | {OUTPUT_NAME: {0: "batch"}}
    for name, extra in (dynamic_axes or {}).items():
        axes[name] = {**axes.get(name, {}), **extra}
    model = copy.deepcopy(model).eval()  # export toggles modes: never on a model other sessions share
    buffer = io.BytesIO()
    args, kwargs = ((example,), None) if isinstance(example, torch.Tensor) else ((), named)  # named → keywords
    with _EXPORTING, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, args, buffer, kwargs=kwargs, dynamo=False,
            input_names=list(named), output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=OPSET,
        )
    return onnx.load_from_string(buffer.getvalue())


def gemm_to_matmul(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every Gemm with a constant weight becomes MatMul (+ Add for the bias).

    The exporter writes a Linear on 2-D input as Gemm(X, W, b, transB=1); ONNX Runtime's dynamic int8
    quantizer (MatMulInteger) and its 4-bit weight-only quantizer (MatMulNBits) only rewrite MatMul nodes
    with a constant (K, N) weight. So W (N, K) is stored transposed and Y = X·Wᵀ + b is spelled
    MatMul(X, Wᵀ) then Add(b). Node names keep the Gemm's name (they name the PyTorch layer).
    """
    proto = copy.deepcopy(proto)
    graph = proto.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])  # (N, K) with transB=1, else (K, N)
        kn = np.ascontiguousarray(w.T if attrs.get("transB", 0) else w)  # (K, N)
        kn_name = f"{node.input[1]}_KxN"
        graph.initializer.append(numpy_helper.from_array(kn, kn_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], kn_name], [product], name=node.name))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return proto


def scope_of(layer: str) -> str:
    """The node-name prefix the exporter gives PyTorch layer `layer`: one segment per module level, where
    a child of a Sequential/ModuleList is named with its parent ("layers.0.mlp.0" → "/layers/layers.0/mlp/mlp.0/")."""
    parts = layer.split(".")
    segments = [f"{parts[i - 1]}.{part}" if part.isdigit() and i else part for i, part in enumerate(parts)]
    return "/" + "/".join(segments) + "/"


def scopes_of(layer: str) -> tuple[str, ...]:
    """The node-name prefixes layer `layer` may get: `scope_of`'s, and the one where a numbered child replaces its
    container's segment, as the exporter writes Hugging Face models ("bert.encoder.layer.0.output.dense" →
    "/bert/encoder/layer.0/output/dense/")."""
    parts = layer.split(".")
    collapsed = [f"{parts[i - 1]}.{part}" if part.isdigit() and i else part
                 for i, part in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].isdigit())]
    return tuple(dict.fromkeys((scope_of(layer), "/" + "/".join(collapsed) + "/")))


def layer_nodes(proto: onnx.ModelProto, layer: str, kinds: tuple[str, ...]) -> list[str]:
    """Names of the graph's nodes of types `kinds` that compute PyTorch layer `layer` directly (not in a child),
    so per-layer choices of a recipe carry over to the graph."""
    prefixes = scopes_of(layer)
    return [
        node.name for node in proto.graph.node
        if node.op_type in kinds and any(node.name.startswith(p) and "/" not in node.name[len(p):] for p in prefixes)
    ]


def op_types(proto: onnx.ModelProto) -> set[str]:
    """The operator types a graph uses."""
    return {node.op_type for node in proto.graph.node}

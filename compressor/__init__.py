"""Compression Lab's core: compress a PyTorch model and measure what it costs and what it wins.

    import compressor as cz
    sample = cz.load_sample("digits-mlp")
    recipe = cz.Recipe((cz.Prune(amount=0.9, scope="global"), cz.Quantize(bits=4, scheme="symmetric", granularity="channel")))
    small = cz.compress(sample.model, recipe, sample.data)
    report = cz.evaluate(small, sample.data, baseline=sample.model)
"""
from compressor.data import DataSplits, Sample, Split
from compressor.artifact import encode, export, load
from compressor.distillation import distill, make_student, train_scratch
from compressor.latency import LatencyConfig
from compressor.low_rank import low_rank
from compressor.models import build_model, list_samples, load_sample
from compressor.pipeline import apply_step, compress, compress_stages
from compressor.pruning import prune
from compressor.quantization import quantize
from compressor.recipe import Finetune, LowRank, Prune, Quantize, Recipe
from compressor.report import Report, evaluate
from compressor.deploy import Deployment, deploy, evaluate_deployed
from compressor.schedules import gradual_prune
from compressor.structured import prune_channels
from compressor.training import finetune

__all__ = [
    "DataSplits", "Deployment", "Finetune", "LatencyConfig", "LowRank", "Prune", "Quantize", "Recipe", "Report", "Sample", "Split",
    "apply_step", "build_model", "compress", "compress_stages", "deploy", "distill", "encode", "evaluate", "evaluate_deployed", "export", "finetune",
    "gradual_prune", "list_samples", "load", "load_sample", "low_rank", "make_student", "prune", "prune_channels",
    "quantize", "train_scratch",
]

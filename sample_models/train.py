"""Retrain the sample models from scratch and write their weights: `python -m sample_models.train [--model NAME]`.

Seeded and deterministic on CPU: minibatch Adam with weight decay and a cosine learning-rate decay,
batches shuffled by a seeded generator, one thread (so the result does not depend on the core count).
Label smoothing (ε = 0.1) is what lifts both models from about 97.5% to about 99% test accuracy on this small data set.
Subnormal weights (|w| < 1.18e-38: weight decay shrinks dead units towards zero) are written as exact zeros:
on many CPUs dense kernels run ten times slower on them, which would make any technique that zeroes them look fast.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import sample_models
from compressor.data import Split
from compressor.validation import check_choice, check_int


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for one sample."""

    epochs: int
    lr: float = 1e-3  # Adam step size
    weight_decay: float = 1e-4  # L2 penalty, via Adam's weight_decay
    batch_size: int = 64
    label_smoothing: float = 0.1  # target 1 − ε on the true class, ε spread evenly over all classes
    seed: int = 0  # initial weights and batch order


CONFIGS: dict[str, TrainConfig] = {
    "digits-mlp": TrainConfig(epochs=40, lr=3e-3),
    "digits-cnn": TrainConfig(epochs=80, lr=3e-3, batch_size=32),
}


def accuracy(model: nn.Module, split: Split) -> float:
    """Fraction of `split` that `model` classifies correctly."""
    model.eval()
    with torch.no_grad():
        return (model(split.X).argmax(dim=1) == split.y).float().mean().item()


def train_model(name: str, epochs: int | None = None) -> nn.Module:
    """Sample `name` trained from its seed (`epochs` overrides the configured count); returned in eval mode."""
    config = CONFIGS[check_choice("name", name, CONFIGS)]
    epochs = config.epochs if epochs is None else check_int("epochs", epochs, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # summation order, hence the bits of the result, depends on the thread count
    try:
        torch.manual_seed(config.seed)  # initial weights
        model = sample_models.build(name)
        _fit(model, sample_models.load_data(name).train, config, epochs)
    finally:
        torch.set_num_threads(threads)
    return flush_subnormals(model).eval()


def flush_subnormals(model: nn.Module) -> nn.Module:
    """Set every subnormal floating-point parameter of `model` to exactly zero, in place; returns `model`."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.masked_fill_(p.abs() < torch.finfo(p.dtype).tiny, 0.0)
    return model


def _fit(model: nn.Module, train: Split, config: TrainConfig, epochs: int) -> None:
    """Minimise label-smoothed cross-entropy with Adam over shuffled minibatches, lr decaying on a cosine."""
    generator = torch.Generator().manual_seed(config.seed)  # batch order
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(config.batch_size):
            logits = model(train.X[batch])  # (b, 10)
            loss = F.cross_entropy(logits, train.y[batch], label_smoothing=config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(CONFIGS), help="retrain only this sample (default: all)")
    args = parser.parse_args(argv)
    sample_models.WEIGHTS_DIR.mkdir(exist_ok=True)
    for name in [args.model] if args.model else list(CONFIGS):
        start = time.perf_counter()
        model = train_model(name)
        torch.save(model.state_dict(), sample_models.weights_path(name))
        test_accuracy = accuracy(model, sample_models.load_data(name).test)
        print(f"{name}: test accuracy {test_accuracy:.2%}, trained in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

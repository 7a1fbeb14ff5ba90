"""Recovery training: fine-tune a compressed model without undoing its compression.

After pruning or quantizing, a few epochs on the training split win most of the lost accuracy back
("prune, then retrain", Han et al. 2015). The training must keep what compression fixed (see `state.py`):

- Pruned weights stay exactly zero. The mask m = (w ≠ 0) is taken at the start and the layer trains
  w = m ⊙ v: zeros are re-imposed on every forward pass and the gradient reaching v is masked,
  ∂L/∂v = m ⊙ ∂L/∂w. A weight that quantization rounded to zero cannot be told from a pruned one
  (both are exact zeros), so it is held at zero too.
- Uniformly quantized layers train through fake quantization (quantization-aware training, Jacob et al.
  2018). An fp32 latent weight v is kept; the forward pass uses the quantized Q(m ⊙ v), the backward
  pass treats Q as the identity, the straight-through estimator (Bengio et al. 2013): ∂L/∂v = m ⊙ ∂L/∂Q.
  Q re-derives the grid (same bits, scheme and granularity) from the current latent weights with the very
  function the Quantize step uses, so the network trains against exactly the grid it is exported with and
  the result equals `quantize(latent model)`: nothing is clipped by a stale range, which is what makes
  the plain identity gradient right.
- k-means (weight-shared) layers keep each weight's cluster c_i and train the shared values
  (Deep Compression, Han et al. 2016): w_i = codebook[c_i], so ∂L/∂codebook[k] = Σ_{i: c_i = k} ∂L/∂w_i,
  the gradients of a cluster summed (autograd of the indexing does exactly that).
- Low-rank pairs are ordinary layers and train as factorized; input quantization hooks stay in place
  (torch's fake-quantize op passes gradients straight through inside its range).

Each rule is a parametrization (`torch.nn.utils.parametrize`): while training, `layer.weight` is computed
from a latent tensor; at the end every layer holds plain weights and a fresh `WeightQuant` again.

Optimizer: Adam without weight decay, as the samples were trained. Its per-parameter step sizes suit
tensors of very different scales (weights, biases, codebooks) with one learning rate, and a parameter
whose gradient is zero (a pruned latent weight) never moves. Minibatches come from a generator seeded
with `seed`: the same model, data and settings give bitwise the same weights.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from compressor.data import Split
from compressor.inference import predictions
from compressor.layers import eligible_layers, select_layers
from compressor.quantization import QuantSetting, quantize_weight
from compressor.recipe import Finetune
from compressor.state import WEIGHT_QUANT, WeightQuant, recipe_of, tag_recipe, weight_quant
from compressor.validation import check_int, check_positive

History = list[dict[str, float]]  # one record per epoch: epoch, loss, train_accuracy[, test_accuracy]
Progress = Callable[[float, History], None]  # (fraction done, history so far), after every epoch
StopCheck = Callable[[], bool]  # True: stop before the next batch and return the model trained so far
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, C), batch indices (B,)) -> loss


# ---------------------------------------------------------------- what stays fixed while training


class HeldZeros(nn.Module):
    """Pruned layer: w = m ⊙ v, so pruned weights are zero in every forward pass and get no gradient."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)  # True = kept

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, latent, 0.0)  # +0.0 where pruned

    def finish(self, latent: torch.Tensor, spec: WeightQuant | None) -> tuple[torch.Tensor, WeightQuant | None]:
        """The trained weight and its quantization record."""
        return self(latent), spec


class FakeQuantized(HeldZeros):
    """Uniform QAT: w = Q(m ⊙ v) forward, ∂L/∂v = m ⊙ ∂L/∂w backward (straight-through estimator)."""

    def __init__(self, mask: torch.Tensor, spec: WeightQuant) -> None:
        super().__init__(mask)
        self.setting = QuantSetting(spec.bits, spec.scheme, spec.granularity, "uniform")

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        masked = super().forward(latent)
        quantized, _ = quantize_weight(masked.detach(), self.setting)
        return masked - masked.detach() + quantized  # value exactly Q(m ⊙ v) (x − x = 0), gradient 1 w.r.t. v

    def finish(self, latent: torch.Tensor, spec: WeightQuant | None) -> tuple[torch.Tensor, WeightQuant]:
        """The latent weights quantized afresh: new scales (and zero points) from the trained values."""
        return quantize_weight(super().forward(latent), self.setting)


class SharedValues(nn.Module):
    """k-means layer: w_i = m_i · codebook[c_i] with the clusters c fixed; the codebook is what trains."""

    def __init__(self, mask: torch.Tensor, codes: torch.Tensor, codebook: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.register_buffer("codes", codes)  # (same shape as the weight) int64 cluster of each weight
        self.initial_codebook = codebook

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The latent tensor of a shared-weight layer is its codebook (2^b,), not a weight-shaped tensor."""
        return self.initial_codebook.detach().clone()

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, codebook[self.codes], 0.0)

    def finish(self, codebook: torch.Tensor, spec: WeightQuant | None) -> tuple[torch.Tensor, WeightQuant]:
        """Weights from the trained codebook; the same codes, so the file stores the same assignments."""
        return self(codebook), replace(spec, codebook=codebook.detach().clone())


def weight_rule(layer: nn.Module) -> nn.Module | None:
    """The parametrization that keeps `layer`'s compression while it trains (None: an ordinary dense layer)."""
    weight = layer.weight.detach()
    mask = weight != 0
    spec = weight_quant(layer)
    if spec is None:
        return None if bool(mask.all()) else HeldZeros(mask)
    if spec.method == "kmeans":
        return SharedValues(mask, spec.codes(weight), spec.codebook.float())
    return FakeQuantized(mask, spec)


def _hold(layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Parametrize every layer that needs a rule; returns {name: rule}."""
    rules = {}
    for name, layer in layers.items():
        rule = weight_rule(layer)
        if rule is not None:
            parametrize.register_parametrization(layer, "weight", rule, unsafe=isinstance(rule, SharedValues))
            rules[name] = rule
    return rules


@torch.no_grad()
def _release(layers: dict[str, nn.Module], rules: dict[str, nn.Module]) -> None:
    """Back to plain weights: the trained values, exactly on their (new) grid, and their WeightQuant."""
    for name, rule in rules.items():
        layer = layers[name]
        latent = layer.parametrizations.weight.original.detach()
        weight, spec = rule.finish(latent, weight_quant(layer))
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        layer.weight.copy_(weight)
        if spec is not None:
            setattr(layer, WEIGHT_QUANT, spec)


# ---------------------------------------------------------------- the optimizer


class Adam:
    """Adam (Kingma & Ba, 2015), the exact update of torch.optim.Adam (no weight decay), for gradient g at step t:

        m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
        θ ← θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)

    Written out because torch.optim imports torch._dynamo on first use: 2 to 4 s once per process, more
    than a whole fine-tune of the samples takes, paid by the dashboard's first click.
    """

    def __init__(self, params: Sequence[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]  # first moment, per parameter
        self.v = [torch.zeros_like(p) for p in self.params]  # second moment
        self.t = [0] * len(self.params)  # steps taken, per parameter (one without a gradient is skipped)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, (p, m, v) in enumerate(zip(self.params, self.m, self.v)):
            if p.grad is None:
                continue
            self.t[i] += 1
            g = p.grad
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denominator = (v.sqrt() / (1 - self.beta2 ** self.t[i]) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denominator, value=-self.lr / (1 - self.beta1 ** self.t[i]))


# ---------------------------------------------------------------- the loop


def accuracy(model: nn.Module, split: Split) -> float:
    """Fraction of `split` classified correctly (argmax of the last dimension)."""
    return (predictions(model, split.X).reshape(-1) == split.y.reshape(-1)).float().mean().item()


def check_labelled(data: Split, name: str = "data") -> Split:
    """`data` if it is a non-empty Split with labels, else a ValueError saying what is missing."""
    if not isinstance(data, Split):
        raise ValueError(f"{name} must be a compressor.data.Split (e.g. data.train), got {type(data).__name__}")
    if data.y is None:
        raise ValueError(f"training needs labels, but {name} has none (Split.y is None)")
    if len(data) == 0:
        raise ValueError(f"{name} has no examples to train on")
    return data


def _trainable_parameters(model: nn.Module, layers: Sequence[str] | None) -> list[nn.Parameter]:
    """All parameters that require grad (layers=None) or those of the named layers only; others are frozen."""
    if layers is None:
        return [p for p in model.parameters() if p.requires_grad]
    chosen = {id(p) for layer in select_layers(model, layers).values() for p in layer.parameters()}
    for p in model.parameters():
        p.requires_grad_(p.requires_grad and id(p) in chosen)
    return [p for p in model.parameters() if p.requires_grad]


def fit(
    model: nn.Module,
    data: Split,
    objective: Objective,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    test: Split | None = None,
    layers: Sequence[str] | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    classifies: bool = True,
) -> tuple[nn.Module, History]:
    """Train a copy of `model` on `data` to minimise `objective`, compression held; the loop behind every trainer.

    Each epoch visits the examples once in an order drawn from a generator seeded with `seed`, in minibatches
    of `batch_size`, with one Adam step per batch. The history's loss and train accuracy are averages over the
    epoch's batches as they were trained (as Keras reports them); test accuracy is measured after the epoch.
    An epoch cut short by `should_stop` is recorded with a fractional epoch number.
    classifies=False (outputs are not class scores, e.g. embeddings): the history has epoch and loss only.
    """
    data = check_labelled(data)
    if test is not None:
        test = check_labelled(test, "test")
    epochs = check_int("epochs", epochs, 1)
    lr = check_positive("lr", lr)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)

    new = copy.deepcopy(model)
    flags = {name: p.requires_grad for name, p in new.named_parameters()}
    held = select_layers(new, layers) if layers is not None else eligible_layers(new)
    held = {name: layer for name, layer in held.items() if layer.weight.requires_grad}
    rules = _hold(held)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    history: History = []
    try:
        optimizer = Adam(_trainable_parameters(new, layers), lr=lr)
        for epoch in range(epochs):
            new.train()
            total_loss, correct, seen, steps = 0.0, 0, 0, 0
            for batch in torch.randperm(len(data), generator=generator).split(batch_size):  # (B,) indices
                if should_stop is not None and should_stop():
                    break
                logits = new(data.X[batch])  # (B, C)
                loss = objective(logits, batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(batch)
                if classifies:
                    correct += int((logits.detach().argmax(dim=-1) == data.y[batch]).sum())
                seen, steps = seen + len(batch), steps + 1
            if steps:
                record = {"epoch": epoch + steps / steps_per_epoch, "loss": total_loss / seen}
                if classifies:
                    record["train_accuracy"] = correct / seen
                if test is not None and classifies:
                    record["test_accuracy"] = accuracy(new.eval(), test)
                history.append(record)
                if progress is not None:
                    progress((epoch + steps / steps_per_epoch) / epochs, history)
            if steps < steps_per_epoch:
                break
    finally:
        _release(held, rules)
        for name, p in new.named_parameters():
            p.requires_grad_(flags[name])
    return new.eval(), history


def cross_entropy(data: Split) -> Objective:
    """The objective L = −(1/B) Σ_b log softmax(z_b)[y_b] on the labels of `data`."""
    labels = data.y.long()

    def objective(logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels[batch])

    return objective


def finetune(
    model: nn.Module,
    data: Split,
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    test: Split | None = None,
    layers: Sequence[str] | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[nn.Module, History]:
    """A copy of `model` trained on labelled `data` by minibatch Adam on the cross-entropy, compression held.

    L = −(1/B) Σ_b log softmax(z_b)[y_b]. Pruned weights stay exactly zero, uniform layers train by QAT and
    are re-quantized from their latent weights at the end, k-means layers train their shared values (see the
    module docstring). The result satisfies `state.py` again, so it exports exactly.
    layers: names/globs of the layers to train (their weights and biases); default: every parameter.
    test: a labelled Split scored after every epoch (history key test_accuracy).
    progress(fraction, history) after every epoch; should_stop() before every batch.
    Returns (model in eval mode, history: one {epoch, loss, train_accuracy[, test_accuracy]} per epoch).
    The model's recipe tag (`state.recipe_of`) gains this finetune step, with the settings asked for.
    """
    objective = cross_entropy(check_labelled(data))
    tuned, history = fit(model, data, objective, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, test=test,
                         layers=layers, progress=progress, should_stop=should_stop)
    step = Finetune(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, layers=layers).to_dict()
    return tag_recipe(tuned, {"steps": [*(recipe_of(model) or {"steps": []})["steps"], step]}), history

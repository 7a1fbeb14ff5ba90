"""Channel pruning: layers really shrink, coupled layers shrink together, kept channels compute what they did."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.data import Split
from compressor.state import WeightQuant
from compressor.structured import channel_prunable_layers, prune_channels


class DigitsCNN(nn.Module):
    """conv-bn-relu-pool twice, then two Linear layers; input (B, 1, 8, 8) like the digits images."""

    def __init__(self, hard_coded_flatten: bool = False) -> None:
        super().__init__()
        self.hard_coded_flatten = hard_coded_flatten
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(16 * 2 * 2, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8)
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)  # (B, 8, 4, 4)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)  # (B, 16, 2, 2)
        x = x.view(-1, 64) if self.hard_coded_flatten else x.flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def digits_cnn(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = DigitsCNN(**kwargs)
    for bn in (model.bn1, model.bn2):  # non-trivial BatchNorm statistics, so a misaligned slice shows
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    return model.eval()


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def kept(amount: float, channels: int) -> int:
    return channels - min(round(amount * channels), channels - 1)


DIGITS = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(4))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("amount", [0.25, 0.5, 0.7, 0.99])
def test_digits_cnn_shapes_shrink_by_the_expected_count(amount):
    model = digits_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_channels(model, amount, DIGITS[:1])
    c1, c2, h = kept(amount, 8), kept(amount, 16), kept(amount, 32)
    assert pruned.conv1.weight.shape == (c1, 1, 3, 3) and pruned.bn1.running_mean.shape == (c1,)
    assert pruned.conv2.weight.shape == (c2, c1, 3, 3) and pruned.bn2.weight.shape == (c2,)
    assert pruned.fc1.weight.shape == (h, c2 * 4) and pruned.fc2.weight.shape == (10, h)  # output layer keeps 10
    assert pruned(DIGITS).shape == (5, 10) and not pruned.training
    assert params(pruned) < params(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched


@pytest.mark.parametrize("norm", [1, 2])
def test_kept_channels_are_the_top_norm_rows_and_compute_the_same(norm):
    model = mlp()
    pruned = prune_channels(model, 0.4, torch.randn(1, 12), norm=norm, layers=["0"])
    original = model[0].weight.detach()
    rows = pruned[0].weight.detach()
    kept_idx = [int((original == row).all(dim=1).nonzero()) for row in rows]  # which original row each one is
    top = torch.topk(torch.linalg.vector_norm(original, ord=norm, dim=1), 12).indices.sort().values
    assert kept_idx == top.tolist()
    x = torch.randn(7, 12)
    assert torch.allclose(pruned[0](x), model[0](x)[:, kept_idx])  # hidden activations at the kept indices
    assert torch.equal(pruned[2].weight, model[2].weight[:, kept_idx])  # the next layer reads only those
    assert torch.equal(pruned[4].weight, model[4].weight)


def test_residual_cnn_coupled_layers_shrink_together(residual_cnn, cnn_input):
    before = {k: v.clone() for k, v in residual_cnn.state_dict().items()}
    pruned = prune_channels(residual_cnn, 0.5, cnn_input[:1])
    assert all(torch.equal(before[k], v) for k, v in residual_cnn.state_dict().items())
    trunk = [pruned.stem[0].out_channels, pruned.block.conv2.out_channels, pruned.depthwise.out_channels]
    assert trunk == [8, 8, 8] and pruned.stem[1].num_features == pruned.block.bn2.num_features == 8
    assert pruned.block.conv1.weight.shape == (8, 8, 3, 3) and pruned.block.bn1.num_features == 8
    assert pruned.depthwise.groups == 8 and pruned.pointwise.weight.shape == (16, 8, 1, 1)
    assert pruned.grouped.weight.shape == (16, 4, 3, 3) and pruned.grouped.groups == 4  # half of each block
    assert pruned.head.weight.shape == (5, 16)
    assert pruned(cnn_input).shape == (4, 5) and params(pruned) < params(residual_cnn) / 2


def test_residual_cnn_partial_selection(residual_cnn, cnn_input):
    with pytest.raises(ValueError, match="'stem.0' can't lose output channels: it shares its channels with"):
        prune_channels(residual_cnn, 0.5, cnn_input[:1], layers=["stem.0"])
    trunk = prune_channels(residual_cnn, 0.25, cnn_input[:1], layers=["stem.0", "block.conv2", "depthwise"])
    assert trunk.stem[0].out_channels == trunk.depthwise.out_channels == 12
    assert trunk.block.conv1.out_channels == 16 and trunk.pointwise.out_channels == 32
    assert trunk(cnn_input).shape == (4, 5)


def test_output_layer_is_never_pruned(residual_cnn, cnn_input):
    assert "head" not in channel_prunable_layers(residual_cnn, cnn_input[:1])
    with pytest.raises(ValueError, match="'head' can't lose output channels: its outputs are the model's outputs"):
        prune_channels(residual_cnn, 0.5, cnn_input[:1], layers=["head"])


def test_tiny_transformer_mlp_width_shrinks_and_attention_is_left_alone(tiny_transformer, seq_input):
    assert channel_prunable_layers(tiny_transformer, seq_input[:1]) == ["layers.0.mlp.0", "layers.1.mlp.0"]
    for layers in (["*.mlp.0"], None):
        pruned = prune_channels(tiny_transformer, 0.5, seq_input[:1], layers=layers)
        for i in (0, 1):
            mlp = pruned.layers[i].mlp
            assert mlp[0].weight.shape == (32, 32) and mlp[2].weight.shape == (32, 32)  # hidden 64 -> 32
        unchanged = {k: v for k, v in tiny_transformer.state_dict().items() if ".mlp." not in k}
        assert all(torch.equal(pruned.state_dict()[k], v) for k, v in unchanged.items())  # attn, embed, norms, head
        assert pruned(seq_input).shape == (4, 3)
    with pytest.raises(ValueError, match="attention"):
        prune_channels(tiny_transformer, 0.5, seq_input[:1], layers=["layers.0.attn.qkv"])


def test_global_scope_ranks_across_layers_and_honours_overrides():
    model = mlp()
    with torch.no_grad():
        model[2].weight[:8] *= 0.5  # half of layer "2" is weak compared with the rest of its layer
    pruned = prune_channels(model, 0.5, torch.randn(1, 12), scope="global")
    norms = [torch.linalg.vector_norm(model[i].weight.detach(), dim=1) for i in (0, 2)]  # (20,), (16,)
    lowest = torch.topk(torch.cat([n / n.mean() for n in norms]), round(0.5 * 36), largest=False).indices
    expected = (20 - int((lowest < 20).sum()), 16 - int((lowest >= 20).sum()))
    assert (pruned[0].out_features, pruned[2].out_features) == expected and expected[1] <= 8  # uneven split
    mixed = prune_channels(model, 0.5, torch.randn(1, 12), scope="global", overrides={"2": {"amount": 0.25}})
    assert mixed[2].out_features == 12 and mixed[0].out_features == 10


def test_taylor_and_random_criteria():
    model, x = digits_cnn(), DIGITS[:1]
    data = Split(DIGITS, None)
    taylor = prune_channels(model, 0.5, x, criterion="taylor", data=data, layers=["fc1"])
    magnitude = prune_channels(model, 0.5, x, layers=["fc1"])
    assert taylor.fc1.out_features == 16 and not torch.equal(taylor.fc1.weight, magnitude.fc1.weight)
    a, b, c = (prune_channels(model, 0.5, x, criterion="random", seed=s, layers=["fc1"]) for s in (1, 1, 2))
    assert torch.equal(a.fc1.weight, b.fc1.weight) and not torch.equal(a.fc1.weight, c.fc1.weight)
    with pytest.raises(ValueError, match="criterion='taylor' needs data"):
        prune_channels(model, 0.5, x, criterion="taylor")


def test_activation_criterion_keeps_the_channels_that_feed_forward_most():
    """Structured, the activation criterion ranks hidden unit c by ‖h_c‖ · ‖W_next[:, c]‖ (its readers' columns)."""
    model, X = mlp(), torch.randn(40, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model[2].weight[:, :5] *= 10  # five units whose rows are ordinary but whose readers weigh them heavily
    pruned = prune_channels(model, 0.5, X[:1], criterion="activation", data=Split(X), layers=["0"])
    hidden = torch.relu(model[0](X)).detach()  # (40, 20) what layer "2" reads
    score = hidden.norm(dim=0) * model[2].weight.detach().norm(dim=0)  # (20,)
    top = torch.topk(score, 10).indices.sort().values
    assert torch.equal(pruned[2].weight, model[2].weight[:, top])
    assert set(range(5)) <= set(top.tolist())
    with pytest.raises(ValueError, match="criterion='activation' needs data"):
        prune_channels(model, 0.5, X[:1], criterion="activation")


def test_activation_criterion_on_convolutions_reads_channel_norms():
    model, x = digits_cnn(), DIGITS
    pruned = prune_channels(model, 0.5, x[:1], criterion="activation", data=Split(x), layers=["conv1"])
    seen = torch.relu(model.bn1(model.conv1(x)))
    seen = torch.max_pool2d(seen, 2).detach()  # (5, 8, 4, 4) what conv2 reads
    score = seen.transpose(0, 1).flatten(1).norm(dim=1) * model.conv2.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)
    top = torch.topk(score, 4).indices.sort().values
    assert torch.equal(pruned.conv2.weight, model.conv2.weight[:, top])


def test_per_channel_quantization_scales_follow_the_kept_rows():
    model = mlp()
    scale = torch.arange(1, 21).float() * 0.01
    zero_point = torch.full((20,), 8.0)
    model[0].weight_quant = WeightQuant(4, "uniform", "affine", "channel", scale=scale, zero_point=zero_point)
    pruned = prune_channels(model, 0.5, torch.randn(1, 12), layers=["0"])
    kept_idx = [int((model[0].weight == row).all(dim=1).nonzero()) for row in pruned[0].weight]
    assert torch.equal(pruned[0].weight_quant.scale, scale[kept_idx])
    assert pruned[0].weight_quant.zero_point.shape == (10,)


def test_frozen_model_stays_frozen():
    model = mlp().requires_grad_(False)
    pruned = prune_channels(model, 0.5, torch.randn(1, 12))
    assert not any(p.requires_grad for p in pruned.parameters()) and pruned[0].out_features == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"amount": 1.5}, "amount=1.5 is out of range; allowed: 0 to 0.99"),
        ({"amount": 0.5, "norm": 3}, "norm=3"),
        ({"amount": 0.5, "criterion": "l1"}, "criterion='l1'"),
        ({"amount": 0.5, "scope": "local"}, "scope='local'"),
        ({"amount": 0.5, "layers": ["conv9"]}, "'conv9' matches no eligible layer"),
        ({"amount": 0.5, "overrides": {"conv1": {"norm": 1}}}, "unknown key"),
        ({"amount": 0.5, "overrides": {"conv1": {"amount": 1.0}}}, "amount for layer 'conv1'=1.0"),
        ({"amount": 0.5, "example_input": [[1.0]]}, "example_input must be a tensor"),
        ({"amount": 0.5, "example_input": torch.randn(1, 3, 8, 8)}, "does not run through the model"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    kwargs = {"example_input": DIGITS[:1], **kwargs}
    with pytest.raises(ValueError) as error:
        prune_channels(digits_cnn(), **kwargs)
    assert message in str(error.value)


def test_forward_with_hard_coded_channel_count_raises_clearly():
    with pytest.raises(ValueError, match="hard-codes a channel count"):
        prune_channels(digits_cnn(hard_coded_flatten=True), 0.5, DIGITS[:1])
    pruned = prune_channels(digits_cnn(hard_coded_flatten=True), 0.5, DIGITS[:1], layers=["conv1", "fc1"])
    assert pruned(DIGITS).shape == (5, 10)  # leaving conv2 (whose width the forward hard-codes) alone works

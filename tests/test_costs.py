"""Per-layer costs: MACs checked against hand-computed counts, sums against the model's own parameter count."""
from __future__ import annotations

from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

from compressor.costs import LayerCost, costs_frame, layer_costs, totals
from compressor.low_rank import low_rank
from compressor.state import WeightQuant


def by_name(costs: list[LayerCost]) -> dict[str, LayerCost]:
    return {c.name: c for c in costs}


class ConvNet(nn.Module):
    """conv (stride 2, padding 1) -> grouped conv -> flatten -> linear; input (B, 3, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # (B, 4, 4, 4)
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False)  # (B, 8, 4, 4)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(128, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.grouped(self.conv(x)))
        return self.fc(x.flatten(1))


def test_hand_computed_macs_for_linear_conv_and_grouped_conv() -> None:
    costs = by_name(layer_costs(ConvNet().eval(), torch.randn(1, 3, 8, 8)))
    # conv: 4·4·4 = 64 outputs, each 3·3·3 = 27 multiplies; params 4·27 + 4
    assert costs["conv"] == LayerCost("conv", "Conv2d", (4, 3, 3, 3), 112, 112, 32, None, 1728, 1728)
    # grouped: 8·4·4 = 128 outputs, each (4 / 2)·3·3 = 18 multiplies
    assert (costs["grouped"].macs, costs["grouped"].params, costs["grouped"].shape) == (2304, 144, (8, 2, 3, 3))
    assert (costs["fc"].macs, costs["fc"].params) == (128 * 5, 128 * 5 + 5)
    assert (costs["bn"].type, costs["bn"].params, costs["bn"].macs, costs["bn"].shape) == ("BatchNorm2d", 16, 0, (8,))
    assert [c.name for c in by_name(layer_costs(ConvNet(), torch.randn(1, 3, 8, 8))).values()] == [
        "conv", "grouped", "bn", "fc"]


def test_macs_are_per_example_whatever_the_batch() -> None:
    model = ConvNet().eval()
    one = layer_costs(model, torch.randn(1, 3, 8, 8))
    assert layer_costs(model, torch.randn(7, 3, 8, 8)) == one


def test_example_input_needs_a_batch() -> None:
    with pytest.raises(ValueError, match="batch dimension"):
        layer_costs(ConvNet(), torch.randn(0, 3, 8, 8))


def test_conv1d_counts_output_positions() -> None:
    model = nn.Sequential(nn.Conv1d(2, 6, 5, stride=2, padding=2)).eval()  # length 10 -> 5
    (cost,) = layer_costs(model, torch.randn(3, 2, 10))
    assert cost.macs == 6 * 5 * 2 * 5


def test_factorized_linear_is_two_layers_with_rank() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(20, 30), act=nn.ReLU(), fc2=nn.Linear(30, 4))).eval()
    costs = by_name(layer_costs(low_rank(model, rank=3, layers=["fc1"]), torch.randn(2, 20)))
    assert list(costs) == ["fc1.0", "fc1.1", "fc2"]
    assert (costs["fc1.0"].rank, costs["fc1.0"].macs, costs["fc1.0"].params, costs["fc1.0"].shape) == (3, 60, 60, (3, 20))
    assert (costs["fc1.1"].rank, costs["fc1.1"].macs, costs["fc1.1"].params) == (3, 90, 90 + 30)
    assert costs["fc2"].rank is None
    assert totals(costs.values())["macs"] == 20 * 3 + 3 * 30 + 30 * 4


def test_sparsity_halves_effective_macs() -> None:
    torch.manual_seed(0)
    model = ConvNet().eval()
    dense = by_name(layer_costs(model, torch.randn(1, 3, 8, 8)))
    with torch.no_grad():
        model.fc.weight[:, ::2] = 0  # exactly half of the 128 inputs
        model.conv.weight[:2] = 0  # half of the 4 filters
    sparse = by_name(layer_costs(model, torch.randn(1, 3, 8, 8)))
    for name in ("fc", "conv"):
        assert sparse[name].macs == dense[name].macs
        assert sparse[name].effective_macs == dense[name].macs // 2
    assert sparse["fc"].nonzero == 5 * 64 + 5
    assert sparse["grouped"].effective_macs == sparse["grouped"].macs


def test_bits_come_from_weight_quant() -> None:
    model = ConvNet().eval()
    model.fc.weight_quant = WeightQuant(bits=3, method="kmeans", scheme="kmeans", granularity="tensor",
                                        codebook=torch.zeros(8))
    costs = by_name(layer_costs(model, torch.randn(1, 3, 8, 8)))
    assert costs["fc"].bits == 3 and costs["conv"].bits == 32 and costs["bn"].bits == 32


def test_tiny_transformer_counts_every_token(tiny_transformer: nn.Module) -> None:
    T = 6
    costs = by_name(layer_costs(tiny_transformer, torch.randn(2, T, 8)))
    assert costs["embed"].macs == T * 8 * 32
    assert costs["layers.0.attn.qkv"].macs == T * 32 * 96
    assert costs["layers.1.mlp.2"].macs == T * 64 * 32
    assert costs["head"].macs == 32 * 3  # after mean pooling: once per example
    assert costs["layers.0.ln1"].macs == 0 and costs["layers.0.ln1"].params == 64
    assert by_name(layer_costs(tiny_transformer, torch.randn(1, 2 * T, 8)))["embed"].macs == 2 * T * 8 * 32


@pytest.mark.parametrize("fixture, input_fixture", [("residual_cnn", "cnn_input"), ("tiny_transformer", "seq_input")])
def test_rows_add_up_to_the_model(fixture: str, input_fixture: str, request: pytest.FixtureRequest) -> None:
    model, x = request.getfixturevalue(fixture), request.getfixturevalue(input_fixture)
    for variant in (model, low_rank(model, rank_ratio=0.5)):
        costs = layer_costs(variant, x)
        expected = sum(p.numel() for p in variant.parameters())
        assert sum(c.params for c in costs) == expected
        assert totals(costs) == {
            "params": expected,
            "nonzero_params": sum(int(torch.count_nonzero(p)) for p in variant.parameters()),
            "macs": sum(c.macs for c in costs),
            "effective_macs": sum(c.effective_macs for c in costs),
            "dense_bytes": 4 * expected,
        }


def test_every_parameter_counted_once() -> None:
    class Tied(nn.Module):
        """A layer used twice, a weight shared with another layer, and a parameter on the model itself."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(self.a(x))) * self.scale

    costs = by_name(layer_costs(Tied(), torch.randn(1, 4)))
    assert sum(c.params for c in costs.values()) == sum(p.numel() for p in Tied().parameters()) == 24
    assert (costs["a"].macs, costs["b"].macs) == (32, 16)  # a runs twice
    assert (costs["b"].params, costs["b"].shape) == (0, (4, 4))  # its weight is a's, counted there
    assert costs["(model)"].params == 4


def test_model_is_left_as_it_was(residual_cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    model = residual_cnn.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer_costs(model, cnn_input)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BatchNorm stats untouched
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_costs_frame() -> None:
    costs = layer_costs(low_rank(ConvNet().eval(), rank=2, layers=["fc"]), torch.randn(1, 3, 8, 8))
    frame = costs_frame(costs)
    assert list(frame.columns) == ["name", "type", "shape", "params", "nonzero", "bits", "rank", "macs", "effective_macs"]
    assert frame["params"].sum() == totals(costs)["params"]
    assert frame.set_index("name").loc["fc.0", "rank"] == 2 and pd.isna(frame.set_index("name").loc["conv", "rank"])

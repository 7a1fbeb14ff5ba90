"""Small models beyond the samples, to show the techniques work on any model built of standard layers."""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn plus identity, the ResNet basic block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class ResidualCNN(nn.Module):
    """Stem, a residual block, a depthwise-separable pair, a grouped conv and a linear head; input (B, 3, 16, 16)."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = ResidualBlock(16)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.pointwise = nn.Conv2d(16, 32, 1)
        self.bn = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        x = self.block(self.stem(x))  # (B, 16, H, W)
        x = torch.relu(self.bn(self.pointwise(self.depthwise(x))))  # (B, 32, H, W)
        x = torch.relu(self.grouped(x))
        return self.head(x.mean(dim=(2, 3)))  # (B, classes)


class SelfAttention(nn.Module):
    """Multi-head self-attention built from Linear layers."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, d)
        att = torch.softmax(q @ k.transpose(-2, -1) / (D // self.heads) ** 0.5, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, D))


class EncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """Token embedding as a Linear over features, two encoder layers, mean-pooled classifier; input (B, T, 8)."""

    def __init__(self, features: int = 8, dim: int = 32, heads: int = 4, hidden: int = 64, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.layers = nn.Sequential(EncoderLayer(dim, heads, hidden), EncoderLayer(dim, heads, hidden))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F)
        return self.head(self.norm(self.layers(self.embed(x))).mean(dim=1))


def residual_cnn() -> nn.Module:
    """Entry point: a seeded ResidualCNN in eval mode."""
    torch.manual_seed(0)
    return ResidualCNN().eval()


def tiny_transformer() -> nn.Module:
    """Entry point: a seeded TinyTransformer in eval mode."""
    torch.manual_seed(0)
    return TinyTransformer().eval()


def residual_cnn_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Entry point for data: seeded random images with labels from the seeded model itself."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 3, 16, 16, generator=g)
    with torch.no_grad():
        logits = residual_cnn()(X)
        y = (logits - logits.mean(dim=0)).argmax(dim=1)  # centred, so every class occurs
    return X, y

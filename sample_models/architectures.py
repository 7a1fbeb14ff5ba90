"""The two sample architectures: plain standard layers, so every technique (and torch-pruning) can see them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DigitsMLP(nn.Module):
    """64-300-100-10 multilayer perceptron with ReLU: the LeNet-300-100 shape, on 8x8 inputs."""

    def __init__(self, in_features: int = 64, hidden: tuple[int, int] = (300, 100), classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # (B, 64); also accepts (B, 1, 8, 8) images
        x = F.relu(self.fc1(x))  # (B, 300)
        x = F.relu(self.fc2(x))  # (B, 100)
        return self.fc3(x)  # (B, 10) logits


class DigitsCNN(nn.Module):
    """LeNet-5-style CNN for (B, 1, 8, 8) images: two conv + ReLU + 2x2 max-pool stages, then a 3-layer head.

    The forward pass reads no channel counts: it flattens whatever the convolutions produce, so a copy
    whose channels were pruned (conv2 and fc1 shrunk together) still runs.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
        classes: int = 10,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(channels[1] * 2 * 2, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # (B, 1, 8, 8) -> (B, 6, 8, 8) -> (B, 6, 4, 4)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 16, 4, 4) -> (B, 16, 2, 2)
        x = self.flatten(x)  # (B, 64)
        x = F.relu(self.fc1(x))  # (B, 120)
        x = F.relu(self.fc2(x))  # (B, 84)
        return self.fc3(x)  # (B, 10) logits

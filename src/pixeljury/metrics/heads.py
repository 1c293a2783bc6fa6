"""The five-layer MLP reward head shared by the LAION aesthetic predictor and ImageReward.

Both official heads are the same stack of Linear layers with dropout between the first three
(no activations); module indices match the original checkpoints' ``layers.N`` names.
"""

from __future__ import annotations

import torch
from torch import nn


class RewardMLP(nn.Module):
    def __init__(self, input_size: int, widths: tuple[int, ...] = (1024, 128, 64, 16),
                 dropouts: tuple[float, ...] = (0.2, 0.2, 0.1)):
        super().__init__()
        layers: list[nn.Module] = []
        previous = input_size
        for i, width in enumerate(widths):
            layers.append(nn.Linear(previous, width))
            if i < len(dropouts):
                layers.append(nn.Dropout(dropouts[i]))
            previous = width
        layers.append(nn.Linear(previous, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_head(module: RewardMLP, state: dict[str, torch.Tensor], prefix: str = "") -> RewardMLP:
    """Load ``<prefix>layers.N.*`` tensors strictly: a wrong checkpoint fails loudly."""
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix + "layers.")}
    module.load_state_dict(own, strict=True)
    return module.eval()


__all__ = ["RewardMLP", "load_head"]

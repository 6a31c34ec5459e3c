"""netspec's own torch modules (imported by build.py only).

Reshape, Last, Polynomial, Scale, Residual (x + f(x)), Bilinear on one input, and
batch-first RNN/LSTM/GRU that return the output sequence only, so they fit a
Sequential. Each subclasses the torch class it extends: same parameters, same order,
same initialisation for a given seed.
"""

from __future__ import annotations

import torch
from torch import nn


class Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class Last(nn.Module):
    """[N, T, H] -> [N, H]: the final time step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


class Polynomial(nn.Module):
    """x -> [x, x^2, ..., x^degree] along the last dim."""

    def __init__(self, degree: int):
        super().__init__()
        self.degree = degree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x**k for k in range(1, self.degree + 1)], dim=-1)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Residual(nn.Sequential):
    """x + f(x), f being this Sequential's children."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x + super().forward(x)


class Bilinear(nn.Bilinear):
    """torch's Bilinear applied to (x, x): a Sequential passes one input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # einsum instead of F.bilinear: same result, and it exports to ONNX
        y = torch.einsum("bi,oij,bj->bo", x, self.weight, x)
        return y + self.bias if self.bias is not None else y


class RNN(nn.RNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class LSTM(nn.LSTM):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class GRU(nn.GRU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]

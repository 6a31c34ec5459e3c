"""netspec's own torch modules (imported by build.py and export.py).

Reshape, Last, Polynomial, Scale, Residual (x + f(x)), Bilinear on one input, and
batch-first RNN/LSTM/GRU that return the output sequence only, so they fit a
Sequential. Each subclasses the torch class it extends: same parameters, same order,
same initialisation for a given seed.

Padded texts: a model fed right-padded token ids (id 0 = padding) is a
``MaskedSequential``: it derives the padding mask from the ids (``padding_mask``) and hands
it to the children its ``masked`` list names. Those compute as if each text were alone:
attention ignores padded keys, ``Mean``/``Max`` over the steps and ``Last`` skip padded
steps, RNN/LSTM/GRU stop at each text's length (bidirectional ones read each text
backwards from its own last token). Called without a mask, every layer computes as torch's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


def padding_mask(ids: torch.Tensor) -> torch.Tensor:
    """[N, T] right-padded token ids -> bool [N, T], True at a text's tokens. The first step
    always counts (an empty text is one padding token), so no text is all padding."""
    first = torch.arange(ids.shape[1], device=ids.device) == 0
    return (ids != 0) | first


def text_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Tokens per text [N] of a padding mask [N, T]."""
    return mask.sum(dim=1)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of x [N, T, H] reversed within its own length; padded steps stay put."""
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class Last(nn.Module):
    """[N, T, H] -> [N, H]: the final time step (with a padding mask: each text's last token)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return x[:, -1]
        idx = (text_lengths(mask) - 1).view(-1, 1, 1).expand(-1, 1, x.shape[-1])
        return x.gather(1, idx).squeeze(1)


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


class MaskedSequential(nn.Sequential):
    """nn.Sequential over padded texts: called with token ids alone, it derives their padding
    mask; the children named in `masked` get it as a second argument."""

    def __init__(self, modules: OrderedDict[str, nn.Module], masked: tuple[str, ...] | list[str] = ()):
        super().__init__(modules)
        self.masked = tuple(masked)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            mask = padding_mask(x)
        for name, module in self.named_children():
            x = module(x, mask) if name in self.masked else module(x)
        return x

    def extra_repr(self) -> str:
        return f"masked={list(self.masked)}"


class MaskedResidual(MaskedSequential):
    """x + f(x) over padded texts (see MaskedSequential)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + super().forward(x, mask)


class Bilinear(nn.Bilinear):
    """torch's Bilinear applied to (x, x): a Sequential passes one input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # einsum instead of F.bilinear: same result, and it exports to ONNX
        y = torch.einsum("bi,oij,bj->bo", x, self.weight, x)
        return y + self.bias if self.bias is not None else y


class MaskedRNN:
    """What RNN, LSTM and GRU do on padded texts: the forward direction runs over the padded
    batch (a text's steps never see the padding after them, so they are exact), a backward
    one over each text reversed within its length, layer by layer; padded steps output 0.
    No PackedSequence: it cannot be exported to ONNX."""

    def padded(self, x: torch.Tensor, mask: torch.Tensor, forward: torch.Tensor | None) -> torch.Tensor:
        """`forward`: the plain forward pass's output (unidirectional), else None."""
        y = forward if forward is not None else self.bidirectional_forward(x, mask)
        return y.masked_fill(~mask.unsqueeze(-1), 0.0)

    def bidirectional_forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rnn: nn.RNNBase = self  # type: ignore[assignment]
        lengths = text_lengths(mask)
        for layer in range(rnn.num_layers):
            if layer and rnn.dropout and rnn.training:
                x = F.dropout(x, rnn.dropout, True)
            forward = self.one_direction(x, layer, "")
            backward = reverse_within(self.one_direction(reverse_within(x, lengths), layer, "_reverse"), lengths)
            x = torch.cat([forward, backward], dim=-1)
        return x

    def one_direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        """One layer, one direction (its own weights), forward in time from a zero state."""
        rnn: nn.RNNBase = self  # type: ignore[assignment]
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if rnn.bias else [])
        if rnn.proj_size:
            names.append("weight_hr")
        weights = [getattr(rnn, f"{n}_l{layer}{suffix}") for n in names]
        h0 = x.new_zeros(1, x.shape[0], rnn.proj_size or rnn.hidden_size)
        if rnn.mode == "LSTM":
            c0 = x.new_zeros(1, x.shape[0], rnn.hidden_size)
            return torch.lstm(x, (h0, c0), weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
        if rnn.mode == "GRU":
            return torch.gru(x, h0, weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
        run = torch.rnn_tanh if rnn.mode == "RNN_TANH" else torch.rnn_relu
        return run(x, h0, weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]


class RNN(MaskedRNN, nn.RNN):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(x)[0]
        return self.padded(x, mask, None if self.bidirectional else super().forward(x)[0])


class LSTM(MaskedRNN, nn.LSTM):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(x)[0]
        return self.padded(x, mask, None if self.bidirectional else super().forward(x)[0])


class GRU(MaskedRNN, nn.GRU):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(x)[0]
        return self.padded(x, mask, None if self.bidirectional else super().forward(x)[0])


def self_attention(mha: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`mha(x, x, x)` for batch-first x [N, T, E] in eval mode, written with reshapes that
    name no size. torch.onnx's tracer bakes the traced sequence length into
    nn.MultiheadAttention's own reshapes, so its export fails on any other length; ONNX
    export uses this instead (and verifies it against torch's forward). `mask` [N, T]
    (True at tokens): padded keys get no attention, as torch's key_padding_mask does."""
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    if mha.bias_k is not None and mha.bias_v is not None:  # one extra key/value step
        k = torch.cat([k, mha.bias_k.expand_as(k[:, :1])], dim=1)
        v = torch.cat([v, mha.bias_v.expand_as(v[:, :1])], dim=1)
    if mha.add_zero_attn:
        k = torch.cat([k, torch.zeros_like(k[:, :1])], dim=1)
        v = torch.cat([v, torch.zeros_like(v[:, :1])], dim=1)
    q, k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (q, k, v))  # [N, h, T, E/h]
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if mask is not None:
        extra = k.shape[2] - mask.shape[1]  # bias_k / zero_attn steps are never padding
        keys = torch.cat([mask] + [torch.ones_like(mask[:, :1])] * extra, dim=1)
        scores = scores.masked_fill(~keys[:, None, None, :], float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).flatten(2)
    return mha.out_proj(out)


class MultiheadAttention(nn.MultiheadAttention):
    """Self-attention on [N, T, E] (batch-first): query = key = value = x; returns the
    attended sequence only, so it fits a Sequential."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if torch.onnx.is_in_onnx_export():
            return self_attention(self, x, mask)
        padding = None if mask is None else ~mask
        return super().forward(x, x, x, key_padding_mask=padding, need_weights=False)[0]


class TransformerEncoderLayer(nn.TransformerEncoderLayer):
    """torch's encoder layer, batch-first, one input (and the padding mask of padded texts)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, src_key_padding_mask=None if mask is None else ~mask)

    def _sa_block(self, x: torch.Tensor, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
                  is_causal: bool = False) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():  # forward passes no attn_mask; key_padding_mask arrives as 0 / -inf
            keep = None if key_padding_mask is None else \
                ~key_padding_mask if key_padding_mask.dtype == torch.bool else key_padding_mask == 0
            return self.dropout1(self_attention(self.self_attn, x, keep))
        return super()._sa_block(x, attn_mask, key_padding_mask, is_causal)


class PositionalEmbedding(nn.Module):
    """x + a learned [max_len, features] table (its first T rows for T steps), initialised
    N(0, 0.02) as GPT-2's position embedding."""

    def __init__(self, max_len: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, features))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]

    def extra_repr(self) -> str:
        return f"max_len={self.weight.shape[0]}, features={self.weight.shape[1]}"


def _steps_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The padding mask [N, T] broadcast over x [N, T, ...]."""
    for _ in range(x.dim() - 2):
        mask = mask.unsqueeze(-1)
    return mask


class Mean(nn.Module):
    """The mean over `dim`; with a padding mask [N, T] and dim the steps (1), over each
    text's tokens only."""

    def __init__(self, dim: int, keepdim: bool = False):
        super().__init__()
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and self.dim % x.dim() == 1:
            m = _steps_mask(mask, x)
            total = x.masked_fill(~m, 0.0).sum(dim=1, keepdim=self.keepdim)
            return total / m.sum(dim=1, keepdim=self.keepdim).to(x.dtype)
        return x.mean(dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class Max(Mean):
    """The maximum over `dim`; with a padding mask and dim the steps (1), over each text's tokens."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and self.dim % x.dim() == 1:
            x = x.masked_fill(~_steps_mask(mask, x), torch.finfo(x.dtype).min)
        return torch.amax(x, dim=self.dim, keepdim=self.keepdim)


# ---------------------------------------------------------------- branch constructs


class Branches(nn.Module):
    """Every child (a branch, keyed by its name) gets the same input (and, over padded
    texts, the branches named in `masked` the padding mask)."""

    def __init__(self, branches: OrderedDict[str, nn.Module], masked: tuple[str, ...] | list[str] = ()):
        super().__init__()
        for name, module in branches.items():
            self.add_module(name, module)
        self.masked = tuple(masked)

    def outputs(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return [branch(x, mask) if name in self.masked else branch(x) for name, branch in self.named_children()]


class Add(Branches):
    """The sum of the branches' outputs (torch broadcasting)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        outs = self.outputs(x, mask)
        y = outs[0]
        for o in outs[1:]:
            y = y + o  # never in place: a branch may return x itself
        return y


class Multiply(Branches):
    """The product of the branches' outputs (torch broadcasting)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        outs = self.outputs(x, mask)
        y = outs[0]
        for o in outs[1:]:
            y = y * o
        return y


class Concat(Branches):
    """The branches' outputs joined along `dim` (torch numbering: 0 is the batch axis)."""

    def __init__(self, branches: OrderedDict[str, nn.Module], dim: int = 1, masked: tuple[str, ...] | list[str] = ()):
        super().__init__(branches, masked)
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat(self.outputs(x, mask), dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# ---------------------------------------------------------------- ONNX lowerings
# Exact, exportable equivalents of layers torch.onnx cannot export as they are; export.py
# swaps them in (named by the catalogue's `onnx_lowering`, built by `from_layer(layer type,
# constructor kwargs, per-sample input shape)`) and verifies the result against torch.


def _adaptive_windows(n: int, o: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling windows: [floor(i*n/o), ceil((i+1)*n/o))."""
    return [((i * n) // o, -((-(i + 1) * n) // o)) for i in range(o)]


class AdaptivePoolLowered(nn.Module):
    """Adaptive average/max pooling over fixed input sizes, one axis at a time (both are
    separable over rectangular windows): averages as a pooling matrix, maxima as a gather
    of each window (short windows repeat their last index; max is unchanged by that)."""

    @classmethod
    def from_layer(cls, layer: str, kwargs: dict, in_shape: tuple) -> AdaptivePoolLowered:
        spatial = tuple(in_shape[1:])
        out = kwargs["output_size"]
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,) * len(spatial)
        return cls("max" if layer.startswith("AdaptiveMax") else "avg", spatial, out)

    def __init__(self, kind: str, in_sizes: tuple[int, ...], out_sizes: tuple[int | None, ...]):
        super().__init__()
        self.kind = kind
        self.axes: list[int] = []
        for i, (n, o) in enumerate(zip(in_sizes, out_sizes)):
            if o is None or o == n:
                continue
            axis = i + 2  # [N, C, *spatial]
            windows = _adaptive_windows(n, o)
            if kind == "avg":
                m = torch.zeros(o, n)
                for j, (s, e) in enumerate(windows):
                    m[j, s:e] = 1.0 / (e - s)
                self.register_buffer(f"pool{len(self.axes)}", m)
            else:
                width = max(e - s for s, e in windows)
                idx = torch.tensor([[min(s + k, e - 1) for k in range(width)] for s, e in windows])
                self.register_buffer(f"pool{len(self.axes)}", idx)
            self.axes.append(axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x.dim() - 1
        for k, axis in enumerate(self.axes):
            table = getattr(self, f"pool{k}")
            x = x.movedim(axis, last)
            if self.kind == "avg":
                x = torch.matmul(x, table.t())
            else:
                o, width = table.shape
                x = x[..., table.reshape(-1)].reshape(*x.shape[:-1], o, width).amax(dim=-1)
            x = x.movedim(last, axis)
        return x


class ChannelShuffleLowered(nn.Module):
    @classmethod
    def from_layer(cls, layer: str, kwargs: dict, in_shape: tuple) -> ChannelShuffleLowered:
        return cls(kwargs["groups"])

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        rest = x.shape[2:]
        return x.reshape(-1, self.groups, c // self.groups, *rest).transpose(1, 2).reshape(-1, c, *rest)


class CircularPadLowered(nn.Module):
    """CircularPadNd on samples of its spatial dims alone (no channel dim): the same padding
    with a channel dim of 1 added and removed around it. torch.onnx cannot export the
    channel-less form (torch takes it as an unbatched input)."""

    @classmethod
    def from_layer(cls, layer: str, kwargs: dict, in_shape: tuple) -> CircularPadLowered:
        return cls(getattr(nn, layer)(kwargs["padding"]))

    def __init__(self, pad: nn.Module):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pad(x.unsqueeze(1)).squeeze(1)


class ThresholdLowered(nn.Module):
    @classmethod
    def from_layer(cls, layer: str, kwargs: dict, in_shape: tuple) -> ThresholdLowered:
        return cls(kwargs["threshold"], kwargs["value"])

    def __init__(self, threshold: float, value: float):
        super().__init__()
        self.threshold, self.value = threshold, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > self.threshold, x, torch.full_like(x, self.value))


# ---------------------------------------------------------------- targets


class TargetScale(nn.Module):
    """`normalize_target:` the loss sees regression targets as (y - shift) / div (`normalize`),
    and the model's outputs come back to the target's units as out * div + shift (`forward`):
    metrics, predictions and the last node of the exported graph. One shift/div per output
    column (a model that outputs [k]), or one for all outputs."""

    def __init__(self, shift: list, div: list):
        super().__init__()
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))
        self.register_buffer("div", torch.tensor(div, dtype=torch.float32))

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.get_buffer("shift")) / self.get_buffer("div")

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        return out * self.get_buffer("div") + self.get_buffer("shift")


# ---------------------------------------------------------------- inputs


class InputTransform(nn.Module):
    """Raw samples in model units (images in [0, 1], numbers as stored) -> the model's
    input: normalised per channel (images) or per column (tables) with the training
    statistics, then reshaped to the model's input shape. Used on every training and
    evaluation batch, and the first node of every exported ONNX graph."""

    def __init__(self, shift: list | None, div: list | None, axis: int, source_shape: list, input_shape: list,
                 tokens: bool = False):
        super().__init__()
        self.tokens = tokens
        self.source_shape = tuple(source_shape)
        self.input_shape = tuple(input_shape)
        self.normalize = shift is not None and not tokens
        view = [1] * (len(source_shape) + 1)
        if self.normalize:
            view[axis + 1 if axis >= 0 else len(view) + axis] = -1
            self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).reshape(view))
            self.register_buffer("div", torch.tensor(div, dtype=torch.float32).reshape(view))
        self.reshape = None not in self.input_shape and self.input_shape != self.source_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.get_buffer("shift")) / self.get_buffer("div")
        if self.reshape:
            x = x.reshape(-1, *self.input_shape)
        return x

    def extra_repr(self) -> str:
        return f"source={list(self.source_shape)}, input={list(self.input_shape)}, normalize={self.normalize}"

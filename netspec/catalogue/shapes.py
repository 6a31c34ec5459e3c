"""Shape rules: how each layer and branch construct maps per-sample input shapes to its output
shape, and the helpers that infer constructor arguments from the input.

In: a per-sample input shape (a tuple; ``None`` for a dynamic `_` dimension) and the layer's
keyword arguments. Out: the output shape, or inferred arguments; `ShapeError` (with a `help`
where a fix is known) when the input does not fit. Torch `dim` arguments count the batch
axis, as in torch. Imports no torch.
"""

from __future__ import annotations

import math

from netspec.catalogue.types import Shape, ShapeError, fmt_shape


def per_dim(v: object, n: int) -> tuple:
    """A size argument as one value per dimension: `v` itself if it is a list, else `v` n times."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _conv_len(n, k, s, p, d):
    if n is None:
        return None
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    return out


def _pool_len(n, k, s, p, d, ceil):
    if n is None:
        return None
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _check_positive(name: str, dims: Shape, kind: str, k: object) -> Shape:
    if any(d is not None and d <= 0 for d in dims):
        raise ShapeError(
            f"{name} would produce {kind} {fmt_shape(dims)} (kernel {k}); the input is too small",
            "use a smaller kernel or stride, add padding, or remove a downsampling layer",
        )
    return dims


def same(s: Shape, a: dict) -> Shape:
    return s


def conv(nd: int, transposed: bool = False):
    def rule(s: Shape, a: dict) -> Shape:
        c, spatial = s[0], s[1:]
        groups = a.get("groups", 1)
        if c is not None and c % groups:
            raise ShapeError(f"in_channels {c} is not divisible by groups={groups}")
        if a["out_channels"] % groups:
            raise ShapeError(f"out_channels {a['out_channels']} is not divisible by groups={groups}")
        k = per_dim(a["kernel_size"], nd)
        st = per_dim(a.get("stride", 1), nd)
        d = per_dim(a.get("dilation", 1), nd)
        pad = a.get("padding", 0)
        if isinstance(pad, str):
            if pad == "same":
                if any(x != 1 for x in st):
                    raise ShapeError("padding=\"same\" needs stride 1")
                return (a["out_channels"], *spatial)
            p = (0,) * nd
        else:
            p = per_dim(pad, nd)
        for tup, what in ((k, "kernel_size"), (st, "stride"), (d, "dilation"), (p, "padding")):
            if len(tup) != nd:
                raise ShapeError(f"{what} needs {nd} values, got {len(tup)}")
        if transposed:
            op = per_dim(a.get("output_padding", 0), nd)
            out = tuple(
                None if n is None else (n - 1) * st[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1
                for i, n in enumerate(spatial)
            )
        else:
            out = tuple(_conv_len(n, k[i], st[i], p[i], d[i]) for i, n in enumerate(spatial))
        return (a["out_channels"], *_check_positive("this convolution", out, "spatial size", k))

    return rule


def pool(nd: int, kind: str):
    def rule(s: Shape, a: dict) -> Shape:
        k = per_dim(a["kernel_size"], nd)
        st = per_dim(a.get("stride") if a.get("stride") is not None else a["kernel_size"], nd)
        p = per_dim(a.get("padding", 0), nd)
        d = per_dim(a.get("dilation", 1), nd) if kind == "max" else (1,) * nd
        if any(pi * 2 > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"padding {a.get('padding')} must be at most half of kernel_size {a['kernel_size']}")
        ceil = bool(a.get("ceil_mode", False))
        out = tuple(_pool_len(n, k[i], st[i], p[i], d[i], ceil) for i, n in enumerate(s[1:]))
        return (s[0], *_check_positive("this pooling", out, "spatial size", k))

    return rule


def adaptive(nd: int):
    def rule(s: Shape, a: dict) -> Shape:
        o = per_dim(a["output_size"], nd)
        if len(o) != nd:
            raise ShapeError(f"output_size needs {nd} values, got {len(o)}")
        return (s[0], *(n if oi is None else oi for n, oi in zip(s[1:], o)))

    return rule


def padding(nd: int, reflect: bool = False, least: int | None = None):
    """Torch's padding layers pad the last `nd` dims (the last with the first pair of values).
    `least`: the fewest sample dims taken (constant padding: nd, any rank above; the others
    take [C, spatial...] or the spatial dims alone, the rows' `ranks`)."""
    def rule(s: Shape, a: dict) -> Shape:
        if least is not None and len(s) < least:
            raise ShapeError(f"this padding pads the last {nd} dimension{'s' if nd > 1 else ''}, but the samples are {fmt_shape(s)}",
                             "a sample needs that many dimensions (torch would pad the batch axis)")
        pad = per_dim(a["padding"], 2 * nd)
        if len(pad) != 2 * nd:
            raise ShapeError(f"padding needs 1 or {2 * nd} values, got {len(pad)}")
        spatial = list(s[len(s) - nd:])
        out = []
        for i, n in enumerate(spatial):
            # torch pads the last dimension with the first pair
            lo, hi = pad[2 * (len(spatial) - 1 - i)], pad[2 * (len(spatial) - 1 - i) + 1]
            if reflect and n is not None and (lo >= n or hi >= n):
                raise ShapeError(f"reflection padding {max(lo, hi)} must be smaller than the input size {n}")
            out.append(None if n is None else n + lo + hi)
        return (*s[:len(s) - nd], *_check_positive("this padding", tuple(out), "size", pad))

    return rule


def channels(s: Shape, a: dict) -> dict:
    if s[0] is None:
        raise ShapeError("the channel dimension must be fixed, not `_`")
    return {"__c": s[0]}


def linear_rule(s: Shape, a: dict) -> Shape:
    return (*s[:-1], a["out_features"])


def bilinear_rule(s: Shape, a: dict) -> Shape:
    return (*s[:-1], a["out_features"])


def _norm_dim(dim: int, rank: int) -> int:
    """A torch dim (counting the batch axis) -> index into the per-sample shape."""
    full = rank + 1
    if not -full <= dim < full:
        raise ShapeError(f"dim {dim} is out of range for a batch of shape [N, ...] with {rank} sample dims")
    d = dim % full
    if d == 0:
        raise ShapeError(f"dim {dim} is the batch axis", "dims count the batch axis as 0; use dim=1 or dim=-1")
    return d - 1


def softmax_rule(s: Shape, a: dict) -> Shape:
    _norm_dim(a.get("dim", -1), len(s))
    return s


def glu_rule(s: Shape, a: dict) -> Shape:
    i = _norm_dim(a.get("dim", -1), len(s))
    if s[i] is not None and s[i] % 2:
        raise ShapeError(f"GLU halves dimension {a.get('dim', -1)}, which has odd size {s[i]}")
    return tuple(None if (j == i and n is None) else (n // 2 if j == i else n) for j, n in enumerate(s))


def flatten_rule(s: Shape, a: dict) -> Shape:
    r = len(s)
    lo = _norm_dim(a.get("start_dim", 1), r)
    hi = _norm_dim(a.get("end_dim", -1), r)
    if lo > hi:
        raise ShapeError("start_dim comes after end_dim")
    mid = s[lo : hi + 1]
    n = None if any(d is None for d in mid) else math.prod(mid)
    return (*s[:lo], n, *s[hi + 1 :])


def unflatten_rule(s: Shape, a: dict) -> Shape:
    i = _norm_dim(a["dim"], len(s))
    sizes = tuple(a["unflattened_size"])
    return (*s[:i], *_resolve_reshape(s[i], sizes), *s[i + 1 :])


def _resolve_reshape(total: int | None, target: tuple) -> tuple:
    unknown = [i for i, d in enumerate(target) if d == -1]
    if len(unknown) > 1:
        raise ShapeError("at most one dimension may be -1")
    known = math.prod(d for d in target if d != -1)
    if total is None:
        return tuple(None if d == -1 else d for d in target)
    if unknown:
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape {total} elements into {fmt_shape(target)}")
        return tuple(total // known if d == -1 else d for d in target)
    if known != total:
        raise ShapeError(f"cannot reshape {total} elements into {fmt_shape(target)} ({known} elements)")
    return target


def reshape_rule(s: Shape, a: dict) -> Shape:
    total = None if any(d is None for d in s) else math.prod(s)
    return _resolve_reshape(total, tuple(a["shape"]))


def last_rule(s: Shape, a: dict) -> Shape:
    return s[1:]


def poly_rule(s: Shape, a: dict) -> Shape:
    if a["degree"] < 1:
        raise ShapeError("degree must be at least 1")
    return (*s[:-1], None if s[-1] is None else s[-1] * a["degree"])


def rnn_rule(s: Shape, a: dict) -> Shape:
    h = a.get("proj_size") or a["hidden_size"]
    return (s[0], h * (2 if a.get("bidirectional") else 1))


def embedding_rule(s: Shape, a: dict) -> Shape:
    return (*s, a["embedding_dim"])


def upsample_rule(s: Shape, a: dict) -> Shape:
    nd = len(s) - 1
    size, scale = a.get("size"), a.get("scale_factor")
    if (size is None) == (scale is None):
        raise ShapeError("Upsample needs exactly one of size= or scale_factor=")
    if size is not None:
        return (s[0], *per_dim(size, nd))
    sc = per_dim(scale, nd)
    return (s[0], *(None if n is None else int(math.floor(n * f)) for n, f in zip(s[1:], sc)))


def pixel_shuffle_rule(s: Shape, a: dict) -> Shape:
    r = a["upscale_factor"]
    c, h, w = s
    if c is not None and c % (r * r):
        raise ShapeError(f"channels {c} are not divisible by upscale_factor² = {r * r}")
    return (None if c is None else c // (r * r), None if h is None else h * r, None if w is None else w * r)


def pixel_unshuffle_rule(s: Shape, a: dict) -> Shape:
    r = a["downscale_factor"]
    c, h, w = s
    for n in (h, w):
        if n is not None and n % r:
            raise ShapeError(f"height and width must be divisible by downscale_factor {r}")
    return (None if c is None else c * r * r, None if h is None else h // r, None if w is None else w // r)


def unfold_rule(s: Shape, a: dict) -> Shape:
    k = per_dim(a["kernel_size"], 2)
    d = per_dim(a.get("dilation", 1), 2)
    p = per_dim(a.get("padding", 0), 2)
    st = per_dim(a.get("stride", 1), 2)
    c, h, w = s
    blocks = [_conv_len(n, k[i], st[i], p[i], d[i]) for i, n in enumerate((h, w))]
    _check_positive("Unfold", tuple(blocks), "block grid", k)
    total = None if None in blocks else blocks[0] * blocks[1]
    return (None if c is None else c * k[0] * k[1], total)


def fold_rule(s: Shape, a: dict) -> Shape:
    k = per_dim(a["kernel_size"], 2)
    o = per_dim(a["output_size"], 2)
    d = per_dim(a.get("dilation", 1), 2)
    p = per_dim(a.get("padding", 0), 2)
    st = per_dim(a.get("stride", 1), 2)
    ck, length = s
    if ck is not None and ck % (k[0] * k[1]):
        raise ShapeError(f"Fold needs the first dimension divisible by kernel area {k[0] * k[1]}, got {ck}")
    blocks = [_conv_len(o[i], k[i], st[i], p[i], d[i]) for i in range(2)]
    if length is not None and length != blocks[0] * blocks[1]:
        raise ShapeError(
            f"Fold with output_size {fmt_shape(o)} needs {blocks[0] * blocks[1]} blocks, got {length}"
        )
    return (None if ck is None else ck // (k[0] * k[1]), *o)


def groupnorm_rule(s: Shape, a: dict) -> Shape:
    if a["num_channels"] % a["num_groups"]:
        raise ShapeError(f"{a['num_channels']} channels are not divisible by num_groups={a['num_groups']}")
    return s


def layernorm_infer(s: Shape, a: dict) -> dict:
    given = a.get("normalized_shape")
    if given is not None:
        given = per_dim(given, 1)
        if tuple(s[len(s) - len(given) :]) != tuple(given):
            raise ShapeError(f"normalized_shape {fmt_shape(given)} does not match the trailing dims of {fmt_shape(s)}")
        return {"normalized_shape": given}
    if s[-1] is None:
        raise ShapeError("normalized_shape is inferred from the last dimension, which must be fixed")
    return {"normalized_shape": (s[-1],)}


def prelu_rule(s: Shape, a: dict) -> Shape:
    n = a.get("num_parameters", 1)
    if n != 1 and n != s[0]:
        raise ShapeError(f"PReLU num_parameters must be 1 or the channel count {s[0]}, got {n}")
    return s


def softmax2d_rule(s: Shape, a: dict) -> Shape:
    return s


def channel_shuffle_rule(s: Shape, a: dict) -> Shape:
    if s[0] is not None and s[0] % a["groups"]:
        raise ShapeError(f"channels {s[0]} are not divisible by groups={a['groups']}")
    return s


# ------------------------------------------------------------------ attention and sequence layers


def attention_infer(s: Shape, a: dict) -> dict:
    e = s[-1]
    if e is None:
        raise ShapeError("the feature size (last dimension) must be fixed, not `_`")
    heads = a.get("num_heads") or a.get("nhead")
    if heads and e % heads:
        raise ShapeError(f"the feature size {e} is not divisible by the number of heads {heads}",
                         f"use a head count that divides {e}, or project to a multiple of {heads} with Linear first")
    return {"embed_dim" if "num_heads" in a else "d_model": e}


def positional_rule(s: Shape, a: dict) -> Shape:
    if s[0] is not None and s[0] > a["max_len"]:
        raise ShapeError(f"the sequence has {s[0]} steps but max_len is {a['max_len']}",
                         f"raise max_len to at least {s[0]}")
    return s


def reduce_rule(s: Shape, a: dict) -> Shape:
    i = _norm_dim(a["dim"], len(s))
    if a.get("keepdim"):
        return tuple(1 if j == i else n for j, n in enumerate(s))
    if len(s) == 1:
        raise ShapeError("reducing the only sample dimension would leave a scalar per sample",
                         "use keepdim=true to keep it as [1]")
    return tuple(n for j, n in enumerate(s) if j != i)


# ------------------------------------------------------------------ branch constructs


def broadcast_rule(shapes: list, a: dict) -> Shape:
    """torch broadcasting of per-sample shapes of equal rank (a rank difference would
    broadcast across the batch axis, which is never meant)."""
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ShapeError("the branches' outputs have different numbers of dimensions",
                         "make every branch produce the same rank; size-1 dims broadcast")
    out = []
    for dims in zip(*shapes):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("the branches' outputs do not broadcast",
                             "each dimension must be equal across branches, or 1")
        out.append(known.pop() if known else None if None in dims else 1)
    return tuple(out)


def concat_rule(shapes: list, a: dict) -> Shape:
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ShapeError("the branches' outputs have different numbers of dimensions")
    rank = ranks.pop()
    i = _norm_dim(a.get("dim", 1), rank)
    out = []
    for j, dims in enumerate(zip(*shapes)):
        if j == i:
            out.append(None if None in dims else sum(dims))
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise ShapeError(f"concat(dim={a.get('dim', 1)}) needs the other dimensions equal",
                             "sizes may differ only along the concatenated dim")
        out.append(known.pop() if known else None)
    return tuple(out)


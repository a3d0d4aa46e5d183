"""A batched, functional forward pass of K same-architecture MLPs.

Parameters and buffers are stacked with a leading model dimension K, under the MLP's own names
(``hidden.0.linear.weight`` of shape (K, W, d), …), so each model's ``state_dict`` is a slice.
Each hidden block is one batched matmul (``baddbmm``) over the K models; BatchNorm keeps
per-model batch and running statistics; dropout draws an independent mask per model from that
model's own generator, exactly as :class:`~sparseflow.models.SeededDropout` does in a separate
run, so the two agree to float rounding.

torch.func (vmap over ``functional_call``) was the other candidate; it cannot update BatchNorm
running statistics in place under vmap nor draw from per-model ``torch.Generator`` objects, both
of which the separate runs do, so batched matmuls it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparseflow.models import MLP, SReLU
from sparseflow.models.dropout import SeededDropout

Params = dict[str, Tensor]


@dataclass(frozen=True)
class BlockSpec:
    """One hidden block: its parameter prefix and which optional parts it has."""

    prefix: str  # "hidden.i"
    bias: bool
    norm: bool
    norm_eps: float
    norm_momentum: float
    act: str  # "prelu", "srelu", or "plain" (a parameter-free elementwise module)
    plain_act: nn.Module | None
    dropout: float
    residual: bool


@dataclass(frozen=True)
class MLPSpec:
    """The architecture shared by the K models."""

    blocks: tuple[BlockSpec, ...]
    out_bias: bool


def mlp_spec(model: MLP) -> MLPSpec:
    """Read the architecture of one (any) member of the group."""
    blocks = []
    for i, block in enumerate(model.hidden):
        norm = isinstance(block.norm, nn.BatchNorm1d)
        act = ("prelu" if isinstance(block.act, nn.PReLU) else
               "srelu" if isinstance(block.act, SReLU) else "plain")
        drop = block.drop.p if isinstance(block.drop, SeededDropout) else 0.0
        blocks.append(BlockSpec(
            prefix=f"hidden.{i}", bias=block.linear.bias is not None, norm=norm,
            norm_eps=block.norm.eps if norm else 0.0,
            norm_momentum=block.norm.momentum if norm else 0.0,
            act=act, plain_act=block.act if act == "plain" else None, dropout=drop,
            residual=bool(block.residual)))
    return MLPSpec(tuple(blocks), model.out.bias is not None)


def stack_state(models: list[nn.Module]) -> tuple[Params, Params]:
    """(parameters, buffers) of the K models stacked along a new dim 0, by name."""
    states = [m.state_dict() for m in models]
    param_names = [n for n, _ in models[0].named_parameters()]
    params = {n: torch.stack([s[n] for s in states]).detach().clone() for n in param_names}
    buffers = {n: torch.stack([s[n] for s in states]).clone()
               for n in states[0] if n not in params}
    return params, buffers


def unstack_state(params: Params, buffers: Params, k: int) -> dict[str, Tensor]:
    """The ``state_dict`` of model ``k`` (loadable into the family's own module)."""
    return {n: t[k].detach().clone() for n, t in {**params, **buffers}.items()}


def _linear(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    # h (K, B, in), w (K, out, in), b (K, out) → (K, B, out)
    if b is None:
        return torch.bmm(h, w.transpose(1, 2))
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _batchnorm(x: Tensor, p: Params, buf: Params, prefix: str, spec: BlockSpec,
               training: bool, active: Tensor) -> Tensor:
    """BatchNorm1d per model: x (K, B, F); running stats updated only for active models."""
    w, b = p[f"{prefix}.norm.weight"], p[f"{prefix}.norm.bias"]
    rm, rv = buf[f"{prefix}.norm.running_mean"], buf[f"{prefix}.norm.running_var"]
    if training:
        var, mean = torch.var_mean(x, dim=1, correction=0)  # (K, F) each
        with torch.no_grad():
            n = x.shape[1]
            m = spec.norm_momentum
            keep = active.view(-1, 1)
            new_rm = (1 - m) * rm + m * mean
            new_rv = (1 - m) * rv + m * var * (n / max(n - 1, 1))  # unbiased, as torch
            rm.copy_(torch.where(keep, new_rm, rm))
            rv.copy_(torch.where(keep, new_rv, rv))
            nbt = buf[f"{prefix}.norm.num_batches_tracked"]
            nbt.add_(active.to(nbt.dtype))
    else:
        mean, var = rm, rv
    y = (x - mean.unsqueeze(1)) * torch.rsqrt(var.unsqueeze(1) + spec.norm_eps)
    return y * w.unsqueeze(1) + b.unsqueeze(1)


def _activation(x: Tensor, p: Params, spec: BlockSpec) -> Tensor:
    pre = f"{spec.prefix}.act"
    if spec.act == "prelu":
        a = p[f"{pre}.weight"].unsqueeze(1)  # (K, 1, F)
        return torch.where(x >= 0, x, a * x)
    if spec.act == "srelu":
        t_l, a_l, t_r, a_r = (p[f"{pre}.{n}"].unsqueeze(1) for n in ("t_l", "a_l", "t_r", "a_r"))
        right = t_r + a_r * (x - t_r)
        left = t_l + a_l * (x - t_l)
        return torch.where(x >= t_r, right, torch.where(x <= t_l, left, x))
    assert spec.plain_act is not None
    return spec.plain_act(x)  # elementwise, so (K, B, F) is fine


def _dropout(x: Tensor, p: float, gens: list[torch.Generator]) -> Tensor:
    # One draw per model from its own generator, of the shape a separate run draws: (B, F).
    u = torch.stack([torch.rand(x.shape[1:], generator=g, device=g.device) for g in gens])
    keep = (u >= p).to(device=x.device, dtype=x.dtype)
    return x * keep / (1.0 - p)


def mlp_forward(spec: MLPSpec, p: Params, buf: Params, x: Tensor, *, training: bool,
                active: Tensor, dropout_gens: list[torch.Generator] | None = None) -> Tensor:
    """Logits (K, B, C) of the K models for inputs x (K, B, *input_shape)."""
    h = x.flatten(2)
    for blk in spec.blocks:
        y = _linear(h, p[f"{blk.prefix}.linear.weight"],
                    p.get(f"{blk.prefix}.linear.bias") if blk.bias else None)
        if blk.norm:
            y = _batchnorm(y, p, buf, blk.prefix, blk, training, active)
        y = _activation(y, p, blk)
        if training and blk.dropout > 0:
            assert dropout_gens is not None
            y = _dropout(y, blk.dropout, dropout_gens)
        h = h + y if blk.residual else y
    return _linear(h, p["out.weight"], p.get("out.bias") if spec.out_bias else None)

"""GradientFlowMonitor's layer discovery on models built as people build them, every number
checked against torch.autograd: torch.nn.utils.prune, a pruned ResNet, a transformer block with
tied embeddings, torch.ao.pruning, include/exclude filters, and the nothing-found error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from sparseflow.gradflow import GradientFlowMonitor
from sparseflow.gradflow.layers import NoLayersError, discover_layers


def _oracle(loss: Tensor, layers: list[tuple[str, Tensor, Tensor | None]]) -> dict:
    """Per-layer masked norms and EGF by hand: autograd.grad of the loss w.r.t. the weights."""
    grads = torch.autograd.grad(loss, [p for _, p, _ in layers], retain_graph=True)
    per = {}
    for (name, _, mask), g in zip(layers, grads, strict=True):
        g = g.double()
        gm = g if mask is None else g * mask.double()
        per[name] = {"norm1": gm.abs().sum().item(), "norm2": gm.norm().item(),
                     "norm2_raw": g.norm().item(),
                     "active": g.numel() if mask is None else int(mask.sum())}  # fmt: skip
    n = len(per)
    return {
        "per_layer": per,
        "egf1": sum(v["norm1"] for v in per.values()) / n,
        "egf2": sum(v["norm2"] for v in per.values()) / n,
        "gf2": sum(v["norm2_raw"] ** 2 for v in per.values()) ** 0.5,
        "egf2_per_weight": sum(v["norm2"] / v["active"] for v in per.values()) / n,
    }


def _check(out: dict, expected: dict) -> None:
    assert list(out["per_layer"]) == list(expected["per_layer"])
    for name, exp in expected["per_layer"].items():
        got = out["per_layer"][name]
        for key in ("norm1", "norm2", "norm2_raw", "active"):
            assert got[key] == pytest.approx(exp[key], rel=1e-6, abs=1e-12), (name, key)
    for key in ("egf1", "egf2", "gf2", "egf2_per_weight"):
        assert out[key] == pytest.approx(expected[key], rel=1e-6), key


def _measure(model: nn.Module, loss: Tensor, mon: GradientFlowMonitor) -> dict:
    model.zero_grad()
    loss.backward(retain_graph=True)
    return mon.step()


# -- torch.nn.utils.prune ---------------------------------------------------------------------


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, 3))  # fmt: skip


def _batch(n: int = 24, d: int = 10, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_torch_prune_layers_and_numbers_match_autograd() -> None:
    model = _mlp()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    torch.manual_seed(3)
    prune.random_unstructured(model[2], "weight", amount=0.3)
    mon = GradientFlowMonitor(model)
    assert [(x.name, x.parameter, x.kind, x.mask_source) for x in mon.layers] == [
        ("0.weight", "0.weight_orig", "linear", "prune"),
        ("2.weight", "2.weight_orig", "linear", "prune"),
        ("4.weight", "4.weight", "linear", "none"),
    ]
    assert [(x.active, x.total) for x in mon.layers] == [(160, 320), (358, 512), (48, 48)]
    x, y = _batch()
    loss = F.cross_entropy(model(x), y)
    expected = _oracle(loss, [("0.weight", model[0].weight_orig, model[0].weight_mask),
                              ("2.weight", model[2].weight_orig, model[2].weight_mask),
                              ("4.weight", model[4].weight, None)])  # fmt: skip
    out = _measure(model, loss, mon)
    _check(out, expected)
    assert out["per_layer"]["0.weight"]["active"] == 160
    # The gradient of weight_orig is already 0 at pruned positions (weight = orig * mask).
    assert out["gf2"] == pytest.approx(out["gf2_masked"], rel=1e-12)


def test_prune_mask_is_read_live_after_pruning_again() -> None:
    model = _mlp()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    mon = GradientFlowMonitor(model)
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # iterative: 75% pruned now
    assert mon.layers[0].active == 80
    x, y = _batch()
    out = _measure(model, F.cross_entropy(model(x), y), mon)
    assert out["per_layer"]["0.weight"]["active"] == 80


def test_given_mask_wins_and_may_name_the_orig_parameter() -> None:
    model = _mlp()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    mine = torch.rand(32, 10, generator=torch.Generator().manual_seed(2)) < 0.2
    mon = GradientFlowMonitor(model, mask={"0.weight_orig": mine})
    assert mon.layers[0].mask_source == "mask" and mon.layers[0].active == int(mine.sum())
    x, y = _batch()
    loss = F.cross_entropy(model(x), y)
    expected = _oracle(loss, [("0.weight", model[0].weight_orig, mine),
                              ("2.weight", model[2].weight, None),
                              ("4.weight", model[4].weight, None)])  # fmt: skip
    _check(_measure(model, loss, mon), expected)


# -- a small ResNet, pruned globally ----------------------------------------------------------


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())  # fmt: skip
        self.layer1 = _Block(8, 8, 1)
        self.layer2 = _Block(8, 16, 2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer2(self.layer1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def test_resnet_pruned_globally_matches_autograd() -> None:
    torch.manual_seed(0)
    model = _ResNet()
    targets = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=0.6)
    mon = GradientFlowMonitor(model)
    names = [x.name for x in mon.layers]
    assert names == ["stem.0.weight", "layer1.conv1.weight", "layer1.conv2.weight",
                     "layer2.conv1.weight", "layer2.conv2.weight", "layer2.shortcut.0.weight",
                     "fc.weight"]  # fmt: skip
    assert {x.kind for x in mon.layers} == {"conv2d", "linear"}
    assert sum(x.active for x in mon.layers) == round(0.4 * sum(x.total for x in mon.layers))
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 3, 8, 8, generator=gen), torch.randint(0, 5, (6,), generator=gen)
    loss = F.cross_entropy(model(x), y)
    modules = [m for m, _ in targets]
    expected = _oracle(loss, [(n, m.weight_orig, m.weight_mask)
                              for n, m in zip(names, modules, strict=True)])  # fmt: skip
    _check(_measure(model, loss, mon), expected)


# -- a transformer block with tied embedding / output weights ---------------------------------


class _Block1(nn.Module):
    def __init__(self, vocab: int = 11, d: int = 8, kdim: int | None = None) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True, kdim=kdim, vdim=kdim)
        self.kv = nn.Linear(d, kdim) if kdim else None
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, 16), nn.Linear(16, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.emb(tokens)
        kv = h if self.kv is None else self.kv(h)
        h = self.norm1(h + self.attn(h, kv, kv, need_weights=False)[0])
        h = self.norm2(h + self.ff2(F.gelu(self.ff1(h))))
        return self.head(h)


def _tokens(seed: int = 5) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (4, 6), generator=gen), torch.randint(0, 11, (4, 6), generator=gen)


def _lm_loss(model: nn.Module) -> Tensor:
    x, y = _tokens()
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def test_transformer_block_with_tied_embeddings_matches_autograd() -> None:
    torch.manual_seed(0)
    model = _Block1()
    gen = torch.Generator().manual_seed(6)
    in_mask = torch.rand(24, 8, generator=gen) < 0.5
    head_mask = torch.rand(11, 8, generator=gen) < 0.5
    # The tied weight's mask may be given under its second name (head.weight).
    mon = GradientFlowMonitor(model, mask={"attn.in_proj_weight": in_mask,
                                           "head.weight": head_mask}, embeddings=True)  # fmt: skip
    assert [(x.name, x.kind, x.mask_source) for x in mon.layers] == [
        ("emb.weight", "embedding", "mask"),
        ("attn.in_proj_weight", "attention", "mask"),
        ("attn.out_proj.weight", "linear", "none"),
        ("ff1.weight", "linear", "none"),
        ("ff2.weight", "linear", "none"),
    ]  # head.weight is emb.weight: counted once, under the first name
    loss = _lm_loss(model)
    expected = _oracle(loss, [("emb.weight", model.emb.weight, head_mask),
                              ("attn.in_proj_weight", model.attn.in_proj_weight, in_mask),
                              ("attn.out_proj.weight", model.attn.out_proj.weight, None),
                              ("ff1.weight", model.ff1.weight, None),
                              ("ff2.weight", model.ff2.weight, None)])  # fmt: skip
    _check(_measure(model, loss, mon), expected)


def test_embeddings_are_opt_in_and_tied_head_then_counts() -> None:
    torch.manual_seed(0)
    model = _Block1()
    names = [x.name for x in GradientFlowMonitor(model).layers]
    assert names == ["attn.in_proj_weight", "attn.out_proj.weight", "ff1.weight", "ff2.weight",
                     "head.weight"]  # fmt: skip


def test_attention_with_other_kdim_has_q_k_v_projections() -> None:
    torch.manual_seed(0)
    model = _Block1(kdim=6)
    mon = GradientFlowMonitor(model, include="attn*")
    assert [(x.name, x.shape) for x in mon.layers] == [
        ("attn.q_proj_weight", (8, 8)), ("attn.k_proj_weight", (8, 6)),
        ("attn.v_proj_weight", (8, 6)), ("attn.out_proj.weight", (8, 8)),
    ]  # fmt: skip
    loss = _lm_loss(model)
    a = model.attn
    expected = _oracle(loss, [("attn.q_proj_weight", a.q_proj_weight, None),
                              ("attn.k_proj_weight", a.k_proj_weight, None),
                              ("attn.v_proj_weight", a.v_proj_weight, None),
                              ("attn.out_proj.weight", a.out_proj.weight, None)])  # fmt: skip
    _check(_measure(model, loss, mon), expected)


# -- torch.ao.pruning (parametrizations) ------------------------------------------------------


def test_ao_weight_norm_sparsifier_matches_autograd() -> None:
    sparsifier_mod = pytest.importorskip("torch.ao.pruning")
    model = _mlp()
    sparsifier = sparsifier_mod.WeightNormSparsifier(
        sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=4
    )
    sparsifier.prepare(model, [{"tensor_fqn": "0.weight"}, {"tensor_fqn": "2.weight"}])
    sparsifier.step()
    mon = GradientFlowMonitor(model)
    first = mon.layers[0]
    assert (first.name, first.parameter, first.mask_source) == (
        "0.weight",
        "0.parametrizations.weight.original",
        "parametrization",
    )
    masks = [model[i].parametrizations.weight[0].mask for i in (0, 2)]
    assert first.active == int(masks[0].sum()) < first.total
    assert mon.layers[2].mask_source == "none"
    x, y = _batch()
    loss = F.cross_entropy(model(x), y)
    expected = _oracle(loss, [("0.weight", model[0].parametrizations.weight.original, masks[0]),
                              ("2.weight", model[2].parametrizations.weight.original, masks[1]),
                              ("4.weight", model[4].weight, None)])  # fmt: skip
    _check(_measure(model, loss, mon), expected)


def test_parametrization_without_mask_is_dense() -> None:
    model = _mlp()
    torch.nn.utils.parametrizations.orthogonal(model[2])
    layer = GradientFlowMonitor(model).layers[1]
    assert (layer.parameter, layer.mask_source) == ("2.parametrizations.weight.original", "none")


def test_weight_norm_layer_is_left_out_and_include_all_measures_its_tensors() -> None:
    model = _mlp()
    torch.nn.utils.parametrizations.weight_norm(model[0])
    assert [x.name for x in GradientFlowMonitor(model).layers] == ["2.weight", "4.weight"]
    names = [x.name for x in GradientFlowMonitor(model, include_all=True).layers]
    assert names[:3] == ["0.bias", "0.parametrizations.weight.original0",
                         "0.parametrizations.weight.original1"]  # fmt: skip


# -- filters and errors -----------------------------------------------------------------------


def test_include_exclude_globs_and_callables() -> None:
    torch.manual_seed(0)
    model = _Block1()
    assert [x.name for x in discover_layers(model, include="ff*")] == ["ff1.weight", "ff2.weight"]
    assert [x.name for x in discover_layers(model, exclude=["attn*", "head.weight"])] == [
        "ff1.weight", "ff2.weight"]  # fmt: skip
    assert [x.name for x in discover_layers(model, include=lambda m: m.startswith("attn"))] == [
        "attn.in_proj_weight", "attn.out_proj.weight"]  # fmt: skip
    # include_all adds biases and norms, still one entry per Parameter.
    everything = discover_layers(model, include_all=True)
    assert len(everything) == len(list(model.parameters()))  # emb.weight is head.weight: once
    assert len({id(x.param) for x in everything}) == len(everything)
    assert {x.kind for x in everything} == {"attention", "linear", "other"}


def test_mask_for_a_layer_that_is_not_measured_is_rejected() -> None:
    model = _mlp()
    with pytest.raises(ValueError, match=r"'0\.bias' is a parameter but not a measured layer"):
        GradientFlowMonitor(model, mask={"0.bias": torch.ones(32, dtype=torch.bool)})


def test_nothing_found_says_what_was_looked_for_and_how_to_include() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4))
    with pytest.raises(NoLayersError) as info:
        GradientFlowMonitor(model)
    message = str(info.value)
    for part in ("Linear", "Conv", "MultiheadAttention", "weight_orig", "parametriz",
                 "embeddings=True", "include_all=True", "include=", "1.weight"):  # fmt: skip
        assert part in message, part
    assert "\n" not in message and isinstance(info.value, ValueError)
    assert [x.name for x in GradientFlowMonitor(model, embeddings=True).layers] == ["0.weight"]
    with pytest.raises(NoLayersError, match="after include=/exclude="):
        GradientFlowMonitor(_mlp(), include="nothing*")


def test_layer_records_are_readable() -> None:
    model = _mlp()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    text = str(GradientFlowMonitor(model).layers[0])
    assert text == "0.weight [linear, (32, 10), mask: prune, 160/320 active]"
    assert repr(GradientFlowMonitor(model)) == "GradientFlowMonitor(3 layers, 0 steps recorded)"

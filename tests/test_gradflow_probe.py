"""measure_gradient_flow: autograd oracles, chunking, and leaving no trace on training."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparseflow.gradflow import gradient_flow, measure_gradient_flow
from sparseflow.sparsity.mask import prunable_parameters


class SeededDropout(nn.Module):
    """Dropout drawing from its own generator (like the project's SeededDropout)."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        self.p = p
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep / (1 - self.p)


def bn_dropout_mlp(seed: int = 0) -> nn.Sequential:
    """Linear-BN-ReLU-SeededDropout-Linear-ReLU-Dropout(global RNG)-Linear; input 6, 3 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), SeededDropout(0.3, seed + 1),
        nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3),
    )  # fmt: skip


def tiny_convnet() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    )  # fmt: skip


def random_masks(model: nn.Module, density: float = 0.4) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(7)
    return {n: torch.rand(p.shape, generator=gen) < density
            for n, p in prunable_parameters(model).items()}  # fmt: skip


def data(n: int, shape: tuple[int, ...], seed: int = 3) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _oracle(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Prunable-weight gradients by a plain .backward() on a deep copy of the model."""
    twin = copy.deepcopy(model)
    F.cross_entropy(twin(x), y).backward()
    return {n: p.grad for n, p in prunable_parameters(twin).items()}


@pytest.mark.parametrize("build", ["mlp_bn", "convnet"])
def test_matches_backward_oracle(build: str) -> None:
    if build == "mlp_bn":  # training mode, BN on batch statistics; dropout off for the oracle
        model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
        x, y = data(32, (6,))
    else:
        model, (x, y) = tiny_convnet(), data(8, (1, 6, 6))
    model = model.double()
    x = x.double()
    masks = random_masks(model)
    got = measure_gradient_flow(model, F.cross_entropy, x, y, masks)
    want = _oracle(model, x, y)
    for name, g in want.items():
        layer = got["per_layer"][name]
        gm = g[masks[name]]
        assert layer["norm1_raw"] == pytest.approx(g.abs().sum().item(), rel=1e-12)
        assert layer["norm2_raw"] == pytest.approx(g.norm().item(), rel=1e-12)
        assert layer["norm1"] == pytest.approx(gm.abs().sum().item(), rel=1e-12)
        assert layer["norm2"] == pytest.approx(gm.norm().item(), rel=1e-12)
    ref = gradient_flow(want, masks)
    for key in ("gf1", "gf2", "egf1", "egf2", "egf2_per_weight"):
        assert got[key] == pytest.approx(ref[key], rel=1e-12)


def test_eval_mode_uses_running_stats_like_the_oracle() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    model(torch.randn(64, 6, dtype=torch.float64))  # give BN non-trivial running stats
    model.eval()
    x, y = data(16, (6,))
    got = measure_gradient_flow(model, F.cross_entropy, x.double(), y)
    want = gradient_flow(_oracle(model, x.double(), y))
    assert got["egf2"] == pytest.approx(want["egf2"], rel=1e-12)
    assert not model.training


@pytest.mark.parametrize("batch_size", [1, 7, 19, 20, 100])
def test_chunked_equals_full_batch_without_bn(batch_size: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    x, y = data(20, (6,))
    x = x.double()
    full = measure_gradient_flow(model, F.cross_entropy, x, y)
    chunked = measure_gradient_flow(model, F.cross_entropy, x, y, batch_size=batch_size)
    for name, layer in full["per_layer"].items():
        for key in ("norm1_raw", "norm2_raw"):
            assert chunked["per_layer"][name][key] == pytest.approx(layer[key], rel=1e-12)


def test_chunks_with_bn_use_per_chunk_statistics() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    x, y = data(20, (6,))
    full = measure_gradient_flow(model, F.cross_entropy, x.double(), y)
    chunked = measure_gradient_flow(model, F.cross_entropy, x.double(), y, batch_size=5)
    assert chunked["gf2"] != pytest.approx(full["gf2"], rel=1e-6)  # documented difference


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},  # the objects themselves
        "grad_values": {
            n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
        },
        "rng": torch.get_rng_state(),
        "gen": model[3].generator.get_state(),
        "modes": [m.training for m in model.modules()],
    }


def _assert_same(a: dict, b: dict) -> None:
    for n in a["buffers"]:
        assert torch.equal(a["buffers"][n], b["buffers"][n]), n
        assert a["buffers"][n].dtype == b["buffers"][n].dtype
    for n in a["params"]:
        assert torch.equal(a["params"][n], b["params"][n]), n
        assert a["grads"][n] is b["grads"][n], n
        if a["grad_values"][n] is not None:
            assert torch.equal(a["grad_values"][n], b["grad_values"][n]), n
    assert torch.equal(a["rng"], b["rng"])
    assert torch.equal(a["gen"], b["gen"])
    assert a["modes"] == b["modes"]


@pytest.mark.parametrize("batch_size", [None, 8])
def test_probe_leaves_no_trace(batch_size: int | None) -> None:
    model = bn_dropout_mlp()
    x, y = data(24, (6,))
    F.cross_entropy(model(x), y).backward()  # existing .grad must survive
    model[4].bias.grad = None  # and a None grad must stay None
    model[7].eval()  # a mixed-mode model keeps each module's own mode
    before = _snapshot(model)
    xp, yp = data(16, (6,), seed=9)
    with torch.no_grad():  # works (and still leaves no trace) inside a no_grad block
        result = measure_gradient_flow(model, F.cross_entropy, xp, yp, batch_size=batch_size)
    assert result["egf2"] > 0
    _assert_same(before, _snapshot(model))
    # Sanity: a plain forward does change all of these, so the checks above could fail.
    model(xp)
    after = _snapshot(model)
    assert not torch.equal(before["buffers"]["1.running_mean"], after["buffers"]["1.running_mean"])
    assert not torch.equal(before["rng"], after["rng"])
    assert not torch.equal(before["gen"], after["gen"])


def test_probe_restores_a_replaced_buffer() -> None:
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x: Tensor) -> Tensor:
            self.seen = self.seen + len(x)  # replaces the buffer object, not in place
            return x

    model = nn.Sequential(nn.Linear(6, 3), Counter())
    original = model[1].seen
    x, y = data(5, (6,))
    measure_gradient_flow(model, F.cross_entropy, x, y)
    assert model[1].seen is original and model[1].seen.item() == 0.0


def _train(probe: bool, steps: int = 12) -> dict[str, Tensor]:
    """A few SGD+momentum steps; probes (in training mode) between backward and step."""
    model = bn_dropout_mlp(seed=5)
    torch.manual_seed(123)  # global RNG drives nn.Dropout
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = data(64, (6,), seed=11)
    xp, yp = data(32, (6,), seed=12)
    masks = random_masks(model)
    order = torch.Generator().manual_seed(4)
    for step in range(steps):
        idx = torch.randint(0, 64, (16,), generator=order)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        if probe and step % 3 == 0:
            r = measure_gradient_flow(model, F.cross_entropy, xp, yp, masks, batch_size=10)
            assert r["egf1"] > 0
        opt.step()
        if probe and step % 4 == 1:
            measure_gradient_flow(model, F.cross_entropy, xp, yp)  # after the step too
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_with_and_without_probes_is_bitwise_identical() -> None:
    without, with_probes = _train(probe=False), _train(probe=True)
    assert without.keys() == with_probes.keys()
    for k in without:
        assert torch.equal(without[k], with_probes[k]), k
    assert not torch.equal(without["0.weight"], bn_dropout_mlp(seed=5)[0].weight)  # it trained


def test_unused_and_frozen_layers() -> None:
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
            self.spare = nn.Linear(3, 3)  # not used in forward: gradient 0, not an error

        def forward(self, x: Tensor) -> Tensor:
            return self.body(x)

    model = WithSpare()
    x, y = data(10, (6,))
    r = measure_gradient_flow(model, F.cross_entropy, x, y)
    assert r["per_layer"]["spare.weight"]["norm2_raw"] == 0.0
    assert r["per_layer"]["body.0.weight"]["norm2_raw"] > 0.0
    model.body[0].requires_grad_(False)  # frozen: left out, its mask ignored
    r = measure_gradient_flow(model, F.cross_entropy, x, y, random_masks(model))
    assert list(r["per_layer"]) == ["body.2.weight", "spare.weight"]


def test_bad_arguments() -> None:
    model = nn.Sequential(nn.Linear(6, 3))
    x, y = data(10, (6,))
    with pytest.raises(ValueError, match="batch_size"):
        measure_gradient_flow(model, F.cross_entropy, x, y, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        measure_gradient_flow(model, F.cross_entropy, x[:0], y[:0])
    with pytest.raises(ValueError, match="rows"):
        measure_gradient_flow(model, F.cross_entropy, x, y[:5])
    per_sample = nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match="scalar"):
        measure_gradient_flow(model, per_sample, x, y)


def test_mode_changed_inside_the_probe_is_restored() -> None:
    model = bn_dropout_mlp()
    x, y = data(8, (6,))

    def loss_that_switches_mode(out: Tensor, target: Tensor) -> Tensor:
        model.eval()  # a side effect the probe must undo
        return F.cross_entropy(out, target)

    measure_gradient_flow(model, loss_that_switches_mode, x, y)
    assert all(m.training for m in model.modules())

"""A pruned ResNet-style block and a pruned transformer block (``torch.nn.utils.prune``, no mask
given to sparseflow), monitored in a plain loop, a Lightning loop and a Hugging Face Trainer:
every recorded measure equals a hand computation from ``weight_orig.grad ⊙ weight_mask``.

Skipped with a message when Lightning or transformers is not installed.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sparseflow.gradflow import GradientFlowMonitor

from tests.test_integrations import _example, _lightning

KEYS = ("gf1", "gf2", "egf1", "egf2")


class ResBlock(nn.Module):
    """conv–BN–ReLU, a residual conv–BN, global pool and a linear head (torchvision's shape)."""

    layers = ("conv1.weight", "conv2.weight", "fc.weight")

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)
        prune.global_unstructured([(self.conv1, "weight"), (self.conv2, "weight"),
                                   (self.fc, "weight")], prune.L1Unstructured, amount=0.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)) + h)
        return self.fc(h.mean((2, 3)))


class TransformerBlock(nn.Module):
    """Embedding, self-attention and a feed-forward block with LayerNorms, a linear head."""

    layers = ("attn.in_proj_weight", "attn.out_proj.weight", "ff1.weight", "ff2.weight",
              "head.weight")

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(16), nn.LayerNorm(16)
        self.ff1, self.ff2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)
        prune.random_unstructured(self.attn, "in_proj_weight", amount=0.5)
        # Not attn.out_proj: MultiheadAttention reads out_proj.weight without calling out_proj,
        # so prune's forward pre-hook would never recompute it (a torch limitation).
        prune.l1_unstructured(self.ff2, "weight", amount=0.3)
        prune.l1_unstructured(self.ff1, "weight", amount=0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        h = self.ln1(h + self.attn(h, h, h, need_weights=False)[0])
        h = self.ln2(h + self.ff2(torch.relu(self.ff1(h))))
        return self.head(h.mean(1))


def _inputs(net: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randint(0, 20, (n, 6), generator=g) if isinstance(net, TransformerBlock)
         else torch.randn(n, 3, 6, 6, generator=g))
    return x, torch.randint(0, 3, (n,), generator=g)


def masked_grads(net: nn.Module) -> dict[str, torch.Tensor]:
    """Each expected layer's effective gradient by hand: ``<w>_orig.grad ⊙ <w>_mask`` for a
    pruned weight, ``.grad`` otherwise."""
    out = {}
    for name in net.layers:
        path, _, attr = name.rpartition(".")
        mod = net.get_submodule(path)
        if hasattr(mod, f"{attr}_orig"):
            g = getattr(mod, f"{attr}_orig").grad * getattr(mod, f"{attr}_mask")
        else:
            g = getattr(mod, attr).grad
        out[name] = g.detach().double().clone()
    return out


def by_hand(grads: dict[str, torch.Tensor]) -> dict[str, float]:
    flat = torch.cat([g.flatten() for g in grads.values()])
    return {"gf1": float(flat.abs().sum()), "gf2": float(flat.norm()),
            "egf1": sum(float(g.abs().sum()) for g in grads.values()) / len(grads),
            "egf2": sum(float(g.norm()) for g in grads.values()) / len(grads)}


def _check(records: list[dict[str, Any]], hands: list[dict[str, float]]) -> None:
    assert len(records) == len(hands) > 0
    for rec, hand in zip(records, hands, strict=True):
        for key in KEYS:
            assert rec[key] == pytest.approx(hand[key], rel=1e-5), key
            assert math.isfinite(rec[key]) and rec[key] > 0


NETS = [ResBlock, TransformerBlock]


@pytest.mark.parametrize("net_type", NETS)
def test_plain_loop_finds_the_pruned_layers_and_matches_the_hand_computation(
        net_type: type[nn.Module]) -> None:
    torch.manual_seed(0)
    net = net_type()
    mon = GradientFlowMonitor(net)
    assert [layer.name for layer in mon.layers] == list(net.layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    hands = []
    for step in range(3):
        x, y = _inputs(net, 16, step)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        mon.step()
        hands.append(by_hand(masked_grads(net)))
        opt.step()
    _check(mon.history, hands)


@pytest.mark.parametrize("net_type", NETS)
def test_lightning_loop_matches_the_hand_computation(net_type: type[nn.Module],
                                                     tmp_path: Path) -> None:
    pl = _lightning()
    from sparseflow.integrations.lightning import GradientFlowCallback

    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.hands = net_type(), []

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            self.hands.append(by_hand(masked_grads(self.net)))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    module = Lit()
    x, y = _inputs(module.net, 32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    flow = GradientFlowCallback()
    trainer = pl.Trainer(max_epochs=1, callbacks=[flow], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accumulate_grad_batches=2, default_root_dir=str(tmp_path))
    trainer.fit(module, loader)
    assert [layer.name for layer in flow.monitor.layers] == [f"net.{n}" for n in module.net.layers]
    _check(flow.monitor.history, module.hands)  # 4 batches, 2 accumulated: 2 optimizer steps
    assert len(module.hands) == 2


class _HFWrap(nn.Module):
    """The Trainer's contract around a net: forward(x, labels) -> {"loss", "logits"}."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class _HFData(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


@pytest.mark.parametrize("net_type", NETS)
def test_hugging_face_trainer_matches_the_hand_computation(net_type: type[nn.Module],
                                                           tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="accelerate is not installed "
                        "(pip install 'sparseflow[hf]')")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed "
                                       "(pip install 'sparseflow[hf]')")
    from sparseflow.integrations.huggingface import GradientFlowCallback

    class Hand(transformers.TrainerCallback):
        """The oracle: gradients by hand just before the optimizer steps (no clipping here, so
        they are the ones the monitor measured after the last accumulated backward)."""

        def __init__(self) -> None:
            self.hands: list[dict[str, float]] = []

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.hands.append(by_hand(masked_grads(kw["model"].net)))

    torch.manual_seed(0)
    model = _HFWrap(net_type())
    flow, hand = GradientFlowCallback(), Hand()
    args = transformers.TrainingArguments(
        str(tmp_path), report_to=[], use_cpu=True, max_steps=3, per_device_train_batch_size=8,
        gradient_accumulation_steps=2, max_grad_norm=0.0, save_strategy="no",
        disable_tqdm=True, logging_steps=1)
    trainer = transformers.Trainer(model=model, args=args,
                                   train_dataset=_HFData(*_inputs(model.net, 48)),
                                   callbacks=[flow, hand])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    assert [layer.name for layer in flow.monitor.layers] == [f"net.{n}" for n in model.net.layers]
    _check(flow.monitor.history, hand.hands)
    assert len(hand.hands) == 3


# README examples ----------------------------------------------------------------------------
def test_readme_prune_and_amp_examples_measure_the_unscaled_accumulated_gradient() -> None:
    torch.manual_seed(0)
    ns: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(_example("prune-example"), "README prune-example", "exec"), ns)
    printed = out.getvalue().splitlines()
    assert len(printed) == 2 and "0.weight" in printed[0] and "2.weight" in printed[1]
    net, base = ns["net"], ns["GradientFlowMonitor"]
    assert [layer.name for layer in ns["mon"].layers] == ["0.weight", "2.weight"]
    hands: list[dict[str, float]] = []

    class Watched(base):  # the oracle: the gradients as they are when the monitor measures
        def step(self, *a: Any, **k: Any) -> Any:
            before = len(self.history)
            result = super().step(*a, **k)
            if len(self.history) > before:
                scale = float(scaler.get_scale())
                hands.append(by_hand({n: g / scale for n, g in masked_grads(net).items()}))
            return result

    net.layers = ("0.weight", "2.weight")
    scaler = torch.amp.GradScaler("cpu")
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 20, generator=g), torch.randint(0, 3, (8,), generator=g))
               for _ in range(8)]
    ns.update(GradientFlowMonitor=Watched, batches=batches,
              opt=torch.optim.SGD(net.parameters(), lr=0.1), torch=torch)
    source = _example("amp-example").replace('scaler = torch.amp.GradScaler("cpu")\n',
                                                    "")
    ns["scaler"] = scaler
    exec(compile(source, "README amp-example", "exec"), ns)
    assert scaler.get_scale() > 1  # the gradients really were scaled when measured
    _check(ns["mon"].history, hands)
    assert len(hands) == 2  # 8 micro-batches, 4 accumulated per optimizer step

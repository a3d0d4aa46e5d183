"""Integrations: Lightning and Hugging Face callbacks, a plain log(dict) loop (README examples
run against the real libraries; skipped with a message when one is not installed)."""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sparseflow.gradflow import MEASURES, gradient_flow
from sparseflow.sparsity import Mask, prunable_parameters

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(name: str) -> str:
    text = README.read_text()
    block = text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    source = re.search(r"```python\n(.*?)```", block, flags=re.S).group(1)
    assert len(source.strip().splitlines()) <= 10, f"{name} is longer than 10 lines"
    return source


def _run(source: str, name: str, ns: dict[str, Any]) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(source, f"README {name}", "exec"), ns)
    return out.getvalue()


def _data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _mask(model: nn.Module, density: float = 0.5) -> Mask:
    g = torch.Generator().manual_seed(1)
    return Mask({n: torch.rand(p.shape, generator=g) < density
                 for n, p in prunable_parameters(model).items()})


def _total_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()
                         if p.grad is not None))


# Plain loop ---------------------------------------------------------------------------------
def test_log_dict_example_feeds_a_logger_the_measures() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    mask = _mask(model)
    x, y = _data()
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    logged: list[tuple[dict[str, float], int]] = []
    grads: list[dict[str, torch.Tensor]] = []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    real_step = opt.step

    def step_and_keep(*a: Any, **k: Any) -> Any:  # keep the gradients the logger saw
        grads.append({n: p.grad.clone() for n, p in prunable_parameters(model).items()})
        return real_step(*a, **k)

    opt.step = step_and_keep
    ns = {"model": model, "mask": mask, "batches": batches, "opt": opt, "torch": torch,
          "log": lambda d, step: logged.append((dict(d), step))}
    _run(_example("log-example"), "log-example", ns)
    measures = [d for d, _ in logged if "gradflow/egf2" in d]
    layers = [d for d, _ in logged if any(k.startswith("gradflow_layer/") for k in d)]
    assert [s for d, s in logged if d in measures] == [0, 1, 2, 3] and len(layers) == 4
    for d, g, per_layer in zip(measures, grads, layers, strict=True):
        hand = gradient_flow(g, dict(mask.items()))
        assert set(d) == {f"gradflow/{k}" for k in MEASURES}
        for k in MEASURES:
            assert d[f"gradflow/{k}"] == pytest.approx(hand[k], rel=1e-6)
        w = g["2.weight"][mask["2.weight"]]
        assert per_layer["gradflow_layer/2.weight"] == pytest.approx(float(w.norm()), rel=1e-5)


# Lightning ----------------------------------------------------------------------------------
def _lightning() -> Any:
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        return pytest.importorskip(
            "pytorch_lightning", reason="Lightning is not installed (pip install lightning)")


def _lit_module(pl: Any, lr: float = 0.1) -> Any:
    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
            self.norms: list[float] = []  # total gradient norm seen by the module's own hook
            self.grads: list[dict[str, torch.Tensor]] = []  # the prunable weights' gradients

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            self.norms.append(_total_norm(self))  # after the callbacks' hook, before clipping
            self.grads.append({n: p.grad.clone() for n, p in prunable_parameters(self).items()})

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=lr)

    return Lit()


def _loader() -> torch.utils.data.DataLoader:
    x, y = _data()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def test_lightning_readme_example_logs_measures(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pl = _lightning()
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    module = _lit_module(pl)
    mask = _mask(module)
    ns = {"module": module, "mask": mask, "loader": _loader()}
    out = _run(_example("lightning-example"), "lightning-example", ns)
    flow, trainer = ns["flow"], ns["trainer"]
    assert len(flow.monitor.history) == 4 and "EGF2 average" in out
    assert [r["step"] for r in flow.monitor.history] == [0, 1, 2, 3]
    assert trainer.callback_metrics["gradflow/egf2"] == pytest.approx(
        flow.monitor.latest["egf2"], rel=1e-6)
    assert set(flow.monitor.latest) - {"step"} == set(MEASURES)
    for record, grads in zip(flow.monitor.history, module.grads, strict=True):
        hand = gradient_flow(grads, dict(mask.items()))  # the measures by hand, same gradients
        for key in MEASURES:
            assert record[key] == pytest.approx(hand[key], rel=1e-6)
    assert flow.monitor.latest["gf2"] > flow.monitor.latest["gf2_masked"]  # the mask counts


def test_lightning_measures_accumulated_gradient_before_clipping(tmp_path: Path) -> None:
    pl = _lightning()
    from sparseflow.integrations.lightning import GradientFlowCallback

    torch.manual_seed(0)
    module = _lit_module(pl)
    flow = GradientFlowCallback(include_all=True)
    trainer = pl.Trainer(max_epochs=1, callbacks=[flow], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accumulate_grad_batches=2,
                         gradient_clip_val=1e-4, default_root_dir=str(tmp_path))
    trainer.fit(module, _loader())
    gf2 = [r["gf2"] for r in flow.monitor.history]
    assert len(gf2) == 2  # 4 batches, 2 accumulated per optimizer step
    assert gf2 == pytest.approx(module.norms, rel=1e-6)
    assert min(gf2) > 1e-2  # far above the clipping norm: measured before clipping


# Hugging Face -------------------------------------------------------------------------------
class _HFModel(nn.Module):
    """A tiny model with the Trainer's contract: forward(**batch) -> {"loss", "logits"}."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.fc2(torch.relu(self.fc1(x)))
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class _HFData(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x, self.y = _data()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def _transformers() -> Any:
    pytest.importorskip("accelerate", reason="accelerate is not installed (pip install "
                        "'sparseflow[hf]')")
    return pytest.importorskip("transformers", reason="transformers is not installed (pip "
                               "install 'sparseflow[hf]')")


def test_hf_readme_example_logs_measures(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _transformers()
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = _HFModel()
    source = _example("hf-example").replace("report_to=[]", "report_to=[], use_cpu=True")
    ns = {"model": model, "dataset": _HFData(), "mask": _mask(model)}
    out = _run(source, "hf-example", ns)
    flow, trainer = ns["flow"], ns["trainer"]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(flow.monitor.history) == 24  # 64 examples / 8 per batch × 3 epochs
    assert logs and all("gradflow/egf2" in h for h in logs)
    first = [r["egf2"] for r in flow.monitor.history[:4]]  # logging_steps=4: steps 0-3
    assert logs[0]["gradflow/egf2"] == pytest.approx(sum(first) / 4, rel=1e-9)
    assert float(out.strip().splitlines()[-1]) == pytest.approx(logs[0]["gradflow/egf2"])


def test_hf_measures_accumulated_gradient_before_clipping(tmp_path: Path) -> None:
    transformers = _transformers()
    from sparseflow.integrations.huggingface import GradientFlowCallback

    torch.manual_seed(0)
    flow = GradientFlowCallback(include_all=True)
    args = transformers.TrainingArguments(
        str(tmp_path), report_to=[], use_cpu=True, max_steps=4, per_device_train_batch_size=8,
        gradient_accumulation_steps=2, logging_steps=1, max_grad_norm=1e-4, save_strategy="no",
        disable_tqdm=True)
    trainer = transformers.Trainer(model=_HFModel(), args=args, train_dataset=_HFData(),
                                   callbacks=[flow])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    logs = [h for h in trainer.state.log_history if "grad_norm" in h]
    assert len(flow.monitor.history) == 4 == len(logs)  # once per step, not per micro-batch
    # The Trainer's grad_norm is the norm before clipping, of the accumulated gradient.
    for h, r in zip(logs, flow.monitor.history, strict=True):
        assert r["gf2"] == pytest.approx(h["grad_norm"], rel=1e-5)
        assert h["gradflow/gf2"] == pytest.approx(r["gf2"], rel=1e-9)
    assert min(r["gf2"] for r in flow.monitor.history) > 1e-2  # far above max_grad_norm
    # Hooks are removed after training: a later backward is not measured.
    model = trainer.model
    model(**{k: v[:4] for k, v in {"x": _data()[0], "labels": _data()[1]}.items()})[
        "loss"].backward()
    assert len(flow.monitor.history) == 4


# Optional imports ---------------------------------------------------------------------------
@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("sparseflow.integrations.lightning", ("lightning", "pytorch_lightning"), "lightning"),
    ("sparseflow.integrations.huggingface", ("transformers",), "hf"),
])
def test_missing_framework_names_the_extra(module: str, blocked: tuple[str, ...], extra: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseflow.integrations import IntegrationUnavailableError

    for name in [m for m in sys.modules if m == module or m.split(".")[0] in blocked]:
        monkeypatch.delitem(sys.modules, name)
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # import of it raises ImportError
    with pytest.raises(IntegrationUnavailableError, match=re.escape(
            f"pip install 'sparseflow[{extra}]'")) as info:
        importlib.import_module(module)
    assert isinstance(info.value, ImportError)


def test_integrations_package_imports_no_framework() -> None:
    import subprocess

    code = ("import sys, sparseflow.integrations; "
            "print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning', 'transformers') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_hf_callback_measures_unscaled_gradients_with_the_optimizers_scaler() -> None:
    """fp16 needs a GPU in the Trainer; the callback's wiring is checked directly: the scaler of
    accelerate's optimizer wrapper reaches the monitor, which measures unscaled gradients."""
    _transformers()
    import types

    from sparseflow.integrations.huggingface import GradientFlowCallback

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    state = types.SimpleNamespace(global_step=0, log_history=[])
    flow = GradientFlowCallback()
    flow.on_train_begin(None, state, None, model=model,
                        optimizer=types.SimpleNamespace(scaler=scaler))
    x, y = _data()
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()  # hooks measure here
    flow.on_train_end(None, state, None)
    grads = {n: p.grad / 2.0 ** 10 for n, p in prunable_parameters(model).items()}
    hand = gradient_flow(grads, None)
    (record,) = flow.monitor.history
    for key in MEASURES:
        assert record[key] == pytest.approx(hand[key], rel=1e-6)
    assert record["gf2"] * 2 ** 9 < float(torch.cat([g.flatten() for g in grads.values()]).norm()
                                          * 2 ** 10)  # not the scaled norm


def test_lightning_callback_with_every_and_the_cheap_mode(tmp_path: Path) -> None:
    pl = _lightning()
    from sparseflow.integrations.lightning import GradientFlowCallback

    torch.manual_seed(0)
    module = _lit_module(pl)
    flow = GradientFlowCallback(every=2, measures="cheap")
    trainer = pl.Trainer(max_epochs=1, callbacks=[flow], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, _loader())
    history = flow.monitor.history
    assert [r["step"] for r in history] == [0, 2]  # 4 optimizer steps, every second measured
    assert flow.monitor.measured == 2
    for record, grads in zip(history, module.grads[::2], strict=True):
        hand = gradient_flow(grads, None)
        assert record["egf2"] == pytest.approx(hand["egf2"], rel=1e-5)
    assert trainer.callback_metrics["gradflow/egf2"] == pytest.approx(history[-1]["egf2"])
    assert "gradflow/gf1" not in trainer.callback_metrics  # the cheap mode has L2 only

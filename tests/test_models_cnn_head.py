"""The cnn family's `flatten` head (the paper's CNN example): pooling, names, share of the
weights, a hand-written forward oracle, SC-SDC counts, training, refusals and unchanged run ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.config import ModelConfig, build_config
from sparseflow.config.identity import config_id
from sparseflow.models import build_model
from sparseflow.prunable import prunable_parameters
from sparseflow.registry import MODELS
from sparseflow.scsdc import same_capacity_counts
from sparseflow.sparsity import Mask
from sparseflow.train import run_experiment

from tests.test_cli import _assert_one_line_error, _run, _write, tiny
from tests.test_families_train import digits

FLAT = {"name": "cnn", "head": "flatten"}


def _build(input_shape: tuple[int, ...] = (1, 28, 28), *, width: int = 4, seed: int = 0,
           **cfg: object) -> nn.Module:
    model_cfg = ModelConfig(**{**FLAT, "width": width, **cfg})
    return build_model(model_cfg, input_shape, 10, generator=torch.Generator().manual_seed(seed))


def _meta(width: int, input_shape: tuple[int, ...], **cfg: object) -> nn.Module:
    """Shapes only, as the SC-SDC dense twin is built."""
    with torch.device("meta"):
        return MODELS.get("cnn")(ModelConfig(name="cnn", width=width, **cfg), input_shape, 10, 0.0)


@pytest.mark.parametrize("input_shape,pools,spatial", [
    ((1, 28, 28), [True, True, False, False, False], (7, 7)),    # 28 → 14 → 7
    ((3, 32, 32), [True, True, False, False, False], (8, 8)),    # 32 → 16 → 8
    ((1, 8, 8), [True, True, False, False, False], (2, 2)),      # 8 → 4 → 2
    ((1, 3, 3), [True, False, False, False, False], (1, 1)),     # 3 → 1, then no pool
])
def test_only_the_first_two_blocks_pool(input_shape: tuple[int, ...], pools: list[bool],
                                        spatial: tuple[int, int]) -> None:
    model = _build(input_shape)
    assert [isinstance(b.pool, nn.MaxPool2d) for b in model.convs] == pools
    assert model.spatial_out == spatial
    assert model.head.linear.in_features == 16 * spatial[0] * spatial[1]  # 4w channels, w = 4
    assert model.head.linear.out_features == 32  # 8w
    assert model(torch.randn(3, *input_shape)).shape == (3, 10)


def test_head_holds_most_weights_at_the_papers_width() -> None:
    def shares(head: str) -> float:
        weights = {n: p.numel() for n, p in _meta(32, (1, 28, 28), head=head).named_parameters()
                   if p.dim() > 1}
        in_head = sum(v for n, v in weights.items() if n.startswith(("head.", "out.")))
        return in_head / sum(weights.values())

    convs = 9 * (1 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)  # 276,768
    flat_head = 128 * 7 * 7 * 256 + 256 * 10                           # 1,608,192
    assert shares("flatten") == pytest.approx(flat_head / (convs + flat_head), rel=1e-12)
    assert shares("flatten") > 0.85
    assert shares("gap") == pytest.approx(1280 / (convs + 1280), rel=1e-12)  # 0.46%


def test_parameter_names_in_order() -> None:
    names = [n for n, _ in _build(batchnorm=True, activation="prelu").named_parameters()]
    convs = [f"convs.{i}.{part}" for i in range(5)
             for part in ("conv.weight", "norm.weight", "norm.bias", "act.weight")]
    assert names == convs + ["head.linear.weight", "head.norm.weight", "head.norm.bias",
                             "head.act.weight", "out.weight", "out.bias"]
    assert list(prunable_parameters(_build())) == (
        [f"convs.{i}.conv.weight" for i in range(5)] + ["head.linear.weight", "out.weight"])


@pytest.mark.parametrize("bias,batchnorm,expected", [(True, False, True), (True, True, False),
                                                     (False, False, False)])
def test_head_bias_only_without_batchnorm(bias: bool, batchnorm: bool, expected: bool) -> None:
    model = _build(bias=bias, batchnorm=batchnorm)
    assert (model.head.linear.bias is not None) is expected
    assert (model.out.bias is not None) is bias


def test_forward_matches_a_hand_written_oracle() -> None:
    model = _build((1, 8, 8), width=3, skip=True).eval()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    p = dict(model.named_parameters())
    h = x
    for i in range(5):
        y = F.relu(F.conv2d(h, p[f"convs.{i}.conv.weight"], p[f"convs.{i}.conv.bias"], padding=1))
        if i in (2, 4):  # the residual blocks: equal channels 2w → 2w and 4w → 4w
            y = h + y
        h = F.max_pool2d(y, 2) if i in (0, 1) else y  # 8 → 4 → 2, then the map stays 2×2
    h = F.relu(F.linear(h.reshape(5, -1), p["head.linear.weight"], p["head.linear.bias"]))
    expected = F.linear(h, p["out.weight"], p["out.bias"])
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


def test_scsdc_counts_include_the_head() -> None:
    counts = same_capacity_counts(_build((1, 8, 8), width=13), _meta(5, (1, 8, 8), head="flatten"))
    # Dense twin: channels (5, 10, 10, 20, 20), map 20 × 2 × 2, hidden 40 units.
    assert counts["head.linear.weight"] == 40 * 20 * 2 * 2
    assert counts["out.weight"] == 10 * 40
    assert counts["convs.4.conv.weight"] == 20 * 20 * 9


def test_same_capacity_run_trains_and_keeps_masks(tmp_path: Path) -> None:
    cfg = build_config(digits({**FLAT, "width": 6, "batchnorm": True},
                              optim={"name": "adam", "lr": 0.01}, sparsity={"dense_width": 3}))
    res = run_experiment(cfg, tmp_path)
    final, mask = torch.load(res.run_dir / "final.pt", weights_only=True), \
        Mask.load(res.run_dir / "mask.pt")
    assert mask.active("head.linear.weight") == 24 * 12 * 2 * 2  # dense twin: 8·3 × 4·3·2·2
    assert mask.total("head.linear.weight") == 48 * 24 * 2 * 2
    for name in mask:
        assert torch.all(final[name][~mask[name]] == 0), name
    assert res.summary["kind"] == "sparse" and res.summary["epochs"] == 2
    assert res.summary["test_accuracy"] > 0.2  # it learns: 10 classes, chance is 0.1


@pytest.mark.parametrize("family", ["mlp", "wrn"])
def test_flatten_head_is_refused_outside_cnn(family: str) -> None:
    with pytest.raises(ValidationError, match="applies to model.name=cnn only"):
        ModelConfig(name=family, head="flatten")


def test_cli_refuses_flatten_on_an_mlp_in_one_line(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, tiny())
    code, _, err = _run(["train", str(cfg), "--out", str(tmp_path / "runs"),
                         "--set", "model.head=flatten"], capsys)
    _assert_one_line_error(code, err, "model.head='flatten' applies to model.name=cnn only")
    assert not (tmp_path / "runs").exists()


def test_default_head_leaves_run_ids_unchanged() -> None:
    base = digits({"name": "cnn", "width": 4})
    explicit = digits({"name": "cnn", "width": 4, "head": "gap"})
    assert config_id(build_config(base)) == config_id(build_config(explicit))
    assert config_id(build_config(base)) != config_id(build_config(digits(FLAT | {"width": 4})))


def test_the_example_config_is_the_papers_cnn_with_most_weights_in_the_head() -> None:
    from sparseflow.config.io import read_yaml

    path = Path(__file__).parents[1] / "configs" / "fashion_mnist_cnn_paper.yaml"
    cfg = build_config(read_yaml(path))
    assert (cfg.model.name, cfg.model.width, cfg.model.head) == ("cnn", 32, "flatten")
    counts = same_capacity_counts(_meta(32, (1, 28, 28), head="flatten", skip=True),
                                  _meta(cfg.sparsity.dense_width, (1, 28, 28), head="flatten",
                                        skip=True))
    assert counts["head.linear.weight"] == 64 * 32 * 7 * 7  # the twin: 8·8 units, 4·8 channels
    assert counts["head.linear.weight"] > sum(v for n, v in counts.items() if "convs" in n)

"""Pruning at initialization: snip, grasp and synflow scores against independent oracles, the
selection under per-layer and global budgets, layer collapse, and the draw → mask → scale order."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.config import build_config
from sparseflow.config.schema import PaiConfig, SparsityConfig
from sparseflow.data import DataBundle
from sparseflow.data.bundle import Split
from sparseflow.errors import ConfigError
from sparseflow.models import build_model, fans
from sparseflow.registry import INITS, MASKERS
from sparseflow.sparsity import Budget, Mask, ScoreContext, draw_budget_mask, draw_mask, pai_synflow
from sparseflow.sparsity.pai_grasp import grasp_hg, grasp_scores
from sparseflow.sparsity.pai_snip import snip_scores
from sparseflow.sparsity.pai_synflow import (
    linearized_copy,
    synflow_densities,
    synflow_masker,
    synflow_scores,
)
from sparseflow.sparsity.scoring import scoring_batches
from sparseflow.sparsity.selection import keep_top, select
from sparseflow.train import build_run, run_experiment
from sparseflow.train.build import build_mask, dense_twin
from sparseflow.train.seeding import make_generators

from tests.conftest import tiny

SCORE_MASKERS = ["snip", "grasp", "synflow"]


def _register(monkeypatch, name: str, fn, **meta: object) -> None:
    """Register a test masker for one test only (the registry is restored afterwards)."""
    monkeypatch.setitem(MASKERS._items, name, fn)
    monkeypatch.setitem(MASKERS._meta, name, dict(meta))


# Fixtures: tiny models and data ------------------------------------------------------------
def _bundle(input_shape: tuple[int, ...], n: int = 40, classes: int = 3,
            seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *input_shape), generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    split = Split(x, y)
    return DataBundle(name="synthetic", train=split, val=split, test=split, num_classes=classes,
                      input_shape=input_shape)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # tests may use the global RNG; the library never does
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),
                         nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))


def _names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]


def _budget(model: nn.Module, density: float = 0.3, global_: bool = False,
            dense: tuple[str, ...] = ()) -> Budget:
    sizes = {n: p.numel() for n, p in model.named_parameters() if n in _names(model)}
    if global_:
        return Budget(sizes=sizes, total=round(density * sum(sizes.values())), dense=dense)
    return Budget.per_layer(sizes, {n: max(1, round(density * s)) for n, s in sizes.items()})


def _ctx(model: nn.Module, data: DataBundle, budget: Budget | None = None, seed: int = 1,
         **pai: object) -> ScoreContext:
    return ScoreContext(model=model, budget=budget or _budget(model), data=data,
                        input_shape=data.input_shape, pai=PaiConfig(**pai), batch_size=8,
                        generator=torch.Generator().manual_seed(seed),
                        device=torch.device("cpu"))


def _batches(data: DataBundle, seed: int, batches: int, bs: int = 8) -> list:
    """The scoring batches, recomputed here: one permutation from the mask generator."""
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
    return [(data.train.x[order[i * bs:(i + 1) * bs]], data.train.y[order[i * bs:(i + 1) * bs]])
            for i in range(batches)]


# SNIP ---------------------------------------------------------------------------------------
def test_snip_score_is_abs_weight_times_summed_gradient() -> None:
    model, data = _mlp(), _bundle((6,))
    scores = snip_scores(_ctx(model, data, batches=3))
    names = _names(model)
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(params[n]) for n in names}
    for x, y in _batches(data, 1, 3):
        loss = F.cross_entropy(model(x), y)
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names]),
                        strict=True):
            total[n] += g
    for n in names:
        torch.testing.assert_close(scores[n], (params[n].detach() * total[n]).abs())


def test_scoring_batches_come_from_the_mask_generator_without_replacement() -> None:
    data = _bundle((6,), n=20)
    ctx = _ctx(_mlp(), data, batches=3)
    got = list(scoring_batches(ctx))
    assert [len(x) for x, _ in got] == [8, 8, 8]
    # 20 examples: the first 16 are one permutation's start, the rest a fresh permutation.
    g = torch.Generator().manual_seed(1)
    first, second = torch.randperm(20, generator=g), torch.randperm(20, generator=g)
    idx = torch.cat([first, second[:4]])
    assert torch.equal(torch.cat([x for x, _ in got]), data.train.x[idx])
    assert len(set(first[:16].tolist())) == 16


# GraSP --------------------------------------------------------------------------------------
def test_grasp_hg_equals_autograd_hvp() -> None:
    model, data = _mlp(), _bundle((6,))
    theta, hg = grasp_hg(_ctx(model, data, batches=2, temperature=200.0))
    names = _names(model)
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    batches = _batches(data, 1, 2)

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        ws = dict(zip(names, [t.reshape(s) for t, s in zip(flat.split(sizes), shapes,
                                                             strict=True)], strict=True))
        return sum(F.cross_entropy(torch.func.functional_call(model, ws, (x,)) / 200.0, y)
                   for x, y in batches)

    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    w = flat.clone().requires_grad_(True)
    g = torch.autograd.grad(loss_of(w), w)[0]  # Σ_b ∇L_b
    _, hv = torch.autograd.functional.hvp(loss_of, flat, g)
    expected = dict(zip(names, [t.reshape(s) for t, s in zip(hv.split(sizes), shapes,
                                                             strict=True)], strict=True))
    for n in names:
        torch.testing.assert_close(hg[n], expected[n], rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(theta[n], params[n].detach())


def test_grasp_keeps_the_largest_theta_hg_per_layer() -> None:
    model, data = _mlp(), _bundle((6,))
    budget = _budget(model, 0.4)
    theta, hg = grasp_hg(_ctx(model, data, budget))  # Hg checked against hvp above
    scores = {n: theta[n] * hg[n] for n in theta}
    assert all(torch.equal(scores[n], s) for n, s in grasp_scores(_ctx(model, data,
                                                                       budget)).items())
    mask = MASKERS.get("grasp")(_ctx(model, data, budget))
    for n in mask:
        kept, dropped = scores[n][mask[n]], scores[n][~mask[n]]
        assert mask.active(n) == budget.counts[n]
        assert kept.min() >= dropped.max()  # the lowest θ⊙Hg are removed


# SynFlow ------------------------------------------------------------------------------------
def test_synflow_score_by_hand_on_a_two_layer_linear_net() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    data = _bundle((3,))
    lin = linearized_copy(_ctx(model, data, _budget(model), double=True))
    scores = synflow_scores(lin, ["0.weight", "1.weight"], (3,))
    w1, w2 = model[0].weight.detach().double().abs(), model[1].weight.detach().double().abs()
    # R = 1ᵀ|W2||W1|1: ∂R/∂|W1|_ij = Σ_k |W2|_ki, ∂R/∂|W2|_ki = Σ_j |W1|_ij.
    torch.testing.assert_close(scores["0.weight"], w1 * w2.sum(0)[:, None])
    torch.testing.assert_close(scores["1.weight"], w2 * w1.sum(1)[None, :])
    assert scores["0.weight"].dtype == torch.float64
    # With a mask from an earlier round: pruned weights drop out of R and score −∞.
    keep = {"0.weight": torch.rand(4, 3, generator=torch.Generator().manual_seed(0)) > 0.4,
            "1.weight": torch.ones(2, 4, dtype=torch.bool)}
    masked = synflow_scores(lin, ["0.weight", "1.weight"], (3,), keep)
    w1m = w1 * keep["0.weight"]
    assert torch.all(masked["0.weight"][~keep["0.weight"]] == float("-inf"))
    torch.testing.assert_close(masked["0.weight"][keep["0.weight"]],
                               (w1m * w2.sum(0)[:, None])[keep["0.weight"]])
    torch.testing.assert_close(masked["1.weight"], w2 * w1m.sum(1)[None, :])


def test_synflow_density_schedules_by_hand() -> None:
    assert synflow_densities(0.01, 4) == pytest.approx([0.01 ** 0.25, 0.1, 0.01 ** 0.75, 0.01])
    assert synflow_densities(0.2, 4, "linear") == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert synflow_densities(0.5, 1) == [0.5]


@pytest.mark.parametrize("global_", [False, True])
def test_synflow_rounds_follow_the_schedule_and_never_revive(monkeypatch, global_: bool) -> None:
    model, data = _mlp(), _bundle((6,))
    budget = _budget(model, 0.1, global_=global_)
    seen: list[Mask] = []

    def spy(*args, **kw):
        m = select(*args, **kw)
        seen.append(m)
        return m

    monkeypatch.setattr(pai_synflow, "select", spy)
    mask = synflow_masker(_ctx(model, data, budget, rounds=5))
    assert len(seen) == 5
    for prev, cur in zip(seen, seen[1:], strict=False):
        for n in cur:
            assert not torch.any(cur[n] & ~prev[n])  # pruned stay pruned
    if global_:
        size = sum(budget.sizes.values())
        expect = [round(d * size) for d in synflow_densities(budget.total / size, 5)]
        expect[-1] = budget.total
        assert [m.active() for m in seen] == expect
        assert mask.active() == budget.total
    else:
        for n, c in budget.counts.items():
            dens = synflow_densities(c / budget.sizes[n], 5)
            expect = [max(c, round(d * budget.sizes[n])) for d in dens[:-1]] + [c]
            assert [m.active(n) for m in seen] == expect


def test_synflow_with_batchnorm_scores_in_eval_mode() -> None:
    model, data = _cnn(), _bundle((1, 6, 6))
    model.train()
    with torch.no_grad():  # running stats unlike a fresh BN: eval mode must read them
        model[1].running_var.fill_(4.0)
    lin = linearized_copy(_ctx(model, data))
    assert not lin.training and not lin[1].training
    scores = synflow_scores(lin, _names(model), (1, 6, 6))
    # Oracle: the same |θ| network in eval mode, float64, by plain autograd.
    ref = _cnn().double().eval()
    ref.load_state_dict({k: v.double().abs() if v.is_floating_point() else v
                         for k, v in model.state_dict().items()})
    ref(torch.ones(1, 1, 6, 6, dtype=torch.float64)).sum().backward()
    for n, p in ref.named_parameters():
        if n in scores:
            torch.testing.assert_close(scores[n], (p * p.grad).abs().detach())


# Every score masker: invariants on models and budgets -------------------------------------------
@pytest.mark.parametrize("masker", SCORE_MASKERS)
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("global_", [False, True])
def test_exact_budget_model_unchanged_and_deterministic(masker: str, arch: str,
                                                        global_: bool) -> None:
    model = _mlp() if arch == "mlp" else _cnn()
    data = _bundle((6,)) if arch == "mlp" else _bundle((1, 6, 6))
    model.train()
    model(data.train.x[:4])  # a BN model with non-trivial running stats
    before = {k: v.clone() for k, v in model.state_dict().items()}
    budget = _budget(model, 0.35, global_=global_)
    ctx = _ctx(model, data, budget, rounds=4)
    mask = MASKERS.get(masker)(ctx)
    if global_:
        assert mask.active() == budget.total
    else:
        assert {n: mask.active(n) for n in mask} == dict(budget.counts)
    # The model is left exactly as it was: weights, BN stats, mode, no gradients.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    again = MASKERS.get(masker)(_ctx(model, data, budget, rounds=4))
    assert all(torch.equal(mask[n], again[n]) for n in mask)  # same seed → same mask


def test_global_budget_with_a_dense_first_layer() -> None:
    model, data = _mlp(), _bundle((6,))
    budget = _budget(model, 0.5, global_=True, dense=("0.weight",))
    for masker in SCORE_MASKERS:
        mask = MASKERS.get(masker)(_ctx(model, data, budget, rounds=3))
        assert mask.density("0.weight") == 1.0
        assert mask.active() == budget.total


def test_static_maskers_under_a_global_budget() -> None:
    model = _mlp()
    params = {n: p.detach() for n, p in model.named_parameters() if n in _names(model)}
    budget = _budget(model, 0.3, global_=True)
    rnd = draw_budget_mask("random", params, budget, torch.Generator().manual_seed(0))
    assert rnd.active() == budget.total
    mag = draw_budget_mask("magnitude", params, budget, torch.Generator())
    flat = torch.cat([params[n].abs().reshape(-1) for n in params])
    expected = keep_top(flat, budget.total)
    assert torch.equal(torch.cat([mag[n].reshape(-1) for n in params]), expected)
    gm = draw_mask("global_magnitude", params, dict(_budget(model, 0.3).counts),
                   torch.Generator())
    assert gm.active() == _budget(model, 0.3).total
    # Uniform over all weights: each layer's density near the total's, over many draws.
    shares = torch.zeros(3)
    for s in range(200):
        m = draw_budget_mask("random", params, budget, torch.Generator().manual_seed(s))
        shares += torch.tensor([m.density(n) for n in params])
    assert torch.allclose(shares / 200, torch.full((3,), budget.total / sum(budget.sizes.values())),
                          atol=0.03)


def test_a_per_layer_masker_cannot_choose_global_densities(monkeypatch) -> None:
    def _only(params, counts, generator):  # pragma: no cover - never reached
        """A per-layer masker (test)."""
        raise AssertionError

    _register(monkeypatch, "test_per_layer_only", _only)

    model = _mlp()
    params = {n: p.detach() for n, p in model.named_parameters() if n in _names(model)}
    with pytest.raises(ConfigError, match="cannot choose the layer densities"):
        draw_budget_mask("test_per_layer_only", params, _budget(model, 0.3, True),
                         torch.Generator())


# Layer collapse -----------------------------------------------------------------------------
def _collapsing_model() -> nn.Module:
    model = _mlp()
    with torch.no_grad():
        model[4].weight.mul_(1e-6)  # global magnitude ranks the last layer last
    return model


def test_layer_collapse_error_names_the_layer_and_the_fix() -> None:
    cfg = SparsityConfig(masker="magnitude", density=0.3, distribution="global")
    with pytest.raises(ConfigError, match=r"'4.weight'.*sparsity.pai.collapse: warn"):
        build_mask(cfg, _collapsing_model(), torch.Generator())


def test_layer_collapse_warn_trains_and_the_summary_lists_the_layers(tmp_path,
                                                                     monkeypatch) -> None:
    cfg = SparsityConfig(masker="magnitude", density=0.3, distribution="global",
                         pai={"collapse": "warn"})
    with pytest.warns(RuntimeWarning, match="'4.weight'"):
        mask = build_mask(cfg, _collapsing_model(), torch.Generator())
    assert mask.active("4.weight") == 0

    def _collapse(ctx: ScoreContext) -> Mask:
        """Keeps nothing in the output layer (test)."""
        return Mask({n: torch.ones(s, dtype=torch.bool) if n != "out.weight" else
                     torch.zeros(s, dtype=torch.bool) for n, s in
                     ((n, p.shape) for n, p in ctx.model.named_parameters()
                      if n in ctx.budget.sizes)})

    _register(monkeypatch, "test_collapse", _collapse, kind="score")
    exp = build_config(tiny(sparsity={"masker": "test_collapse", "density": 0.5,
                                      "pai": {"collapse": "warn"}}, train={"epochs": 1}))
    with pytest.warns(RuntimeWarning, match="'out.weight'"):
        res = run_experiment(exp, tmp_path)
    assert res.summary["collapsed_layers"] == ["out.weight"]
    assert res.summary["layer_densities"]["out.weight"] == 0.0
    bad = build_config(tiny(sparsity={"masker": "test_collapse", "density": 0.5}))
    with pytest.raises(ConfigError, match="layer collapse"):
        run_experiment(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


# Runs: order of initialization, streams, vectorized groups, the pair table ----------------------
def _old_policy(policy: str, weight: torch.Tensor, keep: torch.Tensor, init: str,
                gen: torch.Generator, dense_fans) -> None:
    """The init policies as they were before the draw/scale split (mask first, then redraw)."""
    fn = INITS.get(init)
    if policy == "dense":
        fn(weight, fan_in=dense_fans[0], fan_out=dense_fans[1], generator=gen)
        weight.masked_fill_(~keep, 0.0)
    elif policy == "sparse_fanin":
        from sparseflow.models import init_std
        out_units, in_units = weight.shape[0], weight.shape[1]
        active_in = keep.reshape(out_units, -1).sum(dim=1)
        f_out = max(1, round(int(active_in.sum()) / in_units))
        own_in, own_out = fans(weight)
        fn(weight, fan_in=own_in, fan_out=own_out, generator=gen)
        drawn = init_std(init, own_in, own_out)
        target = torch.zeros(out_units, dtype=torch.float64)
        for a in torch.unique(active_in).tolist():
            if a > 0:
                target[active_in == a] = init_std(init, int(a), f_out)
        weight.mul_((target / drawn).to(weight.dtype).view(out_units, *([1] * (weight.dim()
                                                                              - 1))))
        weight.masked_fill_(~keep, 0.0)
    elif policy == "layer_scaled":
        fn(weight, fan_in=fans(weight)[0], fan_out=fans(weight)[1], generator=gen)
        weight.masked_fill_(~keep, 0.0)
        weight.mul_(1.0 / math.sqrt(int(keep.sum()) / weight.numel()))
    else:
        weight.masked_fill_(~keep, 0.0)


@pytest.mark.parametrize("policy", ["dense", "sparse_fanin", "layer_scaled", "standard"])
def test_random_masker_runs_are_bitwise_the_old_order(policy: str) -> None:
    cfg = build_config(tiny(sparsity={"dense_width": 12, "init": policy}, seed=5))
    built = build_run(cfg)
    # The old order: model, mask (mask stream only), then the policy redraws the active weights.
    gens = make_generators(5)
    model = build_model(cfg.model, built.data.input_shape, built.data.num_classes,
                        dropout=cfg.regularization.dropout, generator=gens["init"])
    twin = dense_twin(cfg, built.data.input_shape, built.data.num_classes)
    tw = dict(twin.named_parameters())
    names = list(built.mask)
    counts = {n: tw[n].numel() for n in names}
    params = dict(model.named_parameters())
    old_mask = draw_mask("random", {n: params[n].detach() for n in names}, counts, gens["mask"])
    with torch.no_grad():
        for n in names:
            _old_policy(policy, params[n], old_mask[n], cfg.model.init, gens["init"],
                        fans(tw[n]))
    assert all(torch.equal(old_mask[n], built.mask[n]) for n in names)
    new = built.state.model.state_dict()
    assert all(torch.equal(v, new[k]) for k, v in model.state_dict().items())
    assert torch.equal(gens["init"].get_state(), built.state.generators["init"].get_state())


def test_magnitude_ranks_the_weights_that_are_trained() -> None:
    cfg = build_config(tiny(sparsity={"dense_width": 12, "masker": "magnitude"}, seed=2))
    built = build_run(cfg)
    for n, keep in built.mask.items():
        w = dict(built.state.model.named_parameters())[n].detach()
        # dense policy: the active weights are the drawn ones unscaled, and they are the
        # largest of the drawn tensor: every kept |w| is at least every other drawn value's.
        assert torch.all(w[~keep] == 0)
    gens = make_generators(2)
    model = build_model(cfg.model, built.data.input_shape, built.data.num_classes,
                        generator=gens["init"])
    from sparseflow.train.build import draw_initial_weights
    twin = dense_twin(cfg, built.data.input_shape, built.data.num_classes)
    draw_initial_weights(cfg, model, twin, gens["init"])
    params = dict(model.named_parameters())
    final = dict(built.state.model.named_parameters())
    for n, keep in built.mask.items():
        drawn = params[n].detach()
        assert torch.equal(keep, keep_top(drawn.abs(), keep.sum().item()))
        assert torch.equal(final[n].detach()[keep], drawn[keep])


@pytest.mark.parametrize("masker", SCORE_MASKERS)
def test_scoring_leaves_every_other_stream_untouched(masker: str) -> None:
    sections = {"sparsity": {"density": 0.2, "masker": masker, "pai": {"rounds": 3}},
                "regularization": {"dropout": 0.1}, "seed": 4}
    built = build_run(build_config(tiny(**sections)))
    ref = build_run(build_config(tiny(**{**sections, "sparsity": {"density": 0.2}})))
    for stream, g in built.state.generators.items():
        if stream != "mask":
            assert torch.equal(g.get_state(), ref.state.generators[stream].get_state()), stream
    dense = build_run(build_config(tiny(seed=4, regularization={"dropout": 0.1})))
    assert torch.equal(built.state.generators["data"].get_state(),
                       dense.state.generators["data"].get_state())
    assert all(p.grad is None for p in built.state.model.parameters())


def test_snip_mask_is_the_same_in_a_vectorized_group_and_alone(tmp_path) -> None:
    from sparseflow.train.vectorized import run_group

    cfgs = [build_config(tiny(sparsity={"density": 0.2, "masker": "snip"}, seed=s,
                              train={"epochs": 1})) for s in range(2)]
    grouped = run_group(cfgs, tmp_path / "g")
    for cfg, g in zip(cfgs, grouped, strict=True):
        alone = run_experiment(cfg, tmp_path / "s")
        mg, ma = Mask.load(g.run_dir / "mask.pt"), Mask.load(alone.run_dir / "mask.pt")
        assert all(torch.equal(mg[n], ma[n]) for n in ma)
        assert g.summary["layer_densities"] == alone.summary["layer_densities"]
        assert g.summary["vectorized_group"] == 2
        assert abs(g.summary["test_accuracy"] - alone.summary["test_accuracy"]) <= 0.005


def test_pair_table_shows_the_profile_snip_chose(capsys) -> None:
    from tests.test_cli import _run

    args = ["pair", "--sparse-width", "32", "--dense-width", "8", "--set",
            "sparsity.masker=snip", "--set", "sparsity.matching=total", "--set",
            "sparsity.distribution=global", "--set", "data.num_samples=600", "--json"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    data = json.loads(out)
    from sparseflow.config import load_config

    sets = [a for a in args[6:-1] if a != "--set"]
    cfg = load_config(None, [*sets, "model.width=32", "sparsity.dense_width=8"])
    built = build_run(cfg)
    rows = {r["name"]: r["active"] for r in data["layers"]}
    assert rows == {n: built.mask.active(n) for n in built.mask}
    assert data["totals"]["sparse_active"] == data["totals"]["dense_weights"]
    uniform = {n: r["density"] for n, r in ((r["name"], r) for r in data["layers"])}
    assert len({round(d, 6) for d in uniform.values()}) > 1  # snip chose unequal densities


def test_warnings_are_not_raised_without_collapse() -> None:
    cfg = build_config(tiny(sparsity={"density": 0.3, "masker": "snip",
                                      "distribution": "global"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        built = build_run(cfg)
    assert built.mask.active() == round(0.3 * built.mask.total())


def _random_sparsity(rng: torch.Generator) -> dict:
    """One random PaI config: masker, budget source, distribution, first layer, pai settings."""
    pick = lambda xs: xs[int(torch.randint(len(xs), (1,), generator=rng))]  # noqa: E731
    sp: dict = {"masker": pick(["random", "magnitude", *SCORE_MASKERS]),
                "pai": {"rounds": pick([1, 3, 7]), "batches": pick([1, 2]),
                        "schedule": pick(["exponential", "linear"]), "collapse": "warn"}}
    if pick([True, False]):
        sp |= {"dense_width": pick([8, 16]), "matching": "total",
               "distribution": pick(["uniform", "er", "erk", "global"])}
    else:
        # The first layer holds about half the weights: it fits in these budgets only.
        sp |= {"density": pick([0.6, 0.7, 0.8]), "distribution": pick(["er", "erk", "global"]),
               "dense_first_layer": pick([True, False])}
    return sp


def test_invariants_on_a_random_sample_of_configs() -> None:
    rng = torch.Generator().manual_seed(2024)
    for _ in range(14):
        sp = _random_sparsity(rng)
        model = {"batchnorm": bool(torch.randint(2, (1,), generator=rng))}
        cfg = build_config(tiny(sparsity=sp, model=model, regularization={"dropout": 0.1}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # collapse: warn is allowed here
            built = build_run(cfg)
        mask, weights = built.mask, dict(built.state.model.named_parameters())
        names = list(mask)
        if "dense_width" in sp:
            twin = dense_twin(cfg, built.data.input_shape, built.data.num_classes)
            budget = sum(p.numel() for n, p in twin.named_parameters() if n in mask)
        else:
            budget = round(sp["density"] * mask.total())
        assert mask.active() == budget, sp  # the budget is conserved exactly
        if sp.get("dense_first_layer"):
            assert mask.density(names[0]) == 1.0, sp
        assert all(torch.all(weights[n].detach()[~mask[n]] == 0) for n in names), sp
        assert all(p.grad is None for p in built.state.model.parameters()), sp
        fresh = make_generators(cfg.seed)
        for stream in ("data", "dropout", "augment"):  # probe: drawn by the probe itself
            assert torch.equal(built.state.generators[stream].get_state(),
                               fresh[stream].get_state()), (sp, stream)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            again = build_run(cfg)
        assert all(torch.equal(mask[n], again.mask[n]) for n in names), sp


def test_a_dynamic_masker_starts_from_its_init_masker(monkeypatch) -> None:
    def _dynamic() -> None:  # pragma: no cover - never called here
        """A dynamic masker (test)."""

    _register(monkeypatch, "test_dynamic", _dynamic, kind="dynamic")
    cfg = SparsityConfig(masker="test_dynamic", density=0.3, distribution="global",
                         dst={"init_masker": "magnitude"})
    model = _mlp()
    mask = build_mask(cfg, model, torch.Generator())
    params = {n: p.detach() for n, p in model.named_parameters() if n in mask}
    expected = draw_budget_mask("magnitude", params, _budget(model, 0.3, True), torch.Generator())
    assert all(torch.equal(mask[n], expected[n]) for n in mask)
    # A dynamic initial masker is refused where the config is built.
    with pytest.raises(ValueError, match="init_masker 'test_dynamic' is dynamic"):
        SparsityConfig(masker="test_dynamic", density=0.3, dst={"init_masker": "test_dynamic"})

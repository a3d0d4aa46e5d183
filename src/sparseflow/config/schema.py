"""The experiment configuration: one frozen model per component kind.

Every field carries its help text (the README's config reference is generated from it) and is
validated at construction. Defaults never change meaning: a new field gets a default that
reproduces the old behaviour, so run ids of old configs survive (see :mod:`.identity`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from sparseflow.config.base import FrozenConfig, registered


def _name_of(kind: str) -> AfterValidator:
    return AfterValidator(lambda v: registered(kind, v))


DatasetName = Annotated[str, _name_of("datasets")]
ModelName = Annotated[str, _name_of("models")]
ActivationName = Annotated[str, _name_of("activations")]
InitName = Annotated[str, _name_of("inits")]
MaskerName = Annotated[str, _name_of("maskers")]
OptimizerName = Annotated[str, _name_of("optimizers")]
ScheduleName = Annotated[str, _name_of("schedules")]


class DataConfig(FrozenConfig):
    """Which dataset, how it is split, normalized and augmented."""

    name: DatasetName = Field(
        "mnist1d", description="Dataset name (`sparseflow list datasets`)."
    )
    root: str | None = Field(
        None,
        description="Folder holding the dataset files; None searches $SPARSEFLOW_DATA, the "
        "user data dir and the system dataset folders.",
    )
    num_samples: int = Field(
        5000, gt=0, description="mnist1d only: samples generated (80% train, 20% test)."
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of the training split held out for validation."
    )
    split_seed: int = Field(
        0, description="Seed of the train/validation split (fixed across run seeds)."
    )
    train_subset: int | None = Field(
        None, gt=0, description="Keep only this many training examples (after the split)."
    )
    normalize: bool = Field(
        True, description="Standardize inputs per channel with training-split statistics."
    )
    augment: bool = Field(
        False,
        description="Batched, seeded augmentation of training batches: random crop with "
        "padding (+ horizontal flip where the dataset allows) for images, random shift for "
        "mnist1d.",
    )
    aug_pad: int | None = Field(
        None, ge=0, description="Crop padding / maximum shift in pixels; None = dataset default."
    )
    aug_flip: bool | None = Field(
        None, description="Random horizontal flip; None = dataset default (off for digits)."
    )



class ModelConfig(FrozenConfig):
    """A width-parametrized model family."""

    name: ModelName = Field("mlp", description="Model family (`sparseflow list models`).")
    width: int = Field(
        128, gt=0, description="Width, the SC-SDC knob: units per hidden layer (mlp); channels "
        "of the first conv layer (cnn; 32 = the paper's CNN); channels of the first stage "
        "(wrn: 16·k for WRN-d-k); inner width of the first bottleneck stage (wrn50: 128 = "
        "WRN-50-2)."
    )
    hidden_layers: int = Field(2, ge=1, description="Number of hidden layers (MLP).")
    depth: int | None = Field(
        None, ge=1, description="wrn: depth d of WRN-d-k (d = 6n + 4); None = the family default."
    )
    activation: ActivationName = Field(
        "relu", description="Activation (`sparseflow list activations`)."
    )
    batchnorm: bool | None = Field(
        None, description="BatchNorm after each hidden linear/conv layer; None = the family's "
        "default (off for mlp and cnn; wrn and wrn50 always have it)."
    )
    skip: bool | None = Field(
        None, description="Residual additions where a block's input and output shapes match "
        "(mlp: every hidden layer but the first; cnn: conv blocks 2 and 4); None = the family's "
        "default (off for mlp and cnn; wrn and wrn50 are residual by definition)."
    )
    init: InitName = Field(
        "kaiming_normal", description="Weight initialization (`sparseflow list inits`)."
    )
    bias: bool = Field(
        True, description="Layers have biases (initialized to zero); a layer followed by "
        "BatchNorm has none (BN's shift replaces it)."
    )
    head: Literal["gap", "flatten"] = Field(
        "gap", description="cnn only: `gap` = global average pool → linear (the classifier is "
        "the smallest layer); `flatten` = the paper's CNN example: only the first two blocks "
        "pool, the map is flattened into a hidden linear layer of 8·width units, then the "
        "classifier (85% of the weights at width 32 on 28×28)."
    )

    @model_validator(mode="after")
    def _head_is_cnn_only(self) -> ModelConfig:
        if self.head != "gap" and self.name != "cnn":
            raise ValueError(f"model.head={self.head!r} applies to model.name=cnn only (got "
                             f"model.name={self.name!r}); remove model.head")
        return self


class PaiConfig(FrozenConfig):
    """Pruning at initialization: how the score-based maskers (snip, grasp, synflow) score."""

    batches: int = Field(
        1, ge=1, description="snip/grasp: training mini-batches whose gradients are summed "
        "(the references: 1 for SNIP, the port accumulates several)."
    )
    batch_size: int | None = Field(
        None, ge=1, description="snip/grasp: examples per scoring batch; None = train.batch_size."
    )
    temperature: float = Field(
        200.0, gt=0.0, description="grasp: logits are divided by this temperature (the "
        "reference: 200)."
    )
    rounds: int = Field(
        100, ge=1, description="synflow: pruning rounds, density d_k = d^((k+1)/rounds) "
        "(exponential schedule; the paper: 100)."
    )
    schedule: Literal["exponential", "linear"] = Field(
        "exponential", description="synflow: how the density shrinks over the rounds."
    )
    double: bool = Field(
        True, description="synflow: score in float64 (the reference's advice at high "
        "compression: the product of |w| over depth underflows float32)."
    )
    collapse: Literal["error", "warn"] = Field(
        "error", description="What a chosen mask with a layer of no active weight (layer "
        "collapse, possible with distribution=global) does: error stops before training; warn "
        "trains anyway and records the collapsed layers in the summary."
    )


class DstConfig(FrozenConfig):
    """Dynamic sparse training (sparsity.masker set or rigl): how the mask changes in training.

    At optimizer step t the mask is updated when start_step ≤ t ≤ end step and t − last
    update ≥ update_every, the last update starting at −update_every (the rigl reference: the
    first update at start_step, then every update_every steps); each layer drops its active
    weights of smallest magnitude and grows as many inactive ones.
    """

    init_masker: MaskerName = Field(
        "random", description="How the initial mask is drawn (a static masker)."
    )
    update_every: int = Field(100, ge=1, description="ΔT: optimizer steps between mask "
                              "updates (a skipped update batch is no step).")
    start_step: int = Field(0, ge=0, description="The first update, at this optimizer step.")
    end_fraction: float = Field(
        0.75, gt=0.0, le=1.0, description="No update after this fraction of the run's "
        "training steps (the references: 0.75)."
    )
    drop_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="Fraction of each layer's active weights dropped "
        "(and regrown) at the first update."
    )
    drop_schedule: Literal["cosine", "constant", "linear"] = Field(
        "cosine", description="How the drop fraction decays to 0 at the end step (the "
        "references: cosine)."
    )
    skip_update: bool = Field(
        True, description="On a mask-update step the optimizer does not step (the rigl "
        "reference); false applies the batch's update to the new mask too."
    )
    measure: bool = Field(
        True, description="With gradflow enabled: EGF on the probe set just before and just "
        "after every mask update (stored per run; costs two probe passes per update)."
    )

    @field_validator("init_masker")
    @classmethod
    def _static_init(cls, v: str) -> str:
        from sparseflow.registry import MASKERS

        if MASKERS.meta(v).get("kind") == "dynamic":
            raise ValueError(f"sparsity.dst.init_masker {v!r} is dynamic; the initial mask needs "
                             "a static masker (e.g. random, magnitude)")
        return v


class SparsityConfig(FrozenConfig):
    """The mask of a sparse run: drawn at initialization, changed in training by dynamic
    maskers.

    A run is sparse when ``density < 1``, per-layer densities/counts are given, or
    ``dense_width`` names its same-capacity dense twin (SC-SDC); otherwise it is dense.
    """

    masker: MaskerName = Field(
        "random", description="How the mask is chosen (`sparseflow list maskers`): static "
        "(random, magnitude), scored at initialization (snip, grasp, synflow; see pai) or "
        "dynamic (set, rigl; see dst)."
    )
    density: float = Field(
        1.0, gt=0.0, le=1.0, description="Fraction of each prunable weight kept, in (0, 1]."
    )
    layer_densities: dict[str, float] | None = Field(
        None, description="Per-layer density overriding `density` (parameter name → density)."
    )
    layer_counts: dict[str, int] | None = Field(
        None, description="Exact active weights per layer (parameter name → count)."
    )
    dense_width: int | None = Field(
        None, gt=0, description="SC-SDC: width of the same-capacity dense twin; each sparse "
        "layer keeps exactly the twin's weight count (see `matching`)."
    )
    matching: Literal["per_layer", "total"] = Field(
        "per_layer", description="SC-SDC capacity matching: per_layer (the paper) or total "
        "(one global budget spread by `distribution`)."
    )
    distribution: Literal["uniform", "er", "erk", "global"] = Field(
        "uniform", description="matching=total (or a global density): how the budget is "
        "spread over layers: uniform density, Erdős–Rényi (fan-in + fan-out), "
        "Erdős–Rényi-Kernel, or global (the masker's scores choose, ranked over all layers)."
    )
    dense_first_layer: bool = Field(
        False, description="matching=total (or a global density): the first prunable layer "
        "keeps all its weights; the rest share what is left of the budget."
    )
    init: Literal["auto", "standard", "dense", "sparse_fanin", "layer_scaled"] = Field(
        "auto", description="Init of the active weights: dense (the twin's distribution, the "
        "paper), sparse_fanin (Evci), layer_scaled (Liu), standard (own init); auto = dense "
        "with dense_width, else standard."
    )
    backend: Literal["masked", "sparse", "compact", "auto"] = Field(
        "masked", description="How masked Linear layers compute: masked (dense weights times "
        "the mask, every existing result), sparse (CSR kernels whose cost scales with the "
        "active weights; equal to masked up to float32 summation order), compact (sparse, and "
        "the optimizer trains a vector of the active weights: updates and state cost them "
        "too; static masks only), auto (for CPU Linear layers of density <= 10% and >= "
        "65,536 weights compact, or sparse when the mask changes in training; else masked). "
        "Convolutions stay masked; ignored by dense runs."
    )
    pai: PaiConfig = Field(default_factory=PaiConfig)
    dst: DstConfig = Field(default_factory=DstConfig)

    @field_validator("layer_densities")
    @classmethod
    def _densities_in_range(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for name, d in (v or {}).items():
            if not 0.0 < d <= 1.0:
                raise ValueError(f"density of layer {name!r} is {d}; set it in (0, 1]")
        return v

    @field_validator("layer_counts")
    @classmethod
    def _counts_positive(cls, v: dict[str, int] | None) -> dict[str, int] | None:
        for name, c in (v or {}).items():
            if c < 1:
                raise ValueError(f"count of layer {name!r} is {c}; set it to 1 or more")
        return v

    @model_validator(mode="after")
    def _one_source_of_counts(self) -> SparsityConfig:
        # density may be refined per layer (layer_densities or layer_counts override it for
        # the layers they name); dense_width fixes every count by itself.
        if self.layer_densities and self.layer_counts:
            raise ValueError("give sparsity.layer_densities or sparsity.layer_counts, not both; "
                             "remove one of them")
        others = [k for k in ("layer_densities", "layer_counts") if getattr(self, k)]
        if self.density < 1.0:
            others.insert(0, "density")
        if self.dense_width is not None and others:
            raise ValueError(f"sparsity.dense_width sets every layer's count; remove "
                             f"sparsity.{', sparsity.'.join(others)}")
        if self.init == "dense" and self.dense_width is None:
            raise ValueError("sparsity.init 'dense' draws from the dense twin's distribution; "
                             "set sparsity.dense_width too")
        self._check_budget_split()
        return self

    def _check_budget_split(self) -> None:
        """distribution/dense_first_layer need a budget to split: matching=total with
        dense_width, or one density without per-layer settings."""
        split = [f"sparsity.distribution={self.distribution}"] if (
            self.distribution != "uniform") else []
        if self.dense_first_layer:
            split.append("sparsity.dense_first_layer")
        if not split:
            return
        if self.dense_width is not None and self.matching == "per_layer":
            raise ValueError(f"{' and '.join(split)} spread one budget over the layers, but "
                             "matching=per_layer fixes every layer's count; set "
                             "sparsity.matching: total")
        if self.layer_densities or self.layer_counts:
            raise ValueError(f"{' and '.join(split)} cannot apply to per-layer densities or "
                             "counts; give one sparsity.density instead")

    @model_validator(mode="after")
    def _compact_needs_a_static_mask(self) -> SparsityConfig:
        # The compact layout keeps optimizer state per active weight: a mask that changes its
        # positions would leave that state without a home.
        if self.backend == "compact" and self.dynamic:
            raise ValueError(f"sparsity.backend compact keeps the active positions fixed, but "
                             f"masker {self.masker!r} changes them in training; use "
                             "sparsity.backend: sparse (or masked) for dynamic sparse training")
        return self

    @property
    def dynamic(self) -> bool:
        """True when the masker changes the mask during training (dynamic sparse training)."""
        from sparseflow.registry import MASKERS

        return MASKERS.meta(self.masker).get("kind") == "dynamic"

    @property
    def is_sparse(self) -> bool:
        """True when this config asks for a mask."""
        return (self.density < 1.0 or bool(self.layer_densities) or bool(self.layer_counts)
                or self.dense_width is not None)

    @property
    def effective_backend(self) -> str:
        """The backend in force: ``backend`` for a sparse run; ``masked`` for a dense one.

        A dense run has no masked layer for another backend to run, so it trains the same
        whichever backend is asked for. Run identity, grouping and building all read this, so
        a study's dense twins are the same runs under any backend of its sparse runs.
        """
        return self.backend if self.is_sparse else "masked"

    @property
    def init_policy(self) -> str:
        """The init policy in force ('auto' resolved)."""
        if self.init != "auto":
            return self.init
        return "dense" if self.dense_width is not None else "standard"


class ScheduleConfig(FrozenConfig):
    """Learning-rate schedule, evaluated every step as a function of the epoch (fractional)."""

    name: ScheduleName = Field("constant", description="Schedule (`sparseflow list schedules`).")
    warmup_epochs: float = Field(
        0.0, ge=0.0, description="Linear warmup from 0 over this many epochs (any schedule)."
    )
    step_size: int = Field(30, gt=0, description="step: epochs between decays.")
    gamma: float = Field(0.1, gt=0.0, description="step: decay factor.")
    min_factor: float = Field(0.0, ge=0.0, le=1.0, description="cosine: final lr / base lr.")



class OptimConfig(FrozenConfig):
    """Optimizer and its hyperparameters (unused ones are ignored by optimizers that lack them)."""

    name: OptimizerName = Field("sgd", description="Optimizer (`sparseflow list optimizers`).")
    lr: float = Field(0.01, gt=0.0, description="Base learning rate.")
    momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="Momentum; None = the optimizer's default (0.9 for "
        "momentum/nesterov, 0 for rmsprop)."
    )
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam/adamw: (β1, β2).")
    eps: float = Field(1e-8, gt=0.0, description="Denominator epsilon of adaptive optimizers.")
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="rmsprop: smoothing constant.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"betas {v} must each be in [0, 1); e.g. optim.betas=[0.9, 0.999]")
        return v


class RegularizationConfig(FrozenConfig):
    """Explicit regularizers. Normalization and skips live in the model config."""

    l2: float = Field(
        0.0, ge=0.0, description="Coupled L2: λ·w added to each weight's gradient (the paper's L2)."
    )
    weight_decay: float = Field(
        0.0, ge=0.0, description="Decoupled weight decay: w ← w − s·wd·w before each step, "
        "s as decay_scaling says."
    )
    decay_scaling: Literal["lr", "schedule"] = Field(
        "lr", description="The s of decoupled decay. lr: the current learning rate (torch's "
        "AdamW), so the shrink per step depends on the optimizer's rate; schedule: the "
        "learning-rate schedule's multiplier lr_t/lr_0 only (Loshchilov & Hutter's AdamW, "
        "Algorithm 2), so wd is the shrink per step whatever the rate, and one wd means the "
        "same decay for every optimizer of a study.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    l2_on_all: bool = Field(
        False, description="Apply L2/weight decay to biases and norm parameters too."
    )


class EarlyStoppingConfig(FrozenConfig):
    """'Train until convergence': stop when validation loss stops improving."""

    enabled: bool = Field(False, description="Stop early on validation loss.")
    patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Improvement smaller than this is none.")
    restore_best: bool = Field(True, description="Final weights are the best validation epoch's.")


class TrainConfig(FrozenConfig):
    """The training loop."""

    epochs: int = Field(20, ge=1, description="Epochs (the cap when early stopping is on).")
    batch_size: int = Field(128, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(2048, ge=1, description="Batch size for evaluation.")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Where to train.")
    drop_last: bool = Field(False, description="Drop the last incomplete training batch.")
    checkpoint_every: int = Field(
        1, ge=0, description="Epochs between checkpoints (resume points); 0 = none, so an "
        "interrupted run starts over."
    )
    threads: int = Field(
        1, ge=1, description="Intra-op CPU threads the run computes with, whatever torch's global "
        "setting: results are bitwise reproducible for a given value; another value is another "
        "computation (and run id)."
    )
    log: Literal["none", "tensorboard"] = Field(
        "none", description="tensorboard: also write a TensorBoard log to the run directory's "
        "tb/ (per-epoch losses/accuracies, gradient flow and per-layer norms at the probe "
        "points), to watch runs live. Observation only: not part of the run id."
    )
    eval_val: Literal["auto", "epoch", "end", "never"] = Field(
        "auto", description="When the per-epoch series evaluates the validation split: epoch "
        "= after every epoch; end = after the last epoch only; never = not in the series; auto "
        "= epoch with early stopping (it needs every epoch), else end. The summary's final "
        "train/val/test evaluation is always made. Observation only: not part of the run id."
    )
    eval_test: Literal["auto", "probes", "epoch", "end"] = Field(
        "auto", description="When the per-epoch series evaluates the test split: probes = at "
        "the gradient-flow probe epochs and after the last epoch (end without gradient flow); "
        "epoch = after every epoch; end = after the last epoch only; auto = probes. Observation "
        "only: not part of the run id."
    )

    @model_validator(mode="after")
    def _val_for_early_stopping(self) -> TrainConfig:
        if self.early_stopping.enabled and self.eval_val not in ("auto", "epoch"):
            raise ValueError(f"train.early_stopping reads the validation loss every epoch, but "
                             f"train.eval_val is {self.eval_val!r}; set train.eval_val=epoch "
                             "(or auto)")
        return self


class GradFlowConfig(FrozenConfig):
    """Gradient-flow measurement during training. Measuring never changes training."""

    enabled: bool = Field(True, description="Measure gradient flow (EGF and standard measures).")
    points: int = Field(
        11, ge=2, description="Probe points: before the first update, then evenly spaced "
        "epochs up to the last (the paper: 11)."
    )
    probe_set: Literal["fixed", "full", "batch"] = Field(
        "fixed", description="fixed: probe_size training examples drawn once per run; full: "
        "the whole training split; batch: the current training batch."
    )
    probe_size: int = Field(1000, gt=0, description="Examples in the fixed probe set.")
    include_all: bool = Field(
        False, description="Count biases and normalization parameters as layers too."
    )


class ExperimentConfig(FrozenConfig):
    """One training run: data, model, sparsity, optimizer, regularization, loop and seed.

    ``name`` and ``seed`` do not enter the run id: the name is a label and seeds are replicates.
    """

    name: str = Field("experiment", description="Label shown in outputs (not part of the id).")
    seed: int = Field(0, ge=0, description="Replicate seed (not part of the id).")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    sparsity: SparsityConfig = Field(default_factory=SparsityConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    gradflow: GradFlowConfig = Field(default_factory=GradFlowConfig)

    @property
    def kind(self) -> str:
        """'sparse' or 'dense'."""
        return "sparse" if self.sparsity.is_sparse else "dense"

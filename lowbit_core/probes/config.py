"""Typed configuration of the one-layer budget probes (the ``probe`` family).

A sweep states only what differs from these defaults, as dotted keys (``"multi.optimizer"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from lowbit_core.config import ConfigError
from lowbit_core.quant import estimator_registry


@dataclass(frozen=True)
class DataConfig:
    """The fixed probe batch.

    ``teacher``: synthetic teacher-student classification (no download), see
    :mod:`lowbit_core.data.teacher`. ``mnist``: torchvision's MNIST files under ``root``.
    """

    name: Literal["teacher", "mnist"] = "teacher"
    root: str = "data"
    batch_size: int = 1024
    n_features: int = 64
    n_classes: int = 10
    teacher_hidden: int = 32

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.n_features < 1 or self.n_classes < 2 or self.teacher_hidden < 1:
            raise ConfigError("data.n_features >= 1, data.n_classes >= 2 and data.teacher_hidden >= 1 are required")


@dataclass(frozen=True)
class ModelConfig:
    """Toy MLP: ``fp`` (float weights, exact gradient) or ``binary`` (sign of latent weights)."""

    kind: Literal["fp", "binary"] = "binary"
    hidden: tuple[int, ...] = (128, 128)
    pretrain_steps: int = 200
    pretrain_lr: float = 1e-3
    pretrain_batch: int = 256

    def __post_init__(self):
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"model.hidden must be a non-empty tuple of positive ints, got {self.hidden}")
        if self.pretrain_steps < 0 or self.pretrain_lr <= 0 or self.pretrain_batch < 1:
            raise ConfigError("model.pretrain_steps >= 0, model.pretrain_lr > 0, model.pretrain_batch >= 1 are required")


OWN_FIELDS = ("clip", "window")
"""Estimator parameters with a field of their own in :class:`EstimatorConfig` (the built-ins'); any
other estimator's parameter is ``estimator.param``."""


@dataclass(frozen=True)
class EstimatorConfig:
    """Backward estimator of sign(w) (ignored by the FP model, whose gradient is exact).

    ``name``: a key of :data:`lowbit_core.quant.estimator_registry.REGISTRY` (nSTE, the two vSTE
    readings, ApproxSign, EDE); ``clip`` / ``window``: the parameters of the estimators that take one
    (the registry's ``param`` names), defaulting to the registry's defaults.
    """

    name: estimator_registry.EstimatorName = "identity"
    clip: float = estimator_registry.get("value_clip").default
    window: float = estimator_registry.get("window").default
    param: float = 0.0
    """The parameter of a plug-in estimator (one registered with
    :func:`~lowbit_core.quant.estimator_registry.register_estimator`, whose parameter has no field of
    its own here); 0 takes the estimator's default."""

    def param_value(self):
        """The chosen estimator's parameter value (None when it takes none)."""
        entry = estimator_registry.get(self.name)
        if entry.param is None:
            return None
        if entry.param in OWN_FIELDS:
            return getattr(self, entry.param)
        return self.param or entry.default

    def __post_init__(self):
        if self.clip <= 0 or self.window <= 0 or self.param < 0:
            raise ConfigError(f"estimator.clip and estimator.window must be > 0 and estimator.param >= 0, got "
                              f"{self.clip}, {self.window}, {self.param}")


@dataclass(frozen=True)
class BudgetConfig:
    """L-infinity box ``|w - w0| <= epsilon`` around the start, on layer ``layer`` only.

    ``fwd_equiv_per_weight``: a cap on every method's cost in forward-pass equivalents (``fwd_equiv =
    loss_evals + 2 * grad_evals``: a backward pass costs two forward passes, Kaplan et al. 2020;
    :mod:`lowbit_core.probes.evals`), ``ceil(fwd_equiv_per_weight * weights of the layer)``, so that
    gradient and gradient-free methods compare at equal compute; a method stops before the step that
    would exceed it (its start, step 0, is always reported). 0: no cap (each method runs its own step
    count). The key was ``evals_per_weight`` while the cap counted forward passes only (it gave the
    gradient methods their backward passes free); the old key is refused with the new name.
    """

    RENAMED: ClassVar[dict[str, str]] = {"evals_per_weight": "fwd_equiv_per_weight"}
    """Old key -> new key: the old one is a ConfigError naming the new one (lowbit_core.config)."""

    epsilon: float = 0.1
    layer: int = 0
    fwd_equiv_per_weight: float = 0.0

    def __post_init__(self):
        if not self.epsilon > 0:
            raise ConfigError(f"budget.epsilon must be > 0, got {self.epsilon}")
        if self.layer < 0:
            raise ConfigError(f"budget.layer must be >= 0, got {self.layer}")
        if self.fwd_equiv_per_weight < 0:
            raise ConfigError(f"budget.fwd_equiv_per_weight must be >= 0 (0 = no cap), got {self.fwd_equiv_per_weight}")


@dataclass(frozen=True)
class ScanConfig:
    """Single-step lr scan: lr = lr_min, lr_min + lr_step, ..., <= lr_max (the seed: 1e-5..1e-1 by 1e-5).

    ``unit``: ``absolute`` (lr as written) or ``epsilon`` (lr_min, lr_max and lr_step in units of
    budget.epsilon, so a scan to lr_max = 1 ends at the box's edge whatever epsilon is).
    """

    lr_min: float = 1e-5
    lr_max: float = 1e-1
    lr_step: float = 1e-3
    normalize: Literal["max", "l2", "sign"] = "max"
    unit: Literal["absolute", "epsilon"] = "absolute"

    def __post_init__(self):
        if not 0 < self.lr_min <= self.lr_max or self.lr_step <= 0:
            raise ConfigError(
                f"scan needs 0 < lr_min <= lr_max and lr_step > 0, got {self.lr_min}, {self.lr_max}, {self.lr_step}"
            )
        if (self.lr_max - self.lr_min) / self.lr_step > 1e6:
            raise ConfigError("scan has more than 10^6 points; raise scan.lr_step")


@dataclass(frozen=True)
class MultiConfig:
    """Multi-step search inside the box: optimizer steps on w, then delta clipped back to the box.
    ``lr_unit``: ``absolute`` (lr as written) or ``epsilon`` (lr in units of budget.epsilon)."""

    optimizer: Literal["sgd", "sgdm", "adam"] = "sgd"
    lr: float = 1e-3
    lr_unit: Literal["absolute", "epsilon"] = "absolute"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    steps: int = 100
    noise: float = 0.0
    normalize: Literal["max", "none"] = "max"
    report_every: int = 10

    def __post_init__(self):
        if self.lr <= 0 or self.steps < 0 or self.report_every < 1:
            raise ConfigError(
                f"multi.lr > 0, multi.steps >= 0 and multi.report_every >= 1 are required, got "
                f"{self.lr}, {self.steps}, {self.report_every}"
            )
        if not 0 <= self.momentum < 1 or not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ConfigError("multi.momentum, multi.beta1 and multi.beta2 must lie in [0, 1)")
        if self.noise < 0:
            raise ConfigError(f"multi.noise must be >= 0, got {self.noise}")


@dataclass(frozen=True)
class DGConfig:
    """Discrete Gradient settings (rules in :mod:`lowbit_core.probes.dg`).

    ``steps``: S of multi-step DG (1 = single-step DG); ``fp_moves``: FP candidate moves as fractions of
    the step's reach; ``select``: ``best_prefix`` (measured loss decides how many of the sorted
    coordinates to move) or ``count`` (the best ``max_coords``; 0 = every improving one);
    ``cdg_*``: CDG's move cap, full re-evaluation period and shortlist size; ``report_every``: CDG
    reports every this many accepted moves (DG reports every step: S is small).
    """

    steps: int = 1
    fp_moves: tuple[float, ...] = (1.0, 0.5)
    select: Literal["best_prefix", "count"] = "best_prefix"
    max_coords: int = 0
    prefix_points: int = 32
    cdg_max_moves: int = 50
    cdg_refresh: int = 1
    cdg_shortlist: int = 64
    report_every: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.max_coords < 0 or self.prefix_points < 1 or self.report_every < 1:
            raise ConfigError("dg.steps >= 1, dg.max_coords >= 0, dg.prefix_points >= 1, dg.report_every >= 1 are required")
        if not self.fp_moves or any(not 0 < f <= 1 for f in self.fp_moves):
            raise ConfigError(f"dg.fp_moves must be fractions in (0, 1], got {self.fp_moves}")
        if self.cdg_max_moves < 0 or self.cdg_refresh < 1 or self.cdg_shortlist < 1:
            raise ConfigError("dg.cdg_max_moves >= 0, dg.cdg_refresh >= 1, dg.cdg_shortlist >= 1 are required")


@dataclass(frozen=True)
class AdmmConfig:
    """ADMM (Leng et al., AAAI 2018; the update rules are in :mod:`lowbit_core.probes.admm`).

    ``start``: ``ste`` (the single-step STE's best point, the "STE checkpoint") or ``w0``;
    ``rho``: the initial penalty, in units of the largest |gradient| at the start; ``rho_growth``: the
    schedule rho_{k+1} = rho_k * rho_growth; ``lr``: the largest step of the start's loss gradient
    per proximal step (in the unit variable V); ``iterations``: outer iterations; ``inner_steps``:
    extragradient steps per proximal (V) update.
    """

    start: Literal["ste", "w0"] = "ste"
    rho: float = 0.01
    rho_growth: float = 1.05
    lr: float = 0.1
    iterations: int = 100
    inner_steps: int = 1
    report_every: int = 10

    def __post_init__(self):
        if not self.rho > 0 or self.rho_growth < 1 or not self.lr > 0:
            raise ConfigError(f"admm.rho > 0, admm.rho_growth >= 1 and admm.lr > 0 are required, got "
                              f"{self.rho}, {self.rho_growth}, {self.lr}")
        if self.iterations < 0 or self.inner_steps < 1 or self.report_every < 1:
            raise ConfigError("admm.iterations >= 0, admm.inner_steps >= 1 and admm.report_every >= 1 are required")


@dataclass(frozen=True)
class GAConfig:
    """Genetic algorithm over the reachable coordinates (rules in :mod:`lowbit_core.probes.genetic`).

    ``mutations``: expected genes mutated per child; ``init_rate``: fraction of genes mutated in each
    random individual of the initial population (individual 0 is the start)."""

    population: int = 32
    generations: int = 100
    elite: int = 2
    tournament: int = 3
    crossover: float = 0.9
    mutations: float = 1.0
    init_rate: float = 0.05
    report_every: int = 10

    def __post_init__(self):
        if self.population < 2 or not 1 <= self.elite < self.population:
            raise ConfigError(f"ga.population >= 2 and 1 <= ga.elite < ga.population are required, got "
                              f"{self.population}, {self.elite}")
        if self.generations < 0 or self.tournament < 1 or self.report_every < 1:
            raise ConfigError("ga.generations >= 0, ga.tournament >= 1 and ga.report_every >= 1 are required")
        if not 0 <= self.crossover <= 1 or not 0 <= self.init_rate <= 1 or self.mutations < 0:
            raise ConfigError("ga.crossover and ga.init_rate must lie in [0, 1] and ga.mutations >= 0")


@dataclass(frozen=True)
class ESConfig:
    """Separable CMA-ES over the box with the ``cma`` library (:mod:`lowbit_core.probes.evolution_strategy`).

    ``population``: solutions per generation (0: cma's default 4 + 3 ln n); ``sigma0``: the initial
    step size in units of epsilon (the search space is [-1, 1]^n, delta = epsilon x)."""

    population: int = 0
    generations: int = 100
    sigma0: float = 0.3
    report_every: int = 10

    def __post_init__(self):
        if self.population < 0 or self.population == 1 or self.generations < 0 or self.report_every < 1:
            raise ConfigError("es.population = 0 (default) or >= 2, es.generations >= 0 and es.report_every >= 1 "
                              "are required")
        if not self.sigma0 > 0:
            raise ConfigError(f"es.sigma0 must be > 0, got {self.sigma0}")


METHODS = ("ste", "dg", "cdg", "admm", "ga", "es")
"""Every probe method; all but ``ste`` probe the first layer only."""


@dataclass(frozen=True)
class ProbeConfig:
    """One probe trial: model at a pretrained start, fixed batch (and a held-out batch of the same
    size no method sees), the single-step STE scan, and the method under test: ``ste`` (multi-step
    STE, section ``multi``), ``dg`` (single-/multi-step DG, section ``dg``), ``cdg``
    (coordinate-descent DG), ``admm`` (section ``admm``), ``ga`` (genetic algorithm, section ``ga``)
    or ``es`` (separable CMA-ES, section ``es``)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    multi: MultiConfig = field(default_factory=MultiConfig)
    dg: DGConfig = field(default_factory=DGConfig)
    admm: AdmmConfig = field(default_factory=AdmmConfig)
    ga: GAConfig = field(default_factory=GAConfig)
    es: ESConfig = field(default_factory=ESConfig)
    method: Literal[METHODS] = "ste"
    seed: int = 0

    def __post_init__(self):
        if self.multi.noise > self.budget.epsilon:
            raise ConfigError(
                f"multi.noise={self.multi.noise} exceeds budget.epsilon={self.budget.epsilon}; the noise "
                "amplitude must satisfy 0 <= noise <= epsilon"
            )
        if self.method != "ste" and self.budget.layer != 0:
            raise ConfigError(f"method={self.method} probes the first layer only; set budget.layer=0")
        if self.budget.layer > len(self.model.hidden):
            raise ConfigError(
                f"budget.layer={self.budget.layer} but the MLP has layers 0..{len(self.model.hidden)}"
            )

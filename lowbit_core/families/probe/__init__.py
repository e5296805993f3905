"""The ``probe`` family: one-layer budget probes on a toy MLP (FP or binary weights), the meeting
record's first experiment. Code: :mod:`lowbit_core.probes` (config, methods, rows); this package
only declares the family.

Selection: the held-out batch (``heldout_*``) measures what a found point is worth beyond the fixed
batch and is used by no method, so neither a scheduler nor a search may read it.
"""
from __future__ import annotations

import dataclasses

from lowbit_core.families import Family, register_family

HELDOUT = ("heldout_loss", "heldout_start_loss", "single_heldout_loss", "rel_improvement_heldout")


@register_family
def probe_family() -> Family:
    from lowbit_core.data.mnist import mnist_missing, mnist_too_small
    from lowbit_core.probes.config import (OWN_FIELDS, AdmmConfig, DGConfig, ESConfig, EstimatorConfig, GAConfig,
                                           MultiConfig, ProbeConfig)
    from lowbit_core.probes.metrics import FOLDABLE, PROBE_METRICS
    from lowbit_core.quant import estimator_registry

    # The loop (torch, the search methods, cma) is imported where a trial runs, not where one is
    # planned: a dry run or a refusal before Ray starts stays quick.
    def run_probe(cfg, report, device=None):
        from lowbit_core.probes.run import run_probe as run

        return run(cfg, report, device)

    def run_probe_batch(cfgs, report, device=None):
        from lowbit_core.probes.run import run_probe_batch as run_batch

        return run_batch(cfgs, report, device)

    def canonicalize(cfg: ProbeConfig) -> ProbeConfig:
        # Parameters that do not act are reset to their defaults so equivalent trials get one key:
        # the FP model ignores the estimator; each estimator ignores the other ones' parameters.
        default = EstimatorConfig()
        est = cfg.estimator
        if cfg.model.kind == "fp":
            est = default
        else:
            acting = estimator_registry.get(est.name).param
            acting = acting if acting in OWN_FIELDS else ("param" if acting else None)
            est = dataclasses.replace(est, **{p: getattr(default, p) for p in (*OWN_FIELDS, "param") if p != acting})
        multi, dg = cfg.multi, cfg.dg
        if multi.optimizer != "sgdm":
            multi = dataclasses.replace(multi, momentum=MultiConfig().momentum)
        if multi.optimizer != "adam":
            multi = dataclasses.replace(multi, beta1=MultiConfig().beta1, beta2=MultiConfig().beta2)
        # each method ignores the other methods' sections (the estimator still acts: every trial's
        # single-step scan, ADMM's STE checkpoint among them, goes through it)
        if cfg.method not in ("dg", "cdg"):
            dg = DGConfig()
        else:
            keep = {"fp_moves": dg.fp_moves}
            if cfg.method == "dg":
                keep.update(steps=dg.steps, select=dg.select, prefix_points=dg.prefix_points,
                            max_coords=dg.max_coords if dg.select == "count" else 0)
            else:
                keep.update(cdg_max_moves=dg.cdg_max_moves, cdg_refresh=dg.cdg_refresh, report_every=dg.report_every,
                            cdg_shortlist=dg.cdg_shortlist if dg.cdg_refresh > 1 else DGConfig().cdg_shortlist)
            dg = DGConfig(**keep)
        if cfg.method != "ste":
            multi = MultiConfig()
        return dataclasses.replace(cfg, estimator=est, multi=multi, dg=dg,
                                   admm=cfg.admm if cfg.method == "admm" else AdmmConfig(),
                                   ga=cfg.ga if cfg.method == "ga" else GAConfig(),
                                   es=cfg.es if cfg.method == "es" else ESConfig())

    def preflight(cfg: ProbeConfig) -> str | None:
        if cfg.data.name != "mnist":
            return None
        return mnist_missing(cfg.data.root) or mnist_too_small(cfg.data.batch_size)

    return Family("probe", ProbeConfig, run_probe, PROBE_METRICS, canonicalize, preflight,
                  foldable=FOLDABLE, run_batch=run_probe_batch,
                  selection_metrics=frozenset(m for m in PROBE_METRICS if m not in HELDOUT),
                  baseline={"estimator.name": estimator_registry.REFERENCE})

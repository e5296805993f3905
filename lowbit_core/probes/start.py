"""The probe's data and start point w0, cached per process.

Seeded set-up: the task (teacher fixed, or MNIST) and the MLP (FP or binary) initialized from
``cfg.seed`` and pretrained for ``model.pretrain_steps`` Adam steps on fresh batches (the binary MLP
through nSTE, whatever estimator is probed, so every estimator starts from the same w0). A reused
Ray actor runs many trials that share data and start weights: both are kept in small FIFO caches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lowbit_core.data.probe_batches import ProbeData
from lowbit_core.models.mlp import MLP
from lowbit_core.probes.config import ProbeConfig

_DATA_CACHE: dict = {}
_START_CACHE: dict = {}
_CACHE_SIZE = 8


def _cached(cache: dict, key, make):
    """Small FIFO cache."""
    if key not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def probe_data(cfg: ProbeConfig) -> ProbeData:
    d = cfg.data
    key = (d.name, d.root, d.n_features, d.n_classes, d.teacher_hidden)
    return _cached(_DATA_CACHE, key, lambda: ProbeData(*key))


def pretrained_mlp(cfg: ProbeConfig, data: ProbeData, device: torch.device, estimator: str = "identity",
                   estimator_param=None) -> MLP:
    """The MLP at its probe start w0, built with ``estimator`` (a fresh module; the weights are
    computed once per process)."""
    key = (cfg.data, cfg.model, cfg.seed, str(device))
    state = _cached(_START_CACHE, key, lambda: _pretrain(cfg, data, device).state_dict())
    model = MLP(data.in_dim, cfg.model.hidden, data.n_classes, cfg.model.kind, estimator, estimator_param).to(device)
    model.load_state_dict(state)
    return model.requires_grad_(False)


def _pretrain(cfg: ProbeConfig, data: ProbeData, device: torch.device) -> MLP:
    """Seeded init, then Adam pretraining (nSTE for the binary MLP, exact gradient for FP)."""
    torch.manual_seed(cfg.seed)
    model = MLP(data.in_dim, cfg.model.hidden, data.n_classes, cfg.model.kind).to(device)
    gen = torch.Generator().manual_seed(1_000 + cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model.pretrain_lr)
    for _ in range(cfg.model.pretrain_steps):
        x, y = data.sample(cfg.model.pretrain_batch, gen)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model

"""Batched crop/flip augmentation against a per-image reference loop; the batch iterator; mixup by hand."""
import pytest
import torch
import torch.nn.functional as F

import lowbit_core.data.mixup as mixup_mod
from lowbit_core.data.augment import augment, batches, crop_flip, random_crop_flip, random_offsets
from lowbit_core.data.cifar import normalize
from lowbit_core.data.mixup import mix, mixup, mixup_loss, sample_lambda

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _images(n, seed=0, device="cpu", shape=(3, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, *shape), dtype=torch.uint8, generator=g).to(device)  # no zeros: padding shows


def _reference(x, dy, dx, f, p):
    """The slow way: one image at a time, explicit zero padding, crop, then mirror."""
    out = []
    for n in range(len(x)):
        c, h, w = x[n].shape
        padded = torch.zeros(c, h + 2 * p, w + 2 * p, dtype=x.dtype)
        padded[:, p:p + h, p:p + w] = x[n].cpu()
        crop = padded[:, int(dy[n]):int(dy[n]) + h, int(dx[n]):int(dx[n]) + w]
        out.append(crop.flip(-1) if f[n] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("device", DEVICES)
def test_crop_flip_equals_per_image_reference(device):
    x = _images(400, device=device)
    out = random_crop_flip(x, torch.Generator().manual_seed(3), padding=4)
    dy, dx, f = random_offsets(400, 4, torch.Generator().manual_seed(3))  # the same draws
    assert out.device == x.device and out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out.cpu(), _reference(x, dy, dx, f, 4))
    # the draw covered every offset 0..8 on both axes and both flip states, edges included
    assert set(dy.tolist()) == set(range(9)) == set(dx.tolist()) and 0 < int(f.sum()) < 400


def test_zero_padding_at_extreme_offsets():
    x = _images(2)
    z = torch.zeros(2, dtype=torch.long)
    out = crop_flip(x, z, z, torch.tensor([False, False]), padding=4)
    assert (out[:, :, :4, :] == 0).all() and (out[:, :, :, :4] == 0).all()
    assert torch.equal(out[:, :, 4:, 4:], x[:, :, :28, :28])
    e = torch.full((2,), 8)
    out = crop_flip(x, e, e, torch.tensor([False, True]), padding=4)
    assert torch.equal(out[0, :, :28, :28], x[0, :, 4:, 4:]) and (out[0, :, 28:, :] == 0).all()
    assert torch.equal(out[1], out[1].flip(-1).flip(-1)) and (out[1, :, :, :4] == 0).all()  # mirrored: pad on the left
    assert torch.equal(out[1, :, :28, 4:], x[1, :, 4:, 4:].flip(-1))


def test_centre_crop_is_identity_and_flips_are_exact_mirrors():
    x = _images(64)
    c = torch.full((64,), 4)
    f = torch.arange(64) % 3 == 0
    out = crop_flip(x, c, c, f, padding=4)
    assert torch.equal(out[~f], x[~f]) and torch.equal(out[f], x[f].flip(-1))
    out0 = random_crop_flip(x, torch.Generator().manual_seed(1), padding=0)  # flips only
    flipped = (out0 != x).flatten(1).any(1)
    assert torch.equal(out0[flipped], x[flipped].flip(-1)) and torch.equal(out0[~flipped], x[~flipped])


def test_flip_proportion_is_about_half():
    x = torch.arange(4, dtype=torch.uint8).view(1, 1, 1, 4).expand(40000, 1, 1, 4).contiguous()
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    rate = (out[:, 0, 0, 0] == 3).float().mean().item()
    assert abs(rate - 0.5) < 0.01  # 4 sigma = 0.01 for n = 40000
    assert random_crop_flip(x[:100], torch.Generator().manual_seed(0), padding=0, flip=False).equal(x[:100])


def test_offsets_are_uniform_over_the_window():
    dy, dx, _ = random_offsets(45000, 4, torch.Generator().manual_seed(0))
    for d in (dy, dx):
        counts = torch.bincount(d, minlength=9).float() / 45000
        assert (counts - 1 / 9).abs().max() < 0.01


def test_seeded_and_reproducible():
    x = _images(32)
    a = random_crop_flip(x, torch.Generator().manual_seed(5))
    b = random_crop_flip(x, torch.Generator().manual_seed(5))
    c = random_crop_flip(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("device", DEVICES)
def test_augment_returns_normalised_float_on_input_device(device):
    x = _images(16, device=device)
    out = augment(x, torch.Generator().manual_seed(2), name="cifar100")
    assert out.device == x.device and out.dtype == torch.float32 and out.shape == x.shape
    ref = normalize(random_crop_flip(x, torch.Generator().manual_seed(2)), "cifar100")
    assert torch.equal(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_batches_cover_the_epoch_on_device(device):
    x = torch.arange(10, device=device).view(10, 1) * torch.ones(1, 3, device=device, dtype=torch.long)
    y = torch.arange(10, device=device)
    got = list(batches(x, y, 4, torch.Generator().manual_seed(0), shuffle=True, drop_last=False))
    assert [len(b[0]) for b in got] == [4, 4, 2]
    assert all(xb.device == x.device and yb.device == y.device and torch.equal(xb[:, 0], yb) for xb, yb in got)
    order = torch.cat([yb for _, yb in got]).cpu()
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    again = torch.cat([yb for _, yb in batches(x, y, 4, torch.Generator().manual_seed(0), drop_last=False)]).cpu()
    assert torch.equal(order, again)
    assert [len(b[1]) for b in batches(x, y, 4, torch.Generator().manual_seed(0))] == [4, 4]  # drop_last
    plain = list(batches(x, y, 3, shuffle=False, drop_last=False))
    assert torch.cat([yb for _, yb in plain]).cpu().tolist() == list(range(10))


def test_batches_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="samples"):
        list(batches(torch.zeros(3, 1), torch.zeros(4), 2))


# ---- mixup ----

def test_mixup_with_fixed_lambda_equals_hand_computation(monkeypatch):
    monkeypatch.setattr(mixup_mod, "sample_lambda", lambda alpha, generator=None: 0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    xm, ya, yb, lam = mixup(x, y, 1.0, torch.Generator().manual_seed(7))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(7))  # the same draw (lambda drew nothing)
    assert lam == 0.3 and not torch.equal(perm, torch.arange(8))
    torch.testing.assert_close(xm, 0.3 * x + 0.7 * x[perm], rtol=0, atol=1e-6)
    assert torch.equal(ya, y) and torch.equal(yb, y[perm])
    logits = torch.randn(8, 5, generator=g)
    logp = logits - logits.exp().sum(1, keepdim=True).log()
    hand = -(0.3 * logp[torch.arange(8), y] + 0.7 * logp[torch.arange(8), y[perm]]).mean()
    torch.testing.assert_close(mixup_loss(logits, ya, yb, lam), hand, rtol=1e-6, atol=1e-6)
    soft = 0.3 * F.one_hot(y, 5).float() + 0.7 * F.one_hot(y[perm], 5).float()  # CE against mixed targets
    torch.testing.assert_close(mixup_loss(logits, ya, yb, lam), F.cross_entropy(logits, soft), rtol=1e-6, atol=1e-6)


def test_mix_endpoints():
    x = torch.randn(4, 2)
    y = torch.tensor([0, 1, 2, 3])
    perm = torch.tensor([1, 2, 3, 0])
    assert torch.equal(mix(x, y, 1.0, perm)[0], x) and torch.equal(mix(x, y, 0.0, perm)[0], x[perm])
    with pytest.raises(TypeError, match="floating"):
        mix(x.to(torch.uint8), y, 0.5, perm)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_alpha_zero_is_no_mixup(alpha):
    x, y = torch.randn(6, 3), torch.arange(6)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    xm, ya, yb, lam = mixup(x, y, alpha, g)
    assert xm is x and ya is y and yb is y and lam == 1.0
    assert torch.equal(g.get_state(), state)  # nothing drawn
    logits = torch.randn(6, 6)
    assert torch.equal(mixup_loss(logits, ya, yb, lam), F.cross_entropy(logits, y))
    assert sample_lambda(0.0) == 1.0


def test_lambda_is_beta_distributed_and_seeded():
    g = torch.Generator().manual_seed(0)
    lams = torch.tensor([sample_lambda(1.0, g) for _ in range(4000)])  # Beta(1, 1) = U(0, 1)
    assert ((lams > 0) & (lams < 1)).all()
    assert abs(lams.mean().item() - 0.5) < 0.02 and abs(lams.var().item() - 1 / 12) < 0.01
    small = torch.tensor([sample_lambda(0.2, g) for _ in range(4000)])  # U-shaped: mass near 0 and 1
    assert ((small < 0.1) | (small > 0.9)).float().mean() > 0.6
    assert sample_lambda(0.4, torch.Generator().manual_seed(9)) == sample_lambda(0.4, torch.Generator().manual_seed(9))

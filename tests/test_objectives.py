"""Contrastive (EBM-NCE, InfoNCE) and generative (VRR, RR) objectives against hand computations.

Expected values are computed with plain python ``math`` on lists, independently of torch.
"""

import math

import pytest
import torch

from graphmvp.objectives import OBJECTIVES
from graphmvp.objectives.contrastive import EBMNCE, InfoNCE, cyclic_shift_index, ebm_nce_one_way
from graphmvp.objectives.generative import RR, VRR, Reconstructor, VariationalReconstructor

# B = 3 samples, D = 2
X = [[1.0, 0.5], [-0.3, 0.8], [0.6, -1.2]]
Y = [[0.4, 0.9], [1.1, -0.2], [-0.7, 0.5]]


# ---------------------------------------------------------------- plain-python helpers
def dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def l2_normalize(rows):
    return [[v / math.sqrt(dot(r, r)) for v in r] for r in rows]


def softplus(s):
    return math.log1p(math.exp(s))


def ebm_one_way(xs, ys, temperature, k, shifts=None):
    """BCE(pos, 1) + K * BCE(neg, 0): BCE-with-logits(s, 1) = softplus(-s), (s, 0) = softplus(s).

    Negatives pair x_i with y_{(i + shift) % B} for shift in ``shifts`` (default 1..K).
    """
    b = len(xs)
    shifts = range(1, k + 1) if shifts is None else shifts
    pos = [dot(xs[i], ys[i]) / temperature for i in range(b)]
    neg = [dot(xs[i], ys[(i + shift) % b]) / temperature for shift in shifts for i in range(b)]
    loss = sum(softplus(-s) for s in pos) / len(pos) + k * sum(softplus(s) for s in neg) / len(neg)
    acc = (sum(s > 0 for s in pos) + sum(s < 0 for s in neg)) / (len(pos) + len(neg))
    return loss, acc


def infonce_one_way_py(xs, ys, temperature):
    b = len(xs)
    total, correct = 0.0, 0
    for i in range(b):
        logits = [dot(xs[i], ys[j]) / temperature for j in range(b)]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
        correct += max(range(b), key=lambda j: logits[j]) == i
    return total / b, correct / b


def linear(rows, w, b):
    return [[dot(wi, r) + bi for wi, bi in zip(w, b)] for r in rows]


def batchnorm_train(rows, gamma, beta, eps=1e-5):
    n, d = len(rows), len(rows[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        col = [r[j] for r in rows]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / n  # biased, as batch norm normalises with
        for i in range(n):
            out[i][j] = (col[i] - mean) / math.sqrt(var + eps) * gamma[j] + beta[j]
    return out


def relu(rows):
    return [[max(v, 0.0) for v in r] for r in rows]


def set_linear(layer, w, b):
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        layer.bias.copy_(torch.tensor(b))


DEC = dict(
    w1=[[0.5, -0.2], [0.3, 0.8]], b1=[0.1, -0.1], gamma=[1.5, 0.7], beta=[0.2, -0.3],
    w2=[[1.0, 0.4], [-0.6, 0.9]], b2=[0.05, 0.0],
)
MU = dict(w=[[0.2, 0.1], [-0.4, 0.3]], b=[0.0, 0.1])
VAR = dict(w=[[0.1, -0.3], [0.2, 0.2]], b=[-0.5, 0.3])
EPS = [[0.3, -1.1], [0.9, 0.2], [-0.4, 0.7]]


def set_decoder(decoder, p):
    set_linear(decoder[0], p["w1"], p["b1"])
    with torch.no_grad():
        decoder[1].weight.copy_(torch.tensor(p["gamma"]))
        decoder[1].bias.copy_(torch.tensor(p["beta"]))
    set_linear(decoder[3], p["w2"], p["b2"])


def decoder_py(rows, p):
    h = relu(batchnorm_train(linear(rows, p["w1"], p["b1"]), p["gamma"], p["beta"]))
    return linear(h, p["w2"], p["b2"])


def mse_py(pred, target):
    diffs = [(a - b) ** 2 for pr, tr in zip(pred, target) for a, b in zip(pr, tr)]
    return sum(diffs) / len(diffs)


def l1_py(pred, target):
    diffs = [abs(a - b) for pr, tr in zip(pred, target) for a, b in zip(pr, tr)]
    return sum(diffs) / len(diffs)


def neg_cosine_py(pred, target):
    return -sum(dot(p, t) / math.sqrt(dot(p, p) * dot(t, t)) for p, t in zip(pred, target)) / len(pred)


def vrr_py(source, target, eps, mu_p, var_p, dec_p, beta):
    mu = linear(source, mu_p["w"], mu_p["b"])
    logvar = linear(source, var_p["w"], var_p["b"])
    z = [[m + e * math.exp(0.5 * lv) for m, e, lv in zip(mr, er, lr)] for mr, er, lr in zip(mu, eps, logvar)]
    recon = mse_py(decoder_py(z, dec_p), target)
    kl = sum(
        -0.5 * sum(1 + lv - m * m - math.exp(lv) for m, lv in zip(mr, lr)) for mr, lr in zip(mu, logvar)
    ) / len(source)
    return recon + beta * kl, recon, kl


def make_vrr_direction(beta=2.0, detach_target=True, dec=DEC):
    m = VariationalReconstructor(emb_dim=2, beta=beta, loss="l2", detach_target=detach_target)
    set_linear(m.fc_mu, MU["w"], MU["b"])
    set_linear(m.fc_var, VAR["w"], VAR["b"])
    set_decoder(m.decoder, dec)
    return m


T_ = torch.tensor


# ---------------------------------------------------------------- registry
def test_registry_names_and_kinds():
    assert {"ebm-nce", "infonce", "vrr", "rr", "attrmask"} <= set(OBJECTIVES.names())
    assert OBJECTIVES.get("ebm-nce").kind == "contrastive"
    assert OBJECTIVES.get("infonce").kind == "contrastive"
    assert OBJECTIVES.get("vrr").kind == "generative"
    assert OBJECTIVES.get("rr").kind == "generative"
    assert OBJECTIVES.get("attrmask").kind == "2d"


def test_cyclic_shift_index_matches_upstream_rule():
    # arr = arange(num) + shift; arr[-shift:] = arange(shift)
    assert cyclic_shift_index(5, 1).tolist() == [1, 2, 3, 4, 0]
    assert cyclic_shift_index(5, 3).tolist() == [3, 4, 0, 1, 2]
    assert cyclic_shift_index(4, 4).tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- EBM-NCE
def test_ebm_nce_literal_value():
    # X = Y = I: positives score 1, negatives 0; one way = log(1 + e^-1) + log 2
    eye = torch.eye(2)
    loss, metrics = EBMNCE(temperature=1.0, normalize=False)(eye, eye)
    assert loss.item() == pytest.approx(1.0064089, abs=1e-6)
    assert metrics["acc_2d_3d"] == pytest.approx(0.5)  # negatives at exactly 0 are not "< 0"


def test_ebm_nce_one_way_shift_direction():
    # row k is paired with Y[(k + 1) % B] as its negative, not Y[(k - 1) % B]
    loss, acc = ebm_nce_one_way(T_(X), T_(Y), temperature=0.5, num_negatives=1)
    want_loss, want_acc = ebm_one_way(X, Y, 0.5, 1)
    assert loss.item() == pytest.approx(want_loss, rel=1e-6)
    assert acc.item() == pytest.approx(want_acc)
    # the opposite shift (x_k with y_{k-1}) gives a different value on these numbers
    assert want_loss != pytest.approx(ebm_one_way(X, Y, 0.5, 1, shifts=[-1])[0], rel=1e-3)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("normalize", [False, True])
def test_ebm_nce_matches_hand_computation(k, normalize):
    temperature = 0.2
    xs, ys = (l2_normalize(X), l2_normalize(Y)) if normalize else (X, Y)
    l23, a23 = ebm_one_way(xs, ys, temperature, k)
    l32, a32 = ebm_one_way(ys, xs, temperature, k)
    loss, metrics = EBMNCE(temperature=temperature, normalize=normalize, num_negatives=k)(T_(X), T_(Y))
    assert loss.item() == pytest.approx((l23 + l32) / 2, rel=1e-5)
    assert metrics["acc_2d_3d"] == pytest.approx(a23)
    assert metrics["acc_3d_2d"] == pytest.approx(a32)
    assert metrics["acc_cl"] == pytest.approx((a23 + a32) / 2)
    assert all(isinstance(v, float) for v in metrics.values())


def test_ebm_nce_gradient_reaches_both_views():
    x = T_(X).requires_grad_()
    y = T_(Y).requires_grad_()
    loss, _ = EBMNCE()(x, y)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_ebm_nce_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        EBMNCE(temperature=0.0)
    with pytest.raises(ValueError, match="num_negatives"):
        EBMNCE(num_negatives=0)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        EBMNCE()(torch.zeros(3, 2), torch.zeros(4, 2))


# ---------------------------------------------------------------- InfoNCE
def test_infonce_literal_value():
    eye = torch.eye(2)
    loss, metrics = InfoNCE(temperature=1.0, normalize=False)(eye, eye)
    assert loss.item() == pytest.approx(math.log(1 + math.e) - 1, abs=1e-6)  # 0.3132617
    assert metrics["acc_2d_3d"] == 1.0 and metrics["acc_3d_2d"] == 1.0


@pytest.mark.parametrize("normalize", [False, True])
def test_infonce_matches_hand_computation(normalize):
    temperature = 0.2
    xs, ys = (l2_normalize(X), l2_normalize(Y)) if normalize else (X, Y)
    l23, a23 = infonce_one_way_py(xs, ys, temperature)
    l32, a32 = infonce_one_way_py(ys, xs, temperature)
    loss, metrics = InfoNCE(temperature=temperature, normalize=normalize)(T_(X), T_(Y))
    assert loss.item() == pytest.approx((l23 + l32) / 2, rel=1e-5)
    assert metrics["acc_2d_3d"] == pytest.approx(a23)
    assert metrics["acc_3d_2d"] == pytest.approx(a32)


# ---------------------------------------------------------------- VRR
def test_vrr_direction_matches_hand_computation():
    m = make_vrr_direction(beta=2.0)
    loss, parts = m(T_(X), T_(Y), eps=T_(EPS))
    want, recon, kl = vrr_py(X, Y, EPS, MU, VAR, DEC, beta=2.0)
    assert parts["recon"] == pytest.approx(recon, rel=1e-5)
    assert parts["kl"] == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_vrr_both_directions_average():
    dec2 = dict(DEC, b2=[-0.2, 0.3], gamma=[0.9, 1.1])
    model = VRR(emb_dim=2, beta=2.0)
    for direction, dec in ((model.to_3d, DEC), (model.to_2d, dec2)):
        set_linear(direction.fc_mu, MU["w"], MU["b"])
        set_linear(direction.fc_var, VAR["w"], VAR["b"])
        set_decoder(direction.decoder, dec)
    eps2 = [[-0.5, 0.1], [0.0, 1.3], [0.8, -0.6]]
    loss, metrics = model(T_(X), T_(Y), eps_to_3d=T_(EPS), eps_to_2d=T_(eps2))
    l23 = vrr_py(X, Y, EPS, MU, VAR, DEC, 2.0)[0]  # 2D -> 3D: source X, target Y
    l32 = vrr_py(Y, X, eps2, MU, VAR, dec2, 2.0)[0]
    assert metrics["loss_2d_3d"] == pytest.approx(l23, rel=1e-5)
    assert metrics["loss_3d_2d"] == pytest.approx(l32, rel=1e-5)
    assert loss.item() == pytest.approx((l23 + l32) / 2, rel=1e-5)


def test_vrr_default_noise_is_standard_normal_draw():
    m = make_vrr_direction()
    torch.manual_seed(123)
    loss_sampled, _ = m(T_(X), T_(Y))
    torch.manual_seed(123)
    eps = torch.randn(3, 2)
    loss_injected, _ = m(T_(X), T_(Y), eps=eps)
    assert loss_sampled.item() == pytest.approx(loss_injected.item(), rel=1e-6)
    assert loss_injected.item() == pytest.approx(vrr_py(X, Y, eps.tolist(), MU, VAR, DEC, 2.0)[0], rel=1e-5)


@pytest.mark.parametrize("detach", [True, False])
def test_vrr_target_gradient_only_when_not_detached(detach):
    m = make_vrr_direction(detach_target=detach)
    x = T_(X).requires_grad_()
    y = T_(Y).requires_grad_()
    loss, _ = m(x, y, eps=T_(EPS))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if detach:
        assert y.grad is None
    else:
        assert y.grad is not None and y.grad.abs().sum() > 0


# ---------------------------------------------------------------- RR
@pytest.mark.parametrize("name,criterion", [("l2", mse_py), ("l1", l1_py), ("cosine", neg_cosine_py)])
def test_rr_matches_hand_computation(name, criterion):
    dec2 = dict(DEC, w1=[[0.2, 0.7], [-0.5, 0.4]])
    model = RR(emb_dim=2, loss=name)
    set_decoder(model.to_3d.decoder, DEC)
    set_decoder(model.to_2d.decoder, dec2)
    loss, metrics = model(T_(X), T_(Y))
    l23 = criterion(decoder_py(X, DEC), Y)
    l32 = criterion(decoder_py(Y, dec2), X)
    assert metrics["loss_2d_3d"] == pytest.approx(l23, rel=1e-5)
    assert metrics["loss_3d_2d"] == pytest.approx(l32, rel=1e-5)
    assert loss.item() == pytest.approx((l23 + l32) / 2, rel=1e-5)


@pytest.mark.parametrize("detach", [True, False])
def test_rr_target_gradient_only_when_not_detached(detach):
    m = Reconstructor(emb_dim=2, detach_target=detach)
    x = T_(X).requires_grad_()
    y = T_(Y).requires_grad_()
    m(x, y)[0].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert (y.grad is None) == detach


def test_generative_bad_arguments():
    with pytest.raises(ValueError, match="l2"):
        VRR(loss="huber")
    with pytest.raises(ValueError, match="huber"):
        RR(loss="huber")
    with pytest.raises(ValueError, match="beta"):
        VRR(beta=-1.0)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        RR(emb_dim=2)(torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="eps"):
        make_vrr_direction()(T_(X), T_(Y), eps=torch.zeros(2, 2))


def test_released_defaults():
    ebm = EBMNCE()
    assert (ebm.temperature, ebm.normalize, ebm.num_negatives) == (0.2, True, 1)
    vrr = VRR()
    assert vrr.to_3d.beta == 2.0 and vrr.to_3d.loss_name == "l2" and vrr.to_3d.detach_target
    assert vrr.to_3d.fc_mu.in_features == 300

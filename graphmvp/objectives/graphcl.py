"""GraphCL (You et al., "Graph Contrastive Learning with Augmentations", NeurIPS 2020) and JOAO
(You et al., "Graph Contrastive Learning Automated", ICML 2021): NT-Xent between two augmented
views of each molecule, after a projection head.

Per batch of B molecules the task encodes two augmented views of every molecule (see
:mod:`graphmvp.data.augment`) with the 2D encoder and pools them (``z1``, ``z2`` [B, D]). Here a
2-layer projection head ``g = Linear(D, D) -> ReLU -> Linear(D, D)`` maps both, and

    s_ij = cos(g(z1_i), g(z2_j)) / T                         [B, B],  T = 0.1
    loss = mean_i [ -s_ii + log sum_{j in D_i} exp(s_ij) ]    (first view -> second view)

with the in-batch negatives ``D_i``: the other molecules' second views. Options:
``positive_in_denominator`` (False: ``D_i = {j != i}``, the form of GraphCL's released
transfer-learning code as we read it, which divides the positive by the sum of the negatives only;
True: ``D_i`` = all j, the usual InfoNCE/NT-Xent cross-entropy) and ``symmetric`` (False: one
direction, as GraphCL's code; True: the mean of the first->second and second->first losses).
Neither reading of the released code is confirmed by the reference facts; both are options and
``docs/methods.md`` states the defaults. SimCLR's NT-Xent also counts the other views of the same
side (2B - 2 negatives); GraphCL uses only the cross-view ones, and so do we.

JOAO adds a distribution ``p`` over the augmentation pairs (``pair_probs``, a buffer, so it is in
``state_dict`` and ``last.pt``), updated after every epoch by :func:`joao_update` from each pair's
loss (see :class:`JOAO`).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import OBJECTIVES, Metrics

#: JOAO's augmentation pool (You et al. 2021): 5 augmentations -> 25 pairs, pair id a1 * 5 + a2
JOAO_AUGMENTATIONS = ("identity", "node_drop", "subgraph", "edge_perturb", "attr_mask")
#: GraphCL's augmentations for molecules (You et al. 2020, transfer learning): each view draws one
GRAPHCL_AUGMENTATIONS = ("node_drop", "subgraph")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, symmetric: bool = False,
            positive_in_denominator: bool = False) -> Tuple[Tensor, Tensor]:
    """NT-Xent between two views ``z1``, ``z2`` [B, D] (row i of both = molecule i), B >= 2.

    Returns ``(loss, accuracy)``, scalars: see the module docstring for the loss; accuracy =
    fraction of rows (and columns, when ``symmetric``) whose positive similarity is strictly
    larger than every negative one (the positive ranked first).
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"the two views must be [B, D] of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    batch = z1.shape[0]
    if batch < 2:
        raise ValueError(f"NT-Xent needs at least 2 molecules per batch (in-batch negatives), got {batch}")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).t() / temperature
    eye = torch.eye(batch, dtype=torch.bool, device=sim.device)

    def one_way(s: Tensor) -> Tuple[Tensor, Tensor]:
        positive = s.diagonal()
        denominator = s if positive_in_denominator else s.masked_fill(eye, float("-inf"))
        loss = (torch.logsumexp(denominator, dim=1) - positive).mean()
        with torch.no_grad():
            best_negative = s.masked_fill(eye, float("-inf")).max(dim=1).values
            acc = (positive > best_negative).float().mean()
        return loss, acc

    loss, acc = one_way(sim)
    if symmetric:
        loss_t, acc_t = one_way(sim.t())
        loss, acc = (loss + loss_t) / 2, (acc + acc_t) / 2
    return loss, acc


def projection_head(emb_dim: int) -> nn.Sequential:
    """GraphCL's 2-layer projection head: ``Linear(D, D) -> ReLU -> Linear(D, D)``."""
    return nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.ReLU(), nn.Linear(emb_dim, emb_dim))


@OBJECTIVES.register("graphcl")
class GraphCL(nn.Module):
    """Projection head + NT-Xent over two augmented views (see the module docstring).

    Args:
        emb_dim: D of the pooled representations; 300.
        cl_temperature: T of NT-Xent; 0.1 (GraphCL).
        symmetric: average both directions (False: first view -> second view only).
        positive_in_denominator: count the positive in the softmax denominator (False: only the
            B - 1 negatives, as GraphCL's code).

    ``forward(z1 [B, D], z2 [B, D]) -> (loss, metrics)``: pooled encoder outputs of the first and
    second views (row b of both = sample b). Metrics: ``acc_<name>`` (fraction of positives
    ranked first).
    """

    kind = "2d"
    metric = "acc_graphcl"

    def __init__(self, emb_dim: int = 300, cl_temperature: float = 0.1, symmetric: bool = False,
                 positive_in_denominator: bool = False):
        super().__init__()
        if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
            raise ValueError(f"emb_dim must be an int >= 1, got {emb_dim!r}")
        if isinstance(cl_temperature, bool) or not isinstance(cl_temperature, (int, float)) or not cl_temperature > 0:
            raise ValueError(f"cl_temperature={cl_temperature!r}: must be a number > 0")
        self.temperature = float(cl_temperature)
        self.symmetric = bool(symmetric)
        self.positive_in_denominator = bool(positive_in_denominator)
        self.projection = projection_head(emb_dim)

    def forward(self, z1: Tensor, z2: Tensor) -> Tuple[Tensor, Metrics]:
        loss, acc = nt_xent(self.projection(z1), self.projection(z2), self.temperature, self.symmetric,
                            self.positive_in_denominator)
        return loss, {self.metric: float(acc)}

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, symmetric={self.symmetric}, "
                f"positive_in_denominator={self.positive_in_denominator}")


# -- JOAO ------------------------------------------------------------------------------------------
def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` [K] onto the probability simplex {p >= 0, sum p = 1}.

    Exact (sort-based, Held et al. 1974 / Duchi et al. 2008): with ``u`` = ``v`` sorted in
    decreasing order, ``rho`` = the largest j with ``u_j > (sum_{i<=j} u_i - 1) / j`` and
    ``theta = (sum_{i<=rho} u_i - 1) / rho``, the projection is ``max(v - theta, 0)``.
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"cannot project {v.tolist()} onto the simplex (need finite values)")
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    j = np.arange(1, v.size + 1)
    rho = int(np.flatnonzero(u - (css - 1.0) / j > 0)[-1]) + 1
    theta = (css[rho - 1] - 1.0) / rho
    return np.maximum(v - theta, 0.0)


def joao_update(probs: np.ndarray, pair_losses: np.ndarray, gamma: float, step_size: float = 1.0) -> np.ndarray:
    """One projected gradient-ascent step of JOAO's augmentation distribution.

    JOAO solves ``min_theta max_{p in simplex} sum_k p_k L_k(theta) - (gamma / 2) ||p - u||^2``
    (``u`` = uniform over the K pairs, ``L_k`` = contrastive loss under pair k). For fixed
    ``theta`` the gradient in ``p`` is ``L - gamma (p - u)``, so one step of size ``step_size``
    (beta) is::

        p <- Proj_simplex(p + beta * (L - gamma * (p - u)))

    With ``beta = 1 / gamma`` the step lands on the exact inner maximiser
    ``Proj_simplex(u + L / gamma)`` (the inner problem is gamma-strongly concave). Returns the
    new ``p`` [K] (float64, >= 0, sums to 1).
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    losses = np.asarray(pair_losses, dtype=np.float64).reshape(-1)
    if p.shape != losses.shape:
        raise ValueError(f"{p.size} probabilities but {losses.size} pair losses")
    if not gamma > 0:
        raise ValueError(f"gamma={gamma!r}: must be > 0")
    if not step_size > 0:
        raise ValueError(f"step_size={step_size!r}: must be > 0")
    uniform = 1.0 / p.size
    return project_to_simplex(p + step_size * (losses - gamma * (p - uniform)))


@OBJECTIVES.register("joao")
class JOAO(GraphCL):
    """GraphCL's head and NT-Xent plus JOAO's augmentation-pair distribution (You et al. 2021).

    Args (besides :class:`GraphCL`'s):
        augmentations: the K augmentations of the pool (only K matters here: ``pair_probs`` has
            K * K entries); JOAO's five by default.
        gamma: weight of the squared-distance prior towards uniform; 0.1 (JOAO's grid:
            0.01, 0.1, 1).
        step_size: beta of the projected gradient step; 1.0.

    Buffer ``pair_probs`` float64 [K * K], uniform at start; :meth:`update_pair_probs` applies
    :func:`joao_update`. Metrics: ``acc_joao``.
    """

    metric = "acc_joao"

    def __init__(self, emb_dim: int = 300, cl_temperature: float = 0.1, symmetric: bool = False,
                 positive_in_denominator: bool = False, augmentations: Sequence[str] = JOAO_AUGMENTATIONS,
                 gamma: float = 0.1, step_size: float = 1.0):
        super().__init__(emb_dim, cl_temperature, symmetric, positive_in_denominator)
        k = len(tuple(augmentations))
        if k < 1:
            raise ValueError("augmentations is empty")
        for name, value in (("gamma", gamma), ("step_size", step_size)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}={value!r}: must be a number > 0")
        self.gamma = float(gamma)
        self.step_size = float(step_size)
        self.register_buffer("pair_probs", torch.full((k * k,), 1.0 / (k * k), dtype=torch.float64))

    def update_pair_probs(self, pair_losses: Sequence[float]) -> np.ndarray:
        """Replace ``pair_probs`` by :func:`joao_update` of it with ``pair_losses`` [K * K];
        returns the new probabilities."""
        new = joao_update(self.pair_probs.detach().cpu().numpy(), np.asarray(pair_losses), self.gamma, self.step_size)
        self.pair_probs.copy_(torch.from_numpy(new))
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pairs={self.pair_probs.numel()}, gamma={self.gamma}, step_size={self.step_size}"

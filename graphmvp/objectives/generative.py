"""Generative objectives between the 2D and 3D views: VRR and RR.

Each direction has its own model: ``to_3d`` reconstructs the 3D representation from the 2D one,
``to_2d`` the 2D representation from the 3D one; the objective is the mean of the two losses.
Representations are used as given (no normalisation; that is the contrastive side's option).

* VRR (variational representation reconstruction): ``mu = fc_mu(x)``, ``logvar = fc_var(x)``,
  ``z = mu + eps * exp(logvar / 2)``, loss = ``criterion(decoder(z), y) + beta * KL`` with
  ``KL = mean_b(-1/2 sum_d (1 + logvar - mu^2 - exp(logvar)))``. ``z`` is sampled in training and
  in evaluation alike (as upstream), so the loss is always the stochastic training objective.
* RR (representation reconstruction): loss = ``criterion(decoder(x), y)``.

``decoder`` is ``Linear(D, D) - BatchNorm1d(D) - ReLU - Linear(D, D)``; because of the batch
norm, training mode needs B >= 2. The target ``y`` is detached by default (released setting).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphmvp.registry import Registry

from .registry import OBJECTIVES, Metrics

ReconstructionCriterion = Callable[[Tensor, Tensor], Tensor]

#: ``criterion(prediction [B, D], target [B, D]) -> scalar`` by name
RECONSTRUCTION_CRITERIA: Registry = Registry("reconstruction criterion")


@RECONSTRUCTION_CRITERIA.register("l2")
def l2_criterion(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements."""
    return F.mse_loss(prediction, target)


@RECONSTRUCTION_CRITERIA.register("l1")
def l1_criterion(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all elements."""
    return F.l1_loss(prediction, target)


@RECONSTRUCTION_CRITERIA.register("cosine")
def cosine_criterion(prediction: Tensor, target: Tensor) -> Tensor:
    """Negative cosine similarity of each row pair, averaged over rows (in [-1, 1])."""
    p = F.normalize(prediction, p=2, dim=-1)
    t = F.normalize(target, p=2, dim=-1)
    return -(p * t).sum(dim=-1).mean()


def _get_criterion(name: str) -> ReconstructionCriterion:
    if name not in RECONSTRUCTION_CRITERIA:
        raise ValueError(
            f"unknown reconstruction loss {name!r} (allowed: {', '.join(RECONSTRUCTION_CRITERIA.names())})"
        )
    return RECONSTRUCTION_CRITERIA.get(name)


def representation_decoder(emb_dim: int) -> nn.Sequential:
    """``Linear(D, D) - BatchNorm1d(D) - ReLU - Linear(D, D)``, mapping [B, D] -> [B, D]."""
    return nn.Sequential(
        nn.Linear(emb_dim, emb_dim),
        nn.BatchNorm1d(emb_dim),
        nn.ReLU(),
        nn.Linear(emb_dim, emb_dim),
    )


def _check_dims(emb_dim: int, source: Tensor, target: Tensor) -> None:
    if source.dim() != 2 or source.shape != target.shape or source.shape[1] != emb_dim:
        raise ValueError(
            f"expected source and target of shape [B, {emb_dim}], got {tuple(source.shape)} and "
            f"{tuple(target.shape)}"
        )


def _check_common(emb_dim: int, loss: str) -> ReconstructionCriterion:
    if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
        raise ValueError(f"emb_dim must be an int >= 1, got {emb_dim!r}")
    return _get_criterion(loss)


class VariationalReconstructor(nn.Module):
    """One direction of VRR: reconstructs ``target`` [B, D] from ``source`` [B, D].

    Args:
        emb_dim: D; 300 (released).
        beta: weight of the KL term; 2.0 (released).
        loss: reconstruction criterion, one of "l2", "l1", "cosine"; "l2" (released).
        detach_target: stop the gradient into the target view; True (released).

    ``forward(source, target, eps=None) -> (loss, {"recon", "kl"})``; ``eps`` [B, D] replaces the
    standard-normal draw of the reparameterisation (for tests and reproducible evaluation).
    """

    def __init__(self, emb_dim: int = 300, beta: float = 2.0, loss: str = "l2", detach_target: bool = True):
        super().__init__()
        self.criterion = _check_common(emb_dim, loss)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.emb_dim = emb_dim
        self.beta = float(beta)
        self.loss_name = loss
        self.detach_target = bool(detach_target)
        self.fc_mu = nn.Linear(emb_dim, emb_dim)
        self.fc_var = nn.Linear(emb_dim, emb_dim)  # log-variance
        self.decoder = representation_decoder(emb_dim)

    def forward(self, source: Tensor, target: Tensor, eps: Optional[Tensor] = None) -> Tuple[Tensor, Metrics]:
        _check_dims(self.emb_dim, source, target)
        if self.detach_target:
            target = target.detach()
        mu = self.fc_mu(source)
        logvar = self.fc_var(source)
        std = torch.exp(0.5 * logvar)
        if eps is None:
            eps = torch.randn_like(std)
        elif eps.shape != std.shape:
            raise ValueError(f"eps must have shape {tuple(std.shape)}, got {tuple(eps.shape)}")
        z = mu + eps * std
        recon = self.criterion(self.decoder(z), target)
        kl = torch.mean(-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
        loss = recon + self.beta * kl
        return loss, {"recon": float(recon.detach()), "kl": float(kl.detach())}

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss={self.loss_name!r}, detach_target={self.detach_target}"


class Reconstructor(nn.Module):
    """One direction of RR: ``loss = criterion(decoder(source), target)``.

    Args:
        emb_dim: D; 300 (released).
        loss: one of "l2", "l1", "cosine"; "l2" (released).
        detach_target: stop the gradient into the target view; True (released).

    ``forward(source [B, D], target [B, D]) -> (loss, {})`` (the loss is the reconstruction).
    """

    def __init__(self, emb_dim: int = 300, loss: str = "l2", detach_target: bool = True):
        super().__init__()
        self.criterion = _check_common(emb_dim, loss)
        self.emb_dim = emb_dim
        self.loss_name = loss
        self.detach_target = bool(detach_target)
        self.decoder = representation_decoder(emb_dim)

    def forward(self, source: Tensor, target: Tensor) -> Tuple[Tensor, Metrics]:
        _check_dims(self.emb_dim, source, target)
        if self.detach_target:
            target = target.detach()
        return self.criterion(self.decoder(source), target), {}

    def extra_repr(self) -> str:
        return f"loss={self.loss_name!r}, detach_target={self.detach_target}"


def _merge(loss_23: Tensor, parts_23: Metrics, loss_32: Tensor, parts_32: Metrics) -> Tuple[Tensor, Metrics]:
    metrics = {"loss_2d_3d": float(loss_23.detach()), "loss_3d_2d": float(loss_32.detach())}
    for name, value in parts_23.items():
        metrics[f"{name}_2d_3d"] = value
    for name, value in parts_32.items():
        metrics[f"{name}_3d_2d"] = value
    return (loss_23 + loss_32) / 2, metrics


@OBJECTIVES.register("vrr")
class VRR(nn.Module):
    """Variational representation reconstruction in both directions (GraphMVP's default).

    Args (defaults are the released GraphMVP settings):
        emb_dim: D of both views; 300.
        beta: KL weight; 2.0.
        loss: "l2" (default), "l1" or "cosine".
        detach_target: True.

    ``forward(z2d [B, D], z3d [B, D], eps_to_3d=None, eps_to_2d=None) -> (loss, metrics)``:
    loss = (to_3d(z2d -> z3d) + to_2d(z3d -> z2d)) / 2; metrics ``loss_2d_3d``, ``loss_3d_2d``,
    ``recon_2d_3d``, ``kl_2d_3d``, ``recon_3d_2d``, ``kl_3d_2d``.
    """

    kind = "generative"

    def __init__(self, emb_dim: int = 300, beta: float = 2.0, loss: str = "l2", detach_target: bool = True):
        super().__init__()
        self.to_3d = VariationalReconstructor(emb_dim, beta=beta, loss=loss, detach_target=detach_target)
        self.to_2d = VariationalReconstructor(emb_dim, beta=beta, loss=loss, detach_target=detach_target)

    def forward(
        self,
        z2d: Tensor,
        z3d: Tensor,
        eps_to_3d: Optional[Tensor] = None,
        eps_to_2d: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Metrics]:
        loss_23, parts_23 = self.to_3d(z2d, z3d, eps=eps_to_3d)
        loss_32, parts_32 = self.to_2d(z3d, z2d, eps=eps_to_2d)
        return _merge(loss_23, parts_23, loss_32, parts_32)


@OBJECTIVES.register("rr")
class RR(nn.Module):
    """Deterministic representation reconstruction in both directions.

    Args (defaults as for VRR): emb_dim 300, loss "l2" ("l1", "cosine"), detach_target True.

    ``forward(z2d [B, D], z3d [B, D]) -> (loss, metrics)``: loss = (to_3d + to_2d) / 2; metrics
    ``loss_2d_3d``, ``loss_3d_2d``.
    """

    kind = "generative"

    def __init__(self, emb_dim: int = 300, loss: str = "l2", detach_target: bool = True):
        super().__init__()
        self.to_3d = Reconstructor(emb_dim, loss=loss, detach_target=detach_target)
        self.to_2d = Reconstructor(emb_dim, loss=loss, detach_target=detach_target)

    def forward(self, z2d: Tensor, z3d: Tensor) -> Tuple[Tensor, Metrics]:
        loss_23, parts_23 = self.to_3d(z2d, z3d)
        loss_32, parts_32 = self.to_2d(z3d, z2d)
        return _merge(loss_23, parts_23, loss_32, parts_32)

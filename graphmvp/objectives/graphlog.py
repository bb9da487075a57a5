"""GraphLoG (Xu et al., "Self-supervised Graph-level Representation Learning with Local and
Global Structure", ICML 2021): local-instance contrast between a graph and its masked view, and
global semantic structure through hierarchical prototypes.

Facts from the paper and its release (DeepGraphLearning/GraphLoG, ``pretrain_graphlog.py``):

* Correlated view: ``int(0.3 n + 1)`` atoms of each graph get the mask token (type 119,
  chirality 0); bonds are unchanged. Both views are encoded by the same GNN; node and pooled
  graph representations pass through a projection head ``Linear(D, D) - ReLU - Linear(D, D)``.
  Similarities are cosine similarities divided by the temperature ``tau = 0.04``.
* Node term (weight 1): for every masked atom, its masked-view representation is contrasted
  against the original-view representations of the atoms of the *same* molecule
  (:func:`intra_graph_nce`).
* Graph term (weight 1): every masked-view graph against the original views of all graphs of the
  batch, the positive being its own original (:func:`inter_graph_nce`).
* Global term (weight 0.1): hierarchical prototypes (3 levels, 50 candidates per level) of the
  projected graph representations of the original view. Top-down, each graph picks the most
  similar active prototype of the top level, then the most similar among that prototype's
  children one level down, and so on; each level contributes ``-log softmax`` of the picked
  prototype among the candidates it was picked from, and each prototype below the top one
  ``-log softmax`` of its parent among the prototypes of the level above
  (:func:`hierarchical_prototype_nce`). Prototypes are parameters trained by the same optimiser.
* Schedule: one epoch with the local terms only; then the prototypes are initialised from the
  encoder's projected graph representations of the whole data set (:meth:`GraphLoG.initialize_prototypes`):
  the lowest level by 5 passes of nearest-prototype moving averages (decay 0.95) from random
  vectors, keeping prototypes chosen at least twice; each higher level by rival-penalised
  competitive learning over the level below (20 rounds), keeping the prototypes that win in the
  last round (:func:`ema_prototype_update`, :func:`rpcl_level`).
* Released optimisation: batch 512, lr 1e-3, 1 local + 10 global epochs.

Deviations and choices (documented in ``docs/methods.md``):

* Node term positive: the paper pairs each atom with its own counterpart in the other view
  (``node_positive="counterpart"``, the default). The released code instead counts every masked
  atom of the molecule as a positive of every masked atom (``node_positive="masked-set"``).
* Prototypes live in fixed-size tensors ``[levels, 50, D]`` with an ``active`` mask and a
  ``parent`` index per prototype instead of being cut down to the active ones, so that the
  optimiser can hold them from the start and ``--resume`` restores them with the state dict;
  until initialised they get a zero gradient (DDP expects every parameter in every step).
* In an upper level's competitive learning the rival is the best prototype other than the
  winner (the release zeroes the winner's similarity and takes the arg-max, which picks the winner
  again when every other similarity is negative).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contrastive import infonce_one_way
from .registry import OBJECTIVES, Metrics

#: how the node term chooses the positives of a masked atom (see the module docstring)
NODE_POSITIVES = ("counterpart", "masked-set")


# -- the local terms ---------------------------------------------------------------------------
def inter_graph_nce(graph_reps: Tensor, masked_graph_reps: Tensor, tau: float) -> Tuple[Tensor, Tensor]:
    """Graph-level InfoNCE between a batch's original and masked views.

    Args:
        graph_reps, masked_graph_reps: float [B, D] (projected; compared by cosine similarity).
        tau: temperature.

    Returns:
        ``(loss, accuracy)``: ``loss`` = mean over masked graphs j of
        ``-log softmax_i(cos(g'_j, g_i) / tau)[j]``; accuracy = fraction of j whose most similar
        original is g_j.
    """
    if graph_reps.shape != masked_graph_reps.shape or graph_reps.dim() != 2:
        raise ValueError(f"graph reps must both be [B, D], got {tuple(graph_reps.shape)} and {tuple(masked_graph_reps.shape)}")
    return infonce_one_way(F.normalize(masked_graph_reps, dim=1), F.normalize(graph_reps, dim=1), tau)


def intra_graph_nce(
    node_reps: Tensor,
    masked_node_reps: Tensor,
    node_graph: Tensor,
    masked_index: Tensor,
    tau: float,
    positive: str = "counterpart",
) -> Tuple[Tensor, Tensor]:
    """Node-level InfoNCE within each molecule, over the masked atoms.

    Args:
        node_reps, masked_node_reps: float [N, D], the N atoms of the batch in the original and
            the masked view (projected; compared by cosine similarity).
        node_graph: int64 [N], the molecule of each atom (0..B-1, non-decreasing: a DGL batch).
        masked_index: int64 [M], the masked atoms (ids in 0..N-1).
        tau: temperature.
        positive: ``"counterpart"``: the positive of masked atom m is atom m of the original view;
            ``"masked-set"``: every masked atom of m's molecule (the released code).

    Returns:
        ``(loss, accuracy)``: for each masked atom m of molecule b with logits
        ``l_i = cos(h'_m, h_i) / tau`` over the atoms i of b, the loss is
        ``logsumexp_i l_i - logsumexp_{i positive} l_i``, averaged over m; accuracy = fraction
        of m whose arg-max i is a positive.
    """
    if positive not in NODE_POSITIVES:
        raise ValueError(f"positive={positive!r}: allowed: {', '.join(NODE_POSITIVES)}")
    if node_reps.shape != masked_node_reps.shape or node_reps.dim() != 2:
        raise ValueError(f"node reps must both be [N, D], got {tuple(node_reps.shape)} and {tuple(masked_node_reps.shape)}")
    if masked_index.numel() == 0:
        raise ValueError("no masked atoms: masked_index is empty")
    n, dim = node_reps.shape
    num_graphs = int(node_graph.max()) + 1 if n else 0
    counts = torch.bincount(node_graph, minlength=num_graphs)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(n, device=node_reps.device) - starts[node_graph]
    width = int(counts.max())
    # per molecule, padded: original [B, W, D], masked view [B, W, D]; sims [B, W (i), W (j)]
    original = node_reps.new_zeros(num_graphs, width, dim)
    original[node_graph, local] = F.normalize(node_reps, dim=1)
    masked = node_reps.new_zeros(num_graphs, width, dim)
    masked[node_graph, local] = F.normalize(masked_node_reps, dim=1)
    sims = torch.bmm(original, masked.transpose(1, 2)) / tau
    graph_m, local_m = node_graph[masked_index], local[masked_index]
    logits = sims[graph_m, :, local_m]  # [M, W]: masked atom m against the atoms i of its molecule
    slots = torch.arange(width, device=node_reps.device)
    valid = slots.unsqueeze(0) < counts[graph_m].unsqueeze(1)
    if positive == "counterpart":
        is_positive = slots.unsqueeze(0) == local_m.unsqueeze(1)
    else:
        masked_slot = torch.zeros(num_graphs, width, dtype=torch.bool, device=node_reps.device)
        masked_slot[graph_m, local_m] = True
        is_positive = masked_slot[graph_m]
    neg_inf = torch.finfo(logits.dtype).min
    all_logits = logits.masked_fill(~valid, neg_inf)
    pos_logits = logits.masked_fill(~is_positive, neg_inf)
    loss = (torch.logsumexp(all_logits, dim=1) - torch.logsumexp(pos_logits, dim=1)).mean()
    with torch.no_grad():
        best = all_logits.argmax(dim=1)
        acc = is_positive.gather(1, best.unsqueeze(1)).float().mean()
    return loss, acc


# -- the global term ---------------------------------------------------------------------------
def hierarchical_prototype_nce(
    graph_reps: Tensor, prototypes: Tensor, active: Tensor, parent: Tensor, tau: float
) -> Tuple[Tensor, Tensor]:
    """GraphLoG's prototype loss over a hierarchy of L levels (level 0 = lowest).

    Args:
        graph_reps: float [B, D] (projected graph representations).
        prototypes: float [L, K, D]; only ``active`` rows take part.
        active: bool [L, K].
        parent: int64 [L-1, K]: for an active prototype of level l < L-1, its parent's row in
            level l+1 (an active row); ignored for inactive rows.
        tau: temperature (cosine similarities / tau).

    Returns:
        ``(loss, chosen)``: ``chosen`` int64 [L, B] is each graph's prototype per level, picked
        top-down (top: the most similar active prototype; level l: the most similar among the
        children of the level-(l+1) choice). ``loss`` = sum over levels of the mean over graphs
        of ``-log softmax`` of the chosen prototype among those candidates, plus, for every
        level l < L-1, the mean over its active prototypes of ``-log softmax`` of the parent
        among the active prototypes of level l+1.
    """
    levels = prototypes.shape[0]
    if active.shape != prototypes.shape[:2] or parent.shape != (max(levels - 1, 0), prototypes.shape[1]):
        raise ValueError(
            f"prototypes {tuple(prototypes.shape)}, active {tuple(active.shape)} and parent {tuple(parent.shape)} "
            "do not describe one hierarchy ([L, K, D], [L, K], [L-1, K])"
        )
    if not bool(active.any(dim=1).all()):
        raise ValueError("every prototype level needs at least one active prototype")
    z = F.normalize(graph_reps, dim=1)
    protos = F.normalize(prototypes, dim=2)
    neg_inf = torch.finfo(z.dtype).min
    chosen = torch.zeros(levels, z.shape[0], dtype=torch.int64, device=z.device)
    loss = z.new_zeros(())
    for level in range(levels - 1, -1, -1):
        logits = z @ protos[level].t() / tau  # [B, K]
        allowed = active[level].unsqueeze(0).expand_as(logits)
        if level < levels - 1:
            allowed = allowed & (parent[level].unsqueeze(0) == chosen[level + 1].unsqueeze(1))
        logits = logits.masked_fill(~allowed, neg_inf)
        pick = logits.detach().argmax(dim=1)
        chosen[level] = pick
        loss = loss + F.cross_entropy(logits, pick)
        if level < levels - 1:
            rows = torch.nonzero(active[level]).flatten()
            upper = torch.nonzero(active[level + 1]).flatten()
            if not bool(active[level + 1, parent[level, rows]].all()):
                raise ValueError(f"an active prototype of level {level} has an inactive parent in level {level + 1}")
            proto_logits = protos[level, rows] @ protos[level + 1, upper].t() / tau  # [K_l, K_{l+1}]
            # the parent's position among the active upper prototypes
            position = torch.searchsorted(upper, parent[level, rows])
            loss = loss + F.cross_entropy(proto_logits, position)
    return loss, chosen


@torch.no_grad()
def ema_prototype_update(prototypes: Tensor, counts: Tensor, reps: Tensor, decay: float) -> None:
    """One batch of GraphLoG's lowest-level initialisation, in place.

    Each row of ``reps`` [B, D] is assigned to its most cosine-similar row of ``prototypes``
    [K, D]; every prototype with assignments moves to ``decay * p + (1 - decay) * mean(assigned
    reps)``, and ``counts`` [K] (float) grows by its number of assignments.
    """
    sims = F.normalize(reps, dim=1) @ F.normalize(prototypes, dim=1).t()
    assign = F.one_hot(sims.argmax(dim=1), prototypes.shape[0]).to(reps.dtype)  # [B, K]
    batch_counts = assign.sum(0)
    counts += batch_counts
    hit = batch_counts > 0
    means = (assign.t() @ reps)[hit] / batch_counts[hit].unsqueeze(1)
    prototypes[hit] = decay * prototypes[hit] + (1 - decay) * means


@torch.no_grad()
def rpcl_level(lower: Tensor, candidates: Tensor, rounds: int, decay: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Build one prototype level above ``lower`` by rival-penalised competitive learning.

    Args:
        lower: float [n, D], the (active) prototypes of the level below, visited in row order.
        candidates: float [K, D], the level's initial vectors (copied, not modified).
        rounds: passes over ``lower`` (20 in GraphLoG).
        decay: moving-average decay (0.95).

    For each lower prototype x: the winner w = arg-max of the dot products ``c . x`` moves to
    ``decay * w + (1 - decay) * x``; the rival r (the best other candidate) is pushed away,
    ``r + (1 - decay) * (r - x)``.

    Returns:
        ``(prototypes [K, D], active [K] bool, parent [n] int64)``: the updated vectors, the
        candidates that won at least once in the last round, and each lower prototype's winner in
        the last round (always an active row).
    """
    protos = candidates.clone()
    parent = torch.zeros(lower.shape[0], dtype=torch.int64, device=lower.device)
    active = torch.zeros(protos.shape[0], dtype=torch.bool, device=lower.device)
    for r in range(rounds):
        for i in range(lower.shape[0]):
            x = lower[i]
            sims = protos @ x
            winner = int(sims.argmax())
            parent[i] = winner
            if r == rounds - 1:
                active[winner] = True
            protos[winner] = decay * protos[winner] + (1 - decay) * x
            if protos.shape[0] > 1:
                sims[winner] = -torch.inf
                rival = int(sims.argmax())
                protos[rival] = protos[rival] + (1 - decay) * (protos[rival] - x)
    return protos, active, parent


# -- the objective -----------------------------------------------------------------------------
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"graphlog option {name}={value!r}: must be an integer >= 1")
    return int(value)


@OBJECTIVES.register("graphlog")
class GraphLoG(nn.Module):
    """GraphLoG's loss with its projection head and hierarchical prototypes (module docstring).

    Args:
        emb_dim: D of the encoder's representations; 300.
        tau: temperature of every term; 0.04.
        num_prototypes: candidate prototypes per level; 50.
        hierarchy: prototype levels; 3.
        decay_ratio: moving-average decay of the prototype initialisation; 0.95.
        w_node, w_graph, w_proto: weights of the node, graph and prototype terms; 1, 1, 0.1.
        node_positive: ``"counterpart"`` (paper) or ``"masked-set"`` (release), see
            :func:`intra_graph_nce`.
        local_epochs: epochs with the local terms only before the prototypes are initialised; 1.
        init_passes: passes over the data of the lowest level's initialisation; 5.
        init_batch_size: molecules per batch in those passes; 512 (the release's batch size).
        init_molecules: molecules used for the initialisation (0: all; else a seeded subset).
        rpcl_rounds: rounds of competitive learning per upper level; 20.

    State (``state_dict``, so ``--resume`` restores it): ``prototypes`` parameter [L, K, D],
    buffers ``proto_active`` bool [L, K], ``proto_parent`` int64 [L-1, K] and ``proto_ready``
    (bool: initialised; until then the prototype term is absent).

    ``forward(node_reps [N, D], masked_node_reps [N, D], graph_reps [B, D], masked_graph_reps
    [B, D], node_graph [N] int64, masked_index [M] int64) -> (loss, metrics)``, with the
    encoder's (unprojected) representations; metrics ``acc_graphlog_node``,
    ``acc_graphlog_graph`` and the unweighted terms ``graphlog_node``, ``graphlog_graph``,
    ``graphlog_proto`` (the last only once the prototypes exist).
    """

    kind = "2d"

    def __init__(
        self,
        emb_dim: int = 300,
        tau: float = 0.04,
        num_prototypes: int = 50,
        hierarchy: int = 3,
        decay_ratio: float = 0.95,
        w_node: float = 1.0,
        w_graph: float = 1.0,
        w_proto: float = 0.1,
        node_positive: str = "counterpart",
        local_epochs: int = 1,
        init_passes: int = 5,
        init_batch_size: int = 512,
        init_molecules: int = 0,
        rpcl_rounds: int = 20,
    ):
        super().__init__()
        emb_dim = _positive_int("emb_dim", emb_dim)
        self.num_prototypes = _positive_int("num_prototypes", num_prototypes)
        self.hierarchy = _positive_int("hierarchy", hierarchy)
        self.init_passes = _positive_int("init_passes", init_passes)
        self.init_batch_size = _positive_int("init_batch_size", init_batch_size)
        self.rpcl_rounds = _positive_int("rpcl_rounds", rpcl_rounds)
        for name, value in (("local_epochs", local_epochs), ("init_molecules", init_molecules)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"graphlog option {name}={value!r}: must be an integer >= 0")
        if not tau > 0:
            raise ValueError(f"graphlog option tau={tau!r}: must be > 0")
        if not 0.0 <= decay_ratio < 1.0:
            raise ValueError(f"graphlog option decay_ratio={decay_ratio!r}: must be in [0, 1)")
        for name, value in (("w_node", w_node), ("w_graph", w_graph), ("w_proto", w_proto)):
            if not value >= 0:
                raise ValueError(f"graphlog option {name}={value!r}: must be >= 0")
        if node_positive not in NODE_POSITIVES:
            raise ValueError(f"graphlog option node_positive={node_positive!r}: allowed: {', '.join(NODE_POSITIVES)}")
        self.tau = float(tau)
        self.decay_ratio = float(decay_ratio)
        self.w_node, self.w_graph, self.w_proto = float(w_node), float(w_graph), float(w_proto)
        self.node_positive = node_positive
        self.local_epochs = int(local_epochs)
        self.init_molecules = int(init_molecules)
        self.projection = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.ReLU(), nn.Linear(emb_dim, emb_dim))
        self.prototypes = nn.Parameter(torch.zeros(self.hierarchy, self.num_prototypes, emb_dim))
        self.register_buffer("proto_active", torch.zeros(self.hierarchy, self.num_prototypes, dtype=torch.bool))
        self.register_buffer("proto_parent", torch.zeros(self.hierarchy - 1, self.num_prototypes, dtype=torch.int64))
        self.register_buffer("proto_ready", torch.zeros((), dtype=torch.bool))

    @property
    def prototypes_ready(self) -> bool:
        return bool(self.proto_ready)

    def forward(
        self,
        node_reps: Tensor,
        masked_node_reps: Tensor,
        graph_reps: Tensor,
        masked_graph_reps: Tensor,
        node_graph: Tensor,
        masked_index: Tensor,
    ) -> Tuple[Tensor, Metrics]:
        project = self.projection
        node_loss, node_acc = intra_graph_nce(
            project(node_reps), project(masked_node_reps), node_graph, masked_index, self.tau, self.node_positive
        )
        z = project(graph_reps)
        graph_loss, graph_acc = inter_graph_nce(z, project(masked_graph_reps), self.tau)
        loss = self.w_node * node_loss + self.w_graph * graph_loss
        metrics: Metrics = {
            "acc_graphlog_node": float(node_acc),
            "acc_graphlog_graph": float(graph_acc),
            "graphlog_node": float(node_loss.detach()),
            "graphlog_graph": float(graph_loss.detach()),
        }
        if self.prototypes_ready:
            proto_loss, _ = hierarchical_prototype_nce(z, self.prototypes, self.proto_active, self.proto_parent, self.tau)
            loss = loss + self.w_proto * proto_loss
            metrics["graphlog_proto"] = float(proto_loss.detach())
        else:  # a zero gradient until they exist: DDP expects every parameter in every step
            loss = loss + 0.0 * self.prototypes.sum()
        return loss, metrics

    @torch.no_grad()
    def initialize_prototypes(
        self, graph_rep_batches: Callable[[int], Iterable[Tensor]], generator: Optional[torch.Generator] = None
    ) -> None:
        """Initialise the hierarchy (GraphLoG's procedure, module docstring) and mark it ready.

        Args:
            graph_rep_batches: ``pass_index -> iterable of float [b, D]``, the encoder's
                (unprojected) pooled representations of the data, batch by batch, for each of
                the ``init_passes`` passes.
            generator: CPU generator of the random starting vectors (uniform in [0, 1), as in
                the release).
        """
        levels, k, dim = self.prototypes.shape
        device = self.prototypes.device

        def start_vectors() -> Tensor:
            return torch.rand(k, dim, generator=generator).to(device)

        lowest = start_vectors()
        counts = torch.zeros(k, device=device)
        for p in range(self.init_passes):
            for reps in graph_rep_batches(p):
                ema_prototype_update(lowest, counts, self.projection(reps.to(device)), self.decay_ratio)
        active = torch.zeros(levels, k, dtype=torch.bool, device=device)
        active[0] = counts >= 2
        if not bool(active[0].any()):  # fewer than two representations in total
            active[0, int(counts.argmax())] = True
        vectors = [lowest]
        parent = torch.zeros(levels - 1, k, dtype=torch.int64, device=device)
        for level in range(1, levels):
            below = torch.nonzero(active[level - 1]).flatten()
            upper, upper_active, winners = rpcl_level(
                vectors[level - 1][below], start_vectors(), self.rpcl_rounds, self.decay_ratio
            )
            vectors.append(upper)
            active[level] = upper_active
            parent[level - 1, below] = winners
        self.prototypes.copy_(torch.stack(vectors))
        self.proto_active.copy_(active)
        self.proto_parent.copy_(parent)
        self.proto_ready.fill_(True)

    def active_counts(self) -> list[int]:
        """Active prototypes per level (lowest first)."""
        return [int(c) for c in self.proto_active.sum(dim=1)]


__all__ = [
    "GraphLoG",
    "NODE_POSITIVES",
    "ema_prototype_update",
    "hierarchical_prototype_nce",
    "inter_graph_nce",
    "intra_graph_nce",
    "rpcl_level",
]

"""The 2D objectives of GraphMVP-G (AttrMask) and GraphMVP-C (ContextPred)."""

import math

import pytest
import torch

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is imported)
import dgl

from graphmvp.objectives import OBJECTIVES, AttributeMasking, ContextPrediction, segment_mean

NODE_REPS = [
    [0.5, -1.0, 0.3],
    [1.2, 0.4, -0.7],
    [-0.6, 0.9, 1.1],
    [0.0, -0.3, 0.8],
]


def softplus(s):
    return math.log1p(math.exp(s))


def dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def fixed_classifier(model):
    """W[c][d] = 0.5 sin(0.7 c + 1.3 d), b[c] = 0.1 cos(c), as python lists and in the model."""
    n_cls, dim = model.classifier.weight.shape
    w = [[0.5 * math.sin(0.7 * c + 1.3 * d) for d in range(dim)] for c in range(n_cls)]
    b = [0.1 * math.cos(c) for c in range(n_cls)]
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(w))
        model.classifier.bias.copy_(torch.tensor(b))
    return w, b


# ---------------------------------------------------------------- AttrMask
def test_attrmask_matches_hand_cross_entropy():
    model = AttributeMasking(emb_dim=3)
    assert model.classifier.out_features == 119
    w, b = fixed_classifier(model)
    masked = [0, 2, 3]
    logits = {i: [dot(wc, NODE_REPS[i]) + bc for wc, bc in zip(w, b)] for i in masked}
    best_of_2 = max(range(119), key=lambda c: logits[2][c])
    true = [5, best_of_2, 118]  # exactly one prediction (atom 2) is right
    assert max(range(119), key=lambda c: logits[0][c]) != 5
    assert max(range(119), key=lambda c: logits[3][c]) != 118
    want = sum(
        -logits[i][t] + math.log(sum(math.exp(v) for v in logits[i])) for i, t in zip(masked, true)
    ) / len(masked)

    loss, metrics = model(torch.tensor(NODE_REPS), torch.tensor(masked), torch.tensor(true))
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert metrics["acc_attrmask"] == pytest.approx(1 / 3)


def test_attrmask_bad_arguments():
    model = AttributeMasking(emb_dim=3)
    reps = torch.tensor(NODE_REPS)
    with pytest.raises(ValueError, match="0..118"):
        model(reps, torch.tensor([0]), torch.tensor([119]))  # the mask token is not a target
    with pytest.raises(ValueError, match="empty"):
        model(reps, torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match="equal length"):
        model(reps, torch.tensor([0, 1]), torch.tensor([3]))


# ---------------------------------------------------------------- ContextPred
def molecule_graph(atoms, bonds):
    """2D-convention graph from atom rows (type, chirality) and bonds (u, v, type, direction)."""
    src = [u for u, v, _, _ in bonds] + [v for u, v, _, _ in bonds]
    dst = [v for u, v, _, _ in bonds] + [u for u, v, _, _ in bonds]
    feats = [[t, d] for _, _, t, d in bonds] * 2
    g = dgl.graph((torch.tensor(src, dtype=torch.int64), torch.tensor(dst, dtype=torch.int64)), num_nodes=len(atoms))
    g.ndata["atom"] = torch.tensor(atoms, dtype=torch.int64)
    g.edata["bond"] = torch.tensor(feats, dtype=torch.int64).reshape(-1, 2)
    return g


def context_batch():
    g1 = molecule_graph([[5, 0], [5, 0], [7, 0]], [(0, 1, 0, 0), (1, 2, 0, 0)])
    g2 = molecule_graph([[5, 0], [6, 1], [5, 2], [15, 0]], [(0, 1, 3, 0), (1, 2, 1, 0), (2, 3, 0, 1)])
    g3 = molecule_graph([[7, 0], [5, 0]], [(0, 1, 1, 2)])
    return dgl.batch([g1, g2, g3])  # context nodes 0-2 | 3-6 | 7-8


OVERLAP = {0: [0, 2], 1: [3, 4, 6], 2: [8]}
SUBSTRUCT = torch.tensor(
    [
        [0.2, -0.1, 0.5, 0.3],
        [1.0, 0.3, -0.4, 0.8],
        [-0.5, 0.6, 0.1, -0.2],
        [0.7, -0.9, 0.2, 0.4],
        [0.1, 0.1, 0.9, -0.6],
        [-0.8, 0.2, -0.3, 1.1],
    ]
)
CENTERS = [1, 3, 5]


def overlap_tensors():
    index = [i for b in sorted(OVERLAP) for i in OVERLAP[b]]
    segment = [b for b in sorted(OVERLAP) for _ in OVERLAP[b]]
    return torch.tensor(index), torch.tensor(segment)


def test_contextpred_defaults():
    model = ContextPrediction()
    assert len(model.context_gin.gnns) == 3  # r2 - r1 = 7 - 4
    assert model.context_gin.emb_dim == 300 and model.context_gin.jk == "last"
    assert model.num_negatives == 1
    assert OBJECTIVES.get("contextpred") is ContextPrediction and ContextPrediction.kind == "2d"


def test_contextpred_matches_direct_computation():
    torch.manual_seed(0)
    model = ContextPrediction(emb_dim=4)
    graph = context_batch()
    index, segment = overlap_tensors()
    loss, metrics = model(SUBSTRUCT, torch.tensor(CENTERS), graph, index, segment)

    with torch.no_grad():
        ctx_nodes = model.context_gin(graph).tolist()  # same (training) mode, no dropout
    sub = [SUBSTRUCT[c].tolist() for c in CENTERS]
    ctx = [[sum(ctx_nodes[i][d] for i in OVERLAP[b]) / len(OVERLAP[b]) for d in range(4)] for b in range(3)]
    pos = [dot(sub[b], ctx[b]) for b in range(3)]
    neg = [dot(sub[b], ctx[(b + 1) % 3]) for b in range(3)]  # one negative by cyclic shift
    want = sum(softplus(-s) for s in pos) / 3 + sum(softplus(s) for s in neg) / 3
    want_acc = (sum(s > 0 for s in pos) + sum(s < 0 for s in neg)) / 6
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert metrics["acc_contextpred"] == pytest.approx(want_acc)
    # the opposite shift would give a different loss on these numbers
    neg_back = [dot(sub[b], ctx[(b - 1) % 3]) for b in range(3)]
    assert want != pytest.approx(sum(softplus(-s) for s in pos) / 3 + sum(softplus(s) for s in neg_back) / 3, rel=1e-4)


def test_contextpred_gradients_reach_context_gin_and_centres_only():
    torch.manual_seed(1)
    model = ContextPrediction(emb_dim=4)
    sub = SUBSTRUCT.clone().requires_grad_()
    index, segment = overlap_tensors()
    loss, _ = model(sub, torch.tensor(CENTERS), context_batch(), index, segment)
    loss.backward()
    for name, p in model.context_gin.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    rows_with_grad = (sub.grad.abs().sum(dim=1) > 0).nonzero().flatten().tolist()
    assert rows_with_grad == CENTERS


def test_contextpred_bad_arguments():
    model = ContextPrediction(emb_dim=4)
    graph = context_batch()
    index, segment = overlap_tensors()
    centers = torch.tensor(CENTERS)
    with pytest.raises(ValueError, match=r"samples \[2\]"):
        model(SUBSTRUCT, centers, graph, index[:-1], segment[:-1])  # sample 2 loses its only atom
    with pytest.raises(ValueError, match="0..2"):
        model(SUBSTRUCT, centers, graph, index, segment + 1)
    with pytest.raises(ValueError, match="equal length"):
        model(SUBSTRUCT, centers, graph, index, segment[:-1])
    with pytest.raises(ValueError, match="num_negatives"):
        ContextPrediction(num_negatives=0)


def test_segment_mean():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    out = segment_mean(values, torch.tensor([1, 0, 1]), 2)
    assert out.tolist() == [[3.0, 4.0], [5.5, 1.0]]

"""PyTorch eager reference of one SAL training step, for the benchmark only (torch is an optional extra).

Mirrors sal_jax's built-in levels and loss: CE + λ_h Σ_j MSE(P_j(h_a(j)), h^T_j) + λ_o T² KL, with the
teacher frozen (no_grad, eval mode) and Adam over the student and its projections.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden_layers: int, width: int, classes: int):
        super().__init__()
        dims = [in_dim] + [width] * hidden_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h, feats = x.flatten(1), []
        for layer in self.layers:
            h = torch.relu(layer(h))
            feats.append(h)
        return self.head(h), feats


class CNN(nn.Module):
    def __init__(self, in_ch: int, channels: tuple[int, ...], classes: int):
        super().__init__()
        chans = [in_ch, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in zip(chans, chans[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c, momentum=0.1) for c in channels)
        self.head = nn.Linear(channels[-1], classes)

    def forward(self, x):  # NHWC in, like the JAX version
        h, feats = x.permute(0, 3, 1, 2), []
        for conv, bn in zip(self.convs, self.bns):
            h = torch.relu(bn(conv(h)))
            if h.shape[-1] > 1:
                h = F.max_pool2d(h, 2)
            feats.append(h)
        return self.head(h.mean((2, 3))), feats


class RNN(nn.Module):
    def __init__(self, vocab: int, embed: int, layers: int, hidden: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        dims = [embed] + [hidden] * layers
        self.grus = nn.ModuleList(nn.GRU(a, b, batch_first=True) for a, b in zip(dims, dims[1:]))
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens):
        lengths = (tokens != 0).sum(1).clamp(min=1).cpu()
        h, feats = self.embed(tokens), []
        for gru in self.grus:
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, last = gru(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
            feats.append(last[0])
        return self.head(feats[-1]), feats


class Projection(nn.Module):
    """Resize space to the teacher's, then a linear map on channels (as sal_jax.projection)."""

    def __init__(self, student_shape, teacher_shape):
        super().__init__()
        self.spatial = teacher_shape[1:] if len(teacher_shape) == 3 else None
        self.linear = nn.Linear(student_shape[0], teacher_shape[0]) if student_shape[0] != teacher_shape[0] else None

    def forward(self, h):
        if self.spatial is not None and tuple(h.shape[2:]) != tuple(self.spatial):
            h = F.interpolate(h, size=self.spatial, mode="bilinear", align_corners=False)
        if self.linear is not None:
            h = self.linear(h.movedim(1, -1)).movedim(-1, 1) if h.dim() == 4 else self.linear(h)
        return h


def alignment(n_teacher: int, n_student: int) -> dict[int, int]:
    return {j: max(1, math.floor(j * n_student / n_teacher + 0.5)) for j in range(1, n_teacher + 1)}


def make_sal_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, lr: float = 1e-3,
                  hidden_weight: float = 1.0, output_weight: float = 1.0, temperature: float = 4.0):
    """A closure running one guided training step on (x, y); projections sized from a dummy forward."""
    teacher.eval()
    with torch.no_grad():
        _, t_feats = teacher(x)
        _, s_feats = student(x)
    align = alignment(len(t_feats), len(s_feats))
    projections = nn.ModuleDict({str(j): Projection(s_feats[a - 1].shape[1:], t_feats[j - 1].shape[1:])
                                 for j, a in align.items()}).to(x.device)
    optimizer = torch.optim.Adam(list(student.parameters()) + list(projections.parameters()), lr=lr)
    student.train()
    T = temperature

    def step(x, y):  # returns the loss tensor without reading it: no host sync per step
        with torch.no_grad():
            t_logits, t_feats = teacher(x)
        logits, feats = student(x)
        loss = F.cross_entropy(logits, y)
        hidden = sum(F.mse_loss(projections[str(j)](feats[a - 1]), t_feats[j - 1]) for j, a in align.items())
        kl = F.kl_div(F.log_softmax(logits / T, -1), F.log_softmax(t_logits / T, -1), log_target=True,
                      reduction="batchmean")
        loss = loss + hidden_weight * hidden + output_weight * T * T * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


PAIRS = ("mlp", "cnn", "rnn", "rnn_unpadded")  # the families with a PyTorch version


def build_pair(family: str):
    """The same teacher/student pairs as benchmarks/bench_sal.py's setups."""
    if family == "mlp":
        return MLP(784, 4, 256, 10), MLP(784, 8, 256, 10)
    if family == "cnn":
        return CNN(3, (16, 32), 10), CNN(3, (16, 32, 64), 10)
    if family in ("rnn", "rnn_unpadded"):
        return RNN(5000, 64, 1, 128, 6), RNN(5000, 64, 2, 128, 6)
    raise ValueError(family)


def make_plain_step(student: nn.Module, lr: float = 1e-3):
    """One plain (cross-entropy only) training step, for profiling the student alone."""
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    student.train()

    def step(x, y):
        loss = F.cross_entropy(student(x)[0], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def step_timer(family: str, batches: list[tuple], steps: int, guided: bool = True):
    """A closure timing `steps` eager SAL steps (plain steps if not `guided`), per step, on the given
    (x, y) NumPy batches."""
    import os
    import time

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores JAX may use too
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where JAX runs too, on a GPU machine
    teacher, student = (model.to(device) for model in build_pair(family))
    data = [(torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)) for x, y in batches]
    step = make_sal_step(student, teacher, data[0][0]) if guided else make_plain_step(student)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> float:
        synchronize()
        start = time.perf_counter()
        for i in range(steps):
            step(*data[i % len(data)])
        synchronize()  # a GPU's eager steps are queued: wait for the last one, as JAX's timer does
        return (time.perf_counter() - start) / steps
    return run

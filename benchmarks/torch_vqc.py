"""Benchmark-only: the paper's VQC evaluated the way its PyTorch stack does it.

A PennyLane QNode on ``default.qubit`` with ``interface="torch"``; a batch of inputs is passed as
one [B, 4] tensor to AngleEmbedding (PennyLane parameter broadcasting, which is what
``qml.qnn.TorchLayer`` does with a batch), no compilation, gradients by torch autograd.
Used only by `bench_vqc.py`; never imported by the package.
"""

from __future__ import annotations

import numpy as np
import pennylane as qml
import torch

NUM_QUBITS = 4


def make_qnode():
    dev = qml.device("default.qubit", wires=NUM_QUBITS)

    @qml.qnode(dev, interface="torch")
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(NUM_QUBITS))
        qml.BasicEntanglerLayers(weights, wires=range(NUM_QUBITS))
        return [qml.expval(qml.PauliZ(i)) for i in range(NUM_QUBITS)]

    return circuit


class TorchVQCStep:
    """One forward + backward: sum(expvals * cotangent), gradients w.r.t. angles and weights."""

    def __init__(self, angles: np.ndarray, weights: np.ndarray, cotangent: np.ndarray):
        self.qnode = make_qnode()
        self.angles = torch.tensor(angles, dtype=torch.float32, requires_grad=True)
        self.weights = torch.tensor(weights, dtype=torch.float32, requires_grad=True)
        self.cotangent = torch.tensor(cotangent, dtype=torch.float32)

    def __call__(self):
        self.angles.grad = None
        self.weights.grad = None
        out = torch.stack(self.qnode(self.angles, self.weights), dim=-1)  # [B, 4]
        loss = (out * self.cotangent).sum()
        loss.backward()
        return out.detach(), self.angles.grad, self.weights.grad

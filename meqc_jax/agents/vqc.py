"""The paper's variational quantum circuit (VQC) torso (paper Section IV-C, Section V-A).

The circuit acts on 4 qubits, all starting in |0>:

    AngleEmbedding(angles)          RX(angles[i]) on wire i                (one feature per wire)
    BasicEntanglerLayers(weights)   per layer l: RX(weights[l, i]) on wire i, then the CNOT ring
                                    CNOT(0,1), CNOT(1,2), CNOT(2,3), CNOT(3,0)
    measurement                     <Z_i> for i = 0..3

`circuit_expvals(angles, weights, backend=...)` evaluates it with one of two backends that give
the same numbers (to float rounding):

  * ``"pennylane"`` -- a PennyLane QNode on ``default.qubit`` with ``interface="jax"`` and
    ``diff_method="backprop"``: PennyLane's simulator written in jax operations, so it traces
    into jit, vmap, grad and lax.scan like any jnp code. Backprop is the only differentiation
    method used here: ``adjoint`` and ``parameter-shift`` run the device outside the trace
    through host callbacks (one device execution per sample, per shifted parameter for
    parameter-shift), which breaks batching under vmap into a host loop and costs orders of
    magnitude more at the batch sizes of PPO.

  * ``"jax"`` (default) -- a hand-written 4-qubit simulation in jnp that exploits the circuit's
    structure. With wire 0 as the most significant bit of the basis index (PennyLane's order):
      - the embedding of |0000> is the product state  psi_b = (-i)^|b| * r_b,  where
        r = kron_i [cos(a_i/2), sin(a_i/2)] is real and |b| is the number of ones in b;
      - the weight part is a 16x16 unitary U = P R_L ... P R_1 (R_l the kron of the layer's RX
        matrices, P the permutation of basis states made by the CNOT ring);
      - so with M = U diag((-i)^|b|), each expectation is a real quadratic form in r:
            <Z_i> = r^T A_i r,   A_i = Re(M^H Z_i M)   (Z_i diagonal, +1/-1 by bit i).
    The four real symmetric 16x16 matrices A depend only on the weights and are built once per
    call for the whole batch; the per-sample work is the [N, 16] x [16, 64] product A r and a
    contraction with r. Complex arithmetic is used only for A (complex64 in float32 mode,
    complex128 when inputs are float64 under JAX_ENABLE_X64); the rest is real.
    Derivatives come from a hand-written JVP rule (`jax.custom_jvp`, so grad, jacfwd and hessian
    all work) that uses two facts autodiff cannot see: A_i is symmetric, so
    d(r^T A_i r) = r^T dA_i r + 2 (A_i r)^T dr reuses the forward's A r; and d r / d a_j = P_j r / 2
    with P_j the signed permutation that applies [[0, -1], [1, 0]] to wire j, one constant [16, 64]
    matmul for all four angles instead of differentiating the Kronecker product. Forward + backward
    of a batch of 4096 is about 1.6x faster than plain autodiff of the same forward, and about 10x
    faster than the PennyLane backend on CPU (`benchmarks/bench_vqc.py`).

`circuit_expvals` takes angles [..., 4]: a batch [N, 4] runs the batched program directly (the
fast path the torso uses); a single [4] vector works too, also under `jax.vmap`.

`VQCTorso` is the paper's VQC replacement of the actor-critics' MLP torsos: a 64-unit input
layer, the 4-qubit circuit, and a 64-unit output layer.
"""

from __future__ import annotations

import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

NUM_QUBITS = 4
BACKENDS = ("jax", "pennylane")

_DIM = 2**NUM_QUBITS
# Basis index k = b_0 b_1 b_2 b_3 (wire 0 most significant); BITS[i, k] = bit of wire i in k.
_BITS = (np.arange(_DIM)[None, :] >> (NUM_QUBITS - 1 - np.arange(NUM_QUBITS))[:, None]) & 1
_Z_SIGNS = (1 - 2 * _BITS).astype(np.float64)  # [4, 16] eigenvalue of Z_i on each basis state
_POPCOUNT = _BITS.sum(axis=0)  # [16]


def _cnot_ring_permutation() -> np.ndarray:
    """src such that (P psi)[k] = psi[src[k]] for the ring CNOT(0,1), CNOT(1,2), CNOT(2,3), CNOT(3,0)."""
    dest = np.empty(_DIM, dtype=np.int64)
    for k in range(_DIM):
        bits = list(_BITS[:, k])
        for c in range(NUM_QUBITS):
            t = (c + 1) % NUM_QUBITS
            bits[t] ^= bits[c]
        dest[k] = sum(int(b) << (NUM_QUBITS - 1 - i) for i, b in enumerate(bits))
    src = np.empty_like(dest)
    src[dest] = np.arange(_DIM)
    return src


_RING_SRC = _cnot_ring_permutation()
_HIGHEST = jax.lax.Precision.HIGHEST  # no reduced-precision (e.g. TF32) matmuls on accelerators


def _float_dtype(angles, weights):
    return jnp.result_type(angles, weights, float)  # ints -> default float; keeps float32 / float64


def _check(angles, weights, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if jnp.ndim(angles) < 1 or jnp.shape(angles)[-1] != NUM_QUBITS:
        raise ValueError(f"angles must have shape (..., {NUM_QUBITS}), got {jnp.shape(angles)}")
    wshape = jnp.shape(weights)
    if len(wshape) != 2 or wshape[0] < 1 or wshape[1] != NUM_QUBITS:
        raise ValueError(f"weights must have shape (num_layers >= 1, {NUM_QUBITS}), got {wshape}")


def _rx_layer(theta):
    """kron_i RX(theta[i]) for the 4 wires: [16, 16] complex."""
    c, s = jnp.cos(theta / 2), jnp.sin(theta / 2)
    zero = jnp.zeros_like(c)
    # RX = [[c, -i s], [-i s, c]] per wire: [4, 2, 2]
    m = jax.lax.complex(jnp.stack([jnp.stack([c, zero], -1), jnp.stack([zero, c], -1)], -2),
                        jnp.stack([jnp.stack([zero, -s], -1), jnp.stack([-s, zero], -1)], -2))
    r = jnp.einsum("ab,cd,ef,gh->acegbdfh", m[0], m[1], m[2], m[3], precision=_HIGHEST)
    return r.reshape(_DIM, _DIM)


def heisenberg_observables(weights):
    """A [4, 16, 16] real symmetric, with <Z_i> = r^T A_i r for the embedding's real amplitudes r.

    Depends on the weights only; `circuit_expvals(backend="jax")` is this plus a quadratic form.
    """
    weights = jnp.asarray(weights)
    weights = weights.astype(_float_dtype(weights, weights))
    u = None
    for layer in range(weights.shape[0]):
        r = _rx_layer(weights[layer])
        u = r if u is None else jnp.matmul(r, u, precision=_HIGHEST)
        u = u[_RING_SRC, :]  # the CNOT ring permutes basis states (rows)
    phase = np.array([1, -1j, -1, 1j])[_POPCOUNT % 4]  # (-i)^|b|
    m = u * jnp.asarray(phase, dtype=u.dtype)[None, :]
    z = jnp.asarray(_Z_SIGNS, dtype=m.dtype)
    a = jnp.einsum("ki,zk,kj->zij", jnp.conj(m), z, m, precision=_HIGHEST)
    return jnp.real(a)


# _PJ[k, 16 j + k'] = (P_j)[k', k]: r @ _PJ stacks the four P_j r = 2 d r / d a_j as [N, 64].
# d/da [cos(a/2), sin(a/2)] = [[0, -1], [1, 0]] [cos(a/2), sin(a/2)] / 2 on wire j, so P_j moves each
# amplitude to the state with bit j flipped, negated where bit j was 0.
_PJ = np.zeros((_DIM, NUM_QUBITS * _DIM))
for _j in range(NUM_QUBITS):
    for _k in range(_DIM):
        _PJ[_k ^ (1 << (NUM_QUBITS - 1 - _j)), _j * _DIM + _k] = -1.0 if _BITS[_j, _k] == 0 else 1.0


def _embedding_amplitudes(angles):
    """r = kron_i [cos(a_i/2), sin(a_i/2)]: angles [N, 4] -> [N, 16] real.

    Amplitude k is the product over wires of cos or sin by the wire's bit in k: a select and a
    product over the (non-minor) wire axis, which XLA's CPU backend vectorizes well.
    """
    c, s = jnp.cos(angles / 2), jnp.sin(angles / 2)
    return jnp.prod(jnp.where(_BITS.astype(bool), s[:, :, None], c[:, :, None]), axis=1)


def _quadratic(x, r):
    """(x_i . r) for x [N, 64] viewed as [N, 4, 16] and r [N, 16] -> [N, 4]."""
    return jnp.matmul(x.reshape(-1, NUM_QUBITS, _DIM), r[:, :, None], precision=_HIGHEST)[..., 0]


@jax.custom_jvp
def _expvals_batch(angles, a_t):
    """<Z_i> = r^T A_i r for angles [N, 4] and a_t = [A_0 .. A_3] as [16, 64] -> [N, 4]."""
    r = _embedding_amplitudes(angles)
    return _quadratic(jnp.matmul(r, a_t, precision=_HIGHEST), r)


@functools.partial(_expvals_batch.defjvp, symbolic_zeros=True)
def _expvals_batch_jvp(primals, tangents):
    angles, a_t = primals
    d_angles, d_a_t = tangents
    r = _embedding_amplitudes(angles)
    ar = jnp.matmul(r, a_t, precision=_HIGHEST)  # (A_i r) for each i
    out = _quadratic(ar, r)
    tangent = jnp.zeros_like(out)
    if not isinstance(d_angles, SymbolicZero):
        pr = jnp.matmul(r, jnp.asarray(_PJ, r.dtype), precision=_HIGHEST).reshape(-1, NUM_QUBITS, _DIM)
        dr = 0.5 * jnp.matmul(d_angles[:, None, :], pr, precision=_HIGHEST)[:, 0]  # sum_j da_j P_j r / 2
        tangent = tangent + 2 * _quadratic(ar, dr)  # A_i symmetric: d(r^T A_i r)/dr = 2 A_i r
    if not isinstance(d_a_t, SymbolicZero):
        tangent = tangent + _quadratic(jnp.matmul(r, d_a_t, precision=_HIGHEST), r)  # r^T dA_i r
    return out, tangent


def _expvals_jax(angles, weights):
    # A as [16, 64] with r on the left: one [N, 16] x [16, 64] matmul for the batch, and the
    # weights' cotangent is r^T [16, N] x [N, 64], which XLA's CPU backend runs without first
    # transposing the [N, 64] operand.
    a_t = heisenberg_observables(weights).reshape(NUM_QUBITS * _DIM, _DIM).T
    return _expvals_batch(angles, a_t)


@functools.cache
def pennylane_qnode():
    """The QNode, built once on first use (importing PennyLane takes seconds)."""
    import pennylane as qml

    dev = qml.device("default.qubit", wires=NUM_QUBITS)

    @qml.qnode(dev, interface="jax", diff_method="backprop")
    def circuit(angles, weights):
        qml.AngleEmbedding(angles, wires=range(NUM_QUBITS))
        qml.BasicEntanglerLayers(weights, wires=range(NUM_QUBITS))
        return tuple(qml.expval(qml.PauliZ(i)) for i in range(NUM_QUBITS))

    return circuit


def circuit_expvals(angles, weights, backend: str = "jax"):
    """<Z_i>, i = 0..3, of AngleEmbedding(angles) + BasicEntanglerLayers(weights) on 4 qubits.

    angles [..., 4] (one circuit per leading index, all sharing the weights), weights
    [num_layers, 4] (the paper uses 2 layers) -> [..., 4], in the inputs' float dtype.
    Traceable: jit, vmap (also nested, e.g. agents x batch), grad, lax.scan.
    Raises ValueError (at trace time) for an unknown backend or wrong shapes.
    """
    angles, weights = jnp.asarray(angles), jnp.asarray(weights)
    _check(angles, weights, backend)
    dtype = _float_dtype(angles, weights)
    angles, weights = jnp.asarray(angles, dtype), jnp.asarray(weights, dtype)
    lead = angles.shape[:-1]
    flat = angles.reshape((-1, NUM_QUBITS))
    if backend == "jax":
        return _expvals_jax(flat, weights).reshape(lead + (NUM_QUBITS,))
    qnode = pennylane_qnode()
    with warnings.catch_warnings():
        # Trace-time noise from PennyLane's simulator: it asks for complex128 (truncated to complex64
        # unless x64 is on, as intended here) and calls a deprecated jax.core helper.
        warnings.filterwarnings("ignore", message="Explicitly requested dtype complex128")
        warnings.filterwarnings("ignore", message="jax.core.is_concrete is deprecated")
        out = jax.vmap(lambda a: jnp.stack(qnode(a, weights)))(flat)
    return out.astype(dtype).reshape(lead + (NUM_QUBITS,))


def _uniform_angle(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, 0.0, 2 * np.pi)


class VQCTorso(nn.Module):
    """The paper's quantum torso (Section IV-C; hyper-parameters of Section V-A).

    The paper swaps each actor-critic's MLP torso for a 64-unit input layer, the 4-qubit VQC
    (AngleEmbedding, two BasicEntangler layers, PauliZ readout) and a 64-unit output layer:

    Dense(width) -> tanh -> Dense(4) -> pi * tanh  (one angle in (-pi, pi) per wire: AngleEmbedding
    takes one feature per qubit) -> the 4-qubit VQC with learnable weights [num_layers, 4]
    (uniform in [0, 2 pi)) -> <Z_i> -> Dense(width) -> tanh.

    x [..., D] -> [..., width]; the circuit runs once on all leading axes (its batched fast path).
    Dense kernels use a fan-in-scaled Gaussian init, not `nn.initializers.orthogonal`: the
    orthogonal init's batched QR (when initialising per agent / per seed inside jit) deadlocked
    XLA's CPU thread pool in this project (see `networks._scaled`).
    """

    width: int = 64
    backend: str = "jax"
    num_layers: int = 2

    @nn.compact
    def __call__(self, x):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        h = nn.tanh(nn.Dense(self.width, kernel_init=init, name="input")(x))
        angles = np.pi * nn.tanh(nn.Dense(NUM_QUBITS, kernel_init=init, name="to_angles")(h))
        weights = self.param("weights", _uniform_angle, (self.num_layers, NUM_QUBITS))
        z = circuit_expvals(angles, weights, self.backend).astype(h.dtype)  # all leading axes at once
        return nn.tanh(nn.Dense(self.width, kernel_init=init, name="output")(z))

"""The VQC (paper Section IV-C): both backends against an independently built PennyLane QNode."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml
import pytest
from pennylane import numpy as pnp

from meqc_jax.agents.vqc import BACKENDS, VQCTorso, circuit_expvals

_DEV = qml.device("default.qubit", wires=4)

# The programs here are tiny and run once, but XLA's CPU backend compiles PennyLane's gate-by-gate
# graph for seconds; skipping LLVM's optimisations cuts that by about 40% and changes no results.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@qml.qnode(_DEV, interface="autograd", diff_method="parameter-shift")
def reference_circuit(angles, weights):
    """The paper's circuit, written out here; float64 NumPy, gradients by the parameter-shift rule."""
    qml.AngleEmbedding(angles, wires=range(4))
    qml.BasicEntanglerLayers(weights, wires=range(4))
    return [qml.expval(qml.PauliZ(i)) for i in range(4)]


def reference(angles, weights, cot):
    """(expvals [4], d(expvals . cot)/d angles [4], d/d weights [L, 4]) in float64."""
    a = pnp.array(np.asarray(angles, np.float64), requires_grad=True)
    w = pnp.array(np.asarray(weights, np.float64), requires_grad=True)
    c = np.asarray(cot, np.float64)
    values = np.array([float(v) for v in reference_circuit(a, w)])
    ga, gw = qml.grad(lambda a, w: pnp.dot(qml.math.stack(reference_circuit(a, w)), c), argnums=[0, 1])(a, w)
    return values, np.asarray(ga), np.asarray(gw)


def rel_err(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(x - ref)) / max(np.max(np.abs(ref)), 1e-12))


def random_inputs(seed, batch=None, layers=2):
    rng = np.random.default_rng(seed)
    shape = (4,) if batch is None else (batch, 4)
    angles = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    weights = rng.uniform(0, 2 * np.pi, (layers, 4)).astype(np.float32)
    cot = rng.normal(size=shape).astype(np.float32)
    return angles, weights, cot


def value_and_grads_fn(backend, single=True):
    """The circuit under vmap over a batch -> (expvals [B, 4], d(sum expvals * cot)/d angles [B, 4],
    /d weights [L, 4]), then (if `single`) the same three for the first sample alone, without vmap."""

    def one(a, w, c):
        return jax.value_and_grad(lambda a, w: (circuit_expvals(a, w, backend) @ c, circuit_expvals(a, w, backend)),
                                  argnums=(0, 1), has_aux=True)(a, w)

    def f(angles, weights, cot):
        def loss(a, w):
            out = jax.vmap(lambda x: circuit_expvals(x, w, backend))(a)
            return jnp.sum(out * cot), out

        (_, out), (ga, gw) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(angles, weights)
        if not single:
            return out, ga, gw
        (_, out1), (ga1, gw1) = one(angles[0], weights, cot[0])
        return out, ga, gw, out1, ga1, gw1

    return f


@functools.cache
def value_and_grads(backend):
    return fast_jit(value_and_grads_fn(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reference(backend):
    angles, weights, cot = random_inputs(1, batch=6, layers=3)
    out, ga, gw, out1, ga1, gw1 = value_and_grads(backend)(angles, weights, cot)
    assert out.shape == (6, 4) and out1.shape == (4,) and out.dtype == out1.dtype == jnp.float32
    refs = [reference(angles[i], weights, cot[i]) for i in range(len(angles))]
    np.testing.assert_allclose(out, np.stack([r[0] for r in refs]), atol=1e-5)
    assert rel_err(ga, np.stack([r[1] for r in refs])) < 1e-4
    assert rel_err(gw, sum(r[2] for r in refs)) < 1e-4
    # one sample, no vmap
    np.testing.assert_allclose(out1, refs[0][0], atol=1e-5)
    assert rel_err(ga1, refs[0][1]) < 1e-4 and rel_err(gw1, refs[0][2]) < 1e-4


def test_backends_agree():
    angles, weights, cot = random_inputs(2, batch=6, layers=3)  # shapes as above: compiled once
    j = value_and_grads("jax")(angles, weights, cot)
    p = value_and_grads("pennylane")(angles, weights, cot)
    for k in (0, 3):  # values: batch, single
        np.testing.assert_allclose(j[k], p[k], atol=1e-5)
    for k in (1, 2, 4, 5):  # gradients
        assert rel_err(j[k], p[k]) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_call_equals_reference(backend):
    """angles [2, 3, 4] in one call (the torso's fast path, no vmap): values and gradients."""
    angles, weights, cot = random_inputs(5, batch=6)
    a3, c3 = angles.reshape(2, 3, 4), cot.reshape(2, 3, 4)

    @fast_jit
    def run(a, w, c):
        return jax.value_and_grad(lambda a, w: jnp.sum(circuit_expvals(a, w, backend) * c), argnums=(0, 1))(a, w)

    _, (ga, gw) = run(a3, weights, c3)
    out = fast_jit(lambda a, w: circuit_expvals(a, w, backend))(a3, weights)
    refs = [reference(angles[i], weights, cot[i]) for i in range(len(angles))]
    assert out.shape == (2, 3, 4) and ga.shape == (2, 3, 4)
    np.testing.assert_allclose(out.reshape(6, 4), np.stack([r[0] for r in refs]), atol=1e-5)
    assert rel_err(ga.reshape(6, 4), np.stack([r[1] for r in refs])) < 1e-4
    assert rel_err(gw, sum(r[2] for r in refs)) < 1e-4


def test_jax_backend_forward_mode_and_second_derivatives():
    """The jax backend's hand-written JVP rule also gives jacfwd and Hessians (checked against PennyLane)."""
    angles, weights, _ = random_inputs(6)

    def scalar(backend):
        return lambda a, w: jnp.sum(circuit_expvals(a, w, backend) * jnp.arange(1.0, 5.0))

    @fast_jit
    def run(a, w):
        jac = {b: jax.jacfwd(circuit_expvals, argnums=(0, 1))(a, w, b) for b in BACKENDS}
        hes = {b: jax.hessian(scalar(b), argnums=(0, 1))(a, w) for b in BACKENDS}
        return jac, hes

    jac, hes = run(angles, weights)
    for x, y in zip(jax.tree.leaves(jac["jax"]) + jax.tree.leaves(hes["jax"]),
                    jax.tree.leaves(jac["pennylane"]) + jax.tree.leaves(hes["pennylane"])):
        assert rel_err(x, y) < 1e-4


def _agents_step(backend):
    """One gradient step on stacked weights [A, L, 4] for angles [A, B, 4] (vmap agents x vmap batch)."""

    def all_agents(w, a):
        return jax.vmap(lambda wk, ak: jax.vmap(lambda x: circuit_expvals(x, wk, backend))(ak))(w, a)

    def loss(w, a):
        out = all_agents(w, a)
        return jnp.sum(out**2), out

    def body(w, a):
        (val, out), g = jax.value_and_grad(loss, has_aux=True)(w, a)
        return w - 0.1 * g, (val, out)

    return body


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_vmap_over_agents_and_scan(backend):
    rng = np.random.default_rng(3)
    n_agents, batch, steps = 3, 5, 4
    weights = jnp.asarray(rng.uniform(0, 2 * np.pi, (n_agents, 2, 4)), jnp.float32)
    angles = jnp.asarray(rng.uniform(-np.pi, np.pi, (steps, n_agents, batch, 4)), jnp.float32)
    w_scan, (vals, outs) = fast_jit(lambda w, a: jax.lax.scan(_agents_step(backend), w, a))(weights, angles)
    assert outs.shape == (steps, n_agents, batch, 4)
    for k in range(n_agents):
        for b in range(batch):
            ref = reference_circuit(np.asarray(angles[0, k, b], np.float64), np.asarray(weights[k], np.float64))
            np.testing.assert_allclose(outs[0, k, b], np.array([float(v) for v in ref]), atol=1e-5)
    # the same steps one at a time (jax backend, plain Python loop)
    step = fast_jit(_agents_step("jax"))
    w_loop, loop_vals = weights, []
    for t in range(steps):
        w_loop, (v, _) = step(w_loop, angles[t])
        loop_vals.append(v)
    np.testing.assert_allclose(vals, np.stack(loop_vals), rtol=1e-5)
    np.testing.assert_allclose(w_scan, w_loop, atol=1e-5)
    assert not np.allclose(w_scan, weights)


def test_float64_mode_in_subprocess():
    script = textwrap.dedent("""
        import sys, jax, jax.numpy as jnp, numpy as np
        sys.path.insert(0, "tests")
        from test_vqc import fast_jit, reference, random_inputs, value_and_grads_fn
        from meqc_jax.agents.vqc import BACKENDS, circuit_expvals
        assert jax.config.jax_enable_x64
        angles, weights, cot = (x.astype(np.float64) for x in random_inputs(4, batch=5))
        refs = [reference(angles[i], weights, cot[i]) for i in range(len(angles))]
        ref_v, ref_ga = np.stack([r[0] for r in refs]), np.stack([r[1] for r in refs])
        ref_gw = sum(r[2] for r in refs)
        both = fast_jit(lambda a, w, c: [value_and_grads_fn(b, single=False)(a, w, c) for b in BACKENDS])
        for backend, (out, ga, gw) in zip(BACKENDS, both(angles, weights, cot)):
            assert out.dtype == ga.dtype == gw.dtype == jnp.float64, (backend, out.dtype, ga.dtype, gw.dtype)
            for x, ref in [(out, ref_v), (ga, ref_ga), (gw, ref_gw)]:
                np.testing.assert_allclose(x, ref, atol=1e-9, rtol=0, err_msg=backend)
        jaxpr = str(jax.make_jaxpr(circuit_expvals)(angles[0], weights))
        assert "complex128" in jaxpr and "complex64" not in jaxpr
        jaxpr32 = str(jax.make_jaxpr(circuit_expvals)(angles[0].astype(np.float32), weights.astype(np.float32)))
        assert "complex64" in jaxpr32 and "complex128" not in jaxpr32
        print("x64 ok")
    """)
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", script], check=False, cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "x64 ok" in res.stdout


def test_torso_shapes_gradients_and_backends():
    x = jax.random.normal(jax.random.key(0), (2, 3, 7))
    torso, torso_pl = VQCTorso(width=64, backend="jax"), VQCTorso(width=64, backend="pennylane")

    @fast_jit  # one compiled program for the whole test
    def run(key):
        p = torso.init(key, x)
        grads = jax.grad(lambda p: jnp.sum(torso.apply(p, x) ** 2))(p)
        return p, torso.apply(p, x), torso.apply(p, x[0, 0]), grads, torso_pl.apply(p, x)

    params, out, single, grads, out_pl = run(jax.random.key(1))
    w = params["params"]["weights"]
    assert w.shape == (2, 4) and bool(jnp.all((w >= 0) & (w < 2 * np.pi)))
    assert out.shape == (2, 3, 64) and bool(jnp.all(jnp.isfinite(out)))
    assert single.shape == (64,)
    np.testing.assert_allclose(single, out[0, 0], atol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(jnp.max(jnp.abs(grads["params"]["weights"]))) > 0  # the circuit's weights learn
    np.testing.assert_allclose(out_pl, out, atol=1e-5)  # same parameters, other backend
    shapes = jax.eval_shape(VQCTorso(width=8, num_layers=3).init, jax.random.key(2), x)
    assert shapes["params"]["weights"].shape == (3, 4)


def test_bad_arguments_raise():
    a, w = jnp.zeros(4), jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="backend"):
        circuit_expvals(a, w, backend="qiskit")
    with pytest.raises(ValueError, match=r"angles must have shape \(\.\.\., 4\)"):
        circuit_expvals(jnp.zeros(3), w)
    with pytest.raises(ValueError, match=r"angles must have shape \(\.\.\., 4\)"):
        jax.jit(circuit_expvals)(jnp.zeros((2, 5)), w)
    with pytest.raises(ValueError, match=r"angles must have shape \(\.\.\., 4\)"):
        circuit_expvals(jnp.zeros(()), w)
    for bad in (jnp.zeros(4), jnp.zeros((2, 3)), jnp.zeros((0, 4))):
        with pytest.raises(ValueError, match="weights must have shape"):
            circuit_expvals(a, bad, backend="pennylane")
    x = jnp.zeros((2, 5))
    with pytest.raises(ValueError, match="backend"):
        VQCTorso(backend="qiskit").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="num_layers"):
        VQCTorso(num_layers=0).init(jax.random.key(0), x)


# ---------------------------------------------------------------------------- the VQC policy in PPO
from meqc_jax import SystemConfig  # noqa: E402
from meqc_jax.agents import hybrid_log_prob, sample_hybrid  # noqa: E402
from meqc_jax.evaluate import evaluate  # noqa: E402
from meqc_jax.learners.ppo import PPOConfig, make_train  # noqa: E402
from meqc_jax.learners import metrics_table  # noqa: E402
from meqc_jax.loop import fit  # noqa: E402

SYS4 = SystemConfig(num_users=4, num_servers=3, slots_per_episode=50)


@pytest.fixture(scope="module")
def vqc_trainer():
    return make_train(SYS4, PPOConfig(torso="vqc", epochs=12, num_envs=8, num_minibatches=4))


def test_vqc_policy_log_probs_finite_and_normalized(vqc_trainer):
    tr = vqc_trainer
    state = tr.init(jax.random.key(0))
    assert tr.param_counts()["per_agent"] < tr.param_counts()["agents"]  # stacked over agents
    out = tr.apply(state.params, state.obs)  # [envs, U, ...]
    assert out.logits.shape == (8, 4, 3)
    probs = jax.nn.softmax(out.logits)
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-6)
    server, x = sample_hybrid(jax.random.key(1), out)
    logp_d, logp_c = hybrid_log_prob(out, server, x)
    assert np.all(np.isfinite(np.asarray(logp_d))) and np.all(np.isfinite(np.asarray(logp_c)))
    np.testing.assert_allclose(np.asarray(logp_d), np.log(np.take_along_axis(
        np.asarray(probs), np.asarray(server)[..., None], -1)[..., 0]), rtol=1e-5, atol=1e-6)


def test_tiny_vqc_training_beats_random_policy(vqc_trainer):
    tr = vqc_trainer
    state, m = fit(tr, [0], chunk=12)
    assert np.all(np.isfinite(metrics_table(m)))
    res = evaluate(SYS4, [tr.policy(tr.acting_params(state, 0), "vqc"), "random_offloading", "random_partitioning"],
                   num_envs=32, num_slots=20, seed=99)
    cost = res.summary["vqc"]["mean_cost"]
    assert cost < res.summary["random_offloading"]["mean_cost"]
    assert cost < res.summary["random_partitioning"]["mean_cost"]


@pytest.mark.parametrize("torso", ["mlp", "vqc"])
def test_training_chunks_do_not_retrace(torso):
    import chex

    from meqc_jax.learners.ppo import PPOLearner

    tr = PPOLearner(SystemConfig(num_users=2, num_servers=2, slots_per_episode=8),  # a private, uncached trainer
                 PPOConfig(torso=torso, epochs=2, num_envs=2, num_minibatches=2, hidden=(16, 16)), scale=10.0)
    chex.clear_trace_counter()  # chex keys counters by call site, shared by both parametrizations
    tr.update = chex.assert_max_traces(tr.update, n=1)  # looked up when `train_chunk` traces
    run = jax.jit(tr.train_chunk, static_argnums=1)
    state = tr.init(jax.random.key(0))
    for _ in range(3):  # new values, same shapes: one trace, one compile
        state, _ = run(state, 1)
    assert run._cache_size() == 1

"""Hybrid multi-agent PPO: distribution maths, losses, learning signal, seeds, exact resume, NaN stop, CLI."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, SystemConfig
from meqc_jax.agents import hybrid_entropy, hybrid_log_prob, sample_hybrid
from meqc_jax.agents.networks import HybridOutput
from meqc_jax.evaluate import evaluate
from meqc_jax.learners import losses, metrics_table
from meqc_jax.learners.ppo import METRIC_NAMES, PPOConfig, make_train
from meqc_jax.loop import fit, precompile

SYS = SystemConfig(num_users=3, num_servers=2, slots_per_episode=16)
TINY = dict(num_envs=4, num_minibatches=4, hidden=(32, 32))


@pytest.fixture(scope="module")
def trainer():
    return make_train(SYS, PPOConfig(epochs=4, **TINY), scale=100.0)


def test_network_shapes_and_per_agent_parameters(trainer):
    params = trainer.init_params(jax.random.key(0))
    leaves = jax.tree.leaves(params)
    assert all(x.shape[0] == 3 for x in leaves)  # stacked over agents
    assert not np.allclose(leaves[-1][0], leaves[-1][1])  # independently initialized
    out = trainer.apply(params, jnp.zeros((5, 3, trainer.obs_dim)))
    assert out.logits.shape == (5, 3, 2) and out.mean.shape == (5, 3) and out.value_d.shape == (5, 3)


def test_hybrid_log_prob_and_entropy_match_sampling():
    out = HybridOutput(logits=jnp.array([[0.3, -1.0, 0.8]]), mean=jnp.array([0.4]), log_std=jnp.array([-0.7]),
                       value_d=jnp.zeros(1), value_c=jnp.zeros(1))
    n = 200_000
    keys = jax.random.split(jax.random.key(0), n)
    server, x = jax.vmap(lambda k: sample_hybrid(k, out))(keys)
    # categorical frequencies vs softmax; Gaussian moments of the pre-clip sample
    np.testing.assert_allclose(np.bincount(np.asarray(server[:, 0]), minlength=3) / n,
                               np.asarray(jax.nn.softmax(out.logits[0])), atol=5e-3)
    assert float(jnp.mean(x)) == pytest.approx(0.4, abs=5e-3)
    assert float(jnp.std(x)) == pytest.approx(math.exp(-0.7), rel=1e-2)
    # Eq. 18: joint entropy = E[-log pi] estimated by sampling
    logp_d, logp_c = jax.vmap(lambda s, xx: hybrid_log_prob(out, s, xx))(server, x)
    h_d, h_c = hybrid_entropy(out)
    assert float(-jnp.mean(logp_d)) == pytest.approx(float(h_d[0]), rel=1e-2)
    assert float(-jnp.mean(logp_c)) == pytest.approx(float(h_c[0]), rel=1e-2)
    # normalized: the categorical sums to one, the Gaussian density integrates to one
    assert float(jnp.sum(jnp.exp(jax.nn.log_softmax(out.logits)))) == pytest.approx(1.0, abs=1e-6)
    grid = jnp.linspace(-4, 5, 20001)
    dens = jnp.exp(jax.vmap(lambda g: hybrid_log_prob(out, jnp.array([0]), jnp.array([g]))[1][0])(grid))
    assert float(jnp.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-4)


def test_training_runs_finite_and_loss_terms_reported(trainer):
    state, metrics = jax.jit(trainer)(jax.random.key(0))
    m = metrics_table(metrics)
    assert m.shape == (4, len(METRIC_NAMES)) and np.all(np.isfinite(m))
    assert np.all(np.asarray(metrics.nonfinite) == 0)
    assert int(state.epoch) == 4


def test_update_improves_the_objective_on_a_fixed_batch():
    tr = make_train(SYS, PPOConfig(epochs=1, **TINY), scale=100.0)
    st = tr.init(jax.random.key(1))
    key = jax.random.key(2)
    env_state, obs, traj, _ = tr.rollout(st.params, st.env_state, st.obs, key)
    data = tr.make_batch(traj, tr.apply(st.params, obs))
    flat = jax.tree.map(lambda a: jnp.moveaxis(a.reshape((-1,) + a.shape[2:]), 1, 0), data)  # [U, B, ...]

    def total_loss(params):
        return float(jnp.sum(jax.vmap(lambda p, d: tr.agent_loss(p, d)[0])(params, flat)))

    before = total_loss(st.params)
    params = st.params
    opt_state = st.opt_state
    update = jax.jit(tr.update)  # one compile for the five steps
    for i in range(5):
        params, opt_state, _, _ = update(params, opt_state, data, jax.random.key(10 + i))
    assert total_loss(params) < before


def test_gae_with_zero_discount_is_reward_minus_value():
    v = jnp.ones((5, 2, 3))
    r = jnp.arange(30.0).reshape(5, 2, 3)
    d = jnp.zeros((5, 2), bool)
    adv, target = losses.gae(v, jnp.ones((2, 3)), r, d, gamma=0.0, lam=0.95)
    np.testing.assert_allclose(adv, r - 1.0)
    np.testing.assert_allclose(target, r)
    adv1, _ = losses.gae(jnp.zeros((2, 1, 1)), jnp.zeros((1, 1)), jnp.ones((2, 1, 1)), jnp.array([[False], [True]]),
                         gamma=0.5, lam=1.0)
    np.testing.assert_allclose(np.asarray(adv1).ravel(), [1.5, 1.0])  # the done flag cuts the bootstrap


def test_gae_matches_a_direct_sum_of_discounted_residuals():
    # Eq. 26: A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V_{t+1} - V_t, cut at episode ends
    rng = np.random.default_rng(0)
    T, gamma, lam = 7, 0.9, 0.8
    v, r, last = rng.normal(size=(T, 1, 1)), rng.normal(size=(T, 1, 1)), rng.normal(size=(1, 1))
    done = np.zeros((T, 1), bool)
    done[3] = True
    adv, target = losses.gae(jnp.asarray(v), jnp.asarray(last), jnp.asarray(r), jnp.asarray(done), gamma, lam)
    v_next = np.concatenate([v[1:], last[None]])[:, 0, 0] * (1 - done[:, 0])
    delta = r[:, 0, 0] + gamma * v_next - v[:, 0, 0]
    expect = np.zeros(T)
    for t in range(T):
        acc, w = 0.0, 1.0
        for k in range(t, T):
            acc += w * delta[k]
            if done[k, 0]:
                break
            w *= gamma * lam
        expect[t] = acc
    np.testing.assert_allclose(np.asarray(adv)[:, 0, 0], expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(target), np.asarray(adv) + v, rtol=1e-6)


def test_clipped_surrogate_and_value_losses():
    adv = jnp.array([1.0, -1.0, 2.0, -2.0])
    logp = jnp.log(jnp.array([0.5, 0.5, 0.5, 0.5]))
    loss, kl = losses.clipped_surrogate(logp, logp, adv, clip_eps=0.2)
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(kl) == pytest.approx(0.0, abs=1e-7)  # ratio 1
    # a ratio of 2 on a positive advantage is clipped at 1 + eps: the gradient vanishes there
    new = logp.at[0].set(jnp.log(1.0))
    g = jax.grad(lambda lp: losses.clipped_surrogate(lp, logp, adv, 0.2)[0])(new)
    assert float(g[0]) == 0.0 and float(jnp.abs(g[1:]).sum()) > 0
    _, kl2 = losses.clipped_surrogate(new, logp, adv, 0.2)
    assert float(kl2) == pytest.approx((1.0 - np.log(2.0)) / 4, rel=1e-5)  # E[(r - 1) - log r]
    norm = losses.normalize(adv)
    assert float(norm.mean()) == pytest.approx(0.0, abs=1e-6) and float(norm.std()) == pytest.approx(1.0, rel=1e-5)
    assert float(losses.value_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0]))) == pytest.approx(2.5)
    per_head = losses.value_loss_per_head(jnp.array([[1.0, 0.0], [3.0, 2.0]]), jnp.zeros((2, 2)))
    np.testing.assert_allclose(per_head, [2.5, 1.0])


def test_seeds_in_fit_equal_separate_runs_and_resume_is_exact(tmp_path, trainer):
    # seeds vmapped together equal separate unbatched runs (up to float reassociation under vmap)
    state_ab, m_ab = fit(trainer, [0, 1], chunk=4)
    state_b, m_direct = jax.jit(trainer)(jax.random.key(1))
    m_ab, m_direct = metrics_table(m_ab), metrics_table(m_direct)
    np.testing.assert_allclose(m_ab[1], m_direct, rtol=2e-3, atol=1e-5)
    for x, y in zip(jax.tree.leaves(jax.tree.map(lambda a: a[1], state_ab.params)), jax.tree.leaves(state_b.params)):
        np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-5)
    _, m_vmap = jax.jit(jax.vmap(trainer))(jnp.stack([jax.random.key(0), jax.random.key(1)]))
    np.testing.assert_allclose(metrics_table(m_vmap), m_ab, rtol=2e-3, atol=1e-5)
    # checkpoint every 2 epochs, drop the last checkpoint, resume: bit-identical
    ck = tmp_path / "ck"
    fit(trainer, [0, 1], chunk=2, ckpt_dir=str(ck))
    assert sorted(os.listdir(ck)) == ["epoch_000002", "epoch_000004"]
    import shutil

    shutil.rmtree(ck / "epoch_000004")
    state_r, m_r = fit(trainer, [0, 1], chunk=2, ckpt_dir=str(ck))
    np.testing.assert_array_equal(metrics_table(m_r), m_ab)
    for x, y in zip(jax.tree.leaves(state_r.params), jax.tree.leaves(state_ab.params)):
        np.testing.assert_array_equal(x, y)


def test_nan_stops_training_naming_the_epoch():
    tr = make_train(SYS, PPOConfig(epochs=3, **TINY), scale=100.0)
    bad = make_train(SYS, PPOConfig(epochs=3, **TINY), scale=float("nan"))  # NaN rewards -> NaN losses
    with pytest.raises(FloatingPointError, match=r"epoch 1 \(seed 0\)"):
        fit(bad, [0], chunk=3)
    fit(tr, [0], chunk=3)  # the same config with a finite scale is fine


def test_a_training_too_large_for_the_device_is_refused_before_it_runs(monkeypatch):
    from meqc_jax import compilation

    tr = make_train(SYS, PPOConfig(epochs=2, **TINY), scale=99.0)
    monkeypatch.setattr(compilation, "device_memory_bytes", lambda device=None: 4096)  # a 4 KiB device
    with pytest.raises(compilation.ProgramTooLarge) as err:
        fit(tr, [0, 1], chunk=2)
    msg = str(err.value)
    assert "\n" not in msg and "2 run(s) of U=3, E=2 with 4 envs x 16 slots per epoch" in msg, msg
    assert "can hold 0.0 GiB: lower the envs (--envs)" in msg, msg
    assert tr.compiled_chunks == 0  # refused programs are not kept: the next call checks again
    monkeypatch.undo()
    _, m = fit(tr, [0, 1], chunk=2)  # on the real device it fits (XLA's plan: a few hundred KiB)
    assert np.isfinite(metrics_table(m)).all() and tr.compiled_chunks == 1


def test_runs_of_other_lengths_share_the_compiled_programs():
    from meqc_jax.compilation import CompileCounter

    short = make_train(SYS, PPOConfig(epochs=2, **TINY), scale=97.0)
    long = make_train(SYS, PPOConfig(epochs=4, **TINY), scale=97.0)
    assert (short.epochs, long.epochs) == (2, 4)  # each its own run length ...
    assert long.chunk_program is short.chunk_program and long.init_program is short.init_program  # ... one program
    _, m_short = fit(short, [0], chunk=2)
    with CompileCounter() as cc:
        _, m_long = fit(long, [0], chunk=2)
    assert cc.programs == 0 and long.compiled_chunks == short.compiled_chunks == 1
    np.testing.assert_array_equal(metrics_table(m_long)[:, :2], metrics_table(m_short))  # the same first epochs
    # an annealed step size depends on the run's length: no sharing there
    a2 = make_train(SYS, PPOConfig(epochs=2, anneal_lr=True, **TINY), scale=97.0)
    a4 = make_train(SYS, PPOConfig(epochs=4, anneal_lr=True, **TINY), scale=97.0)
    assert a2.chunk_program is not a4.chunk_program


def test_precompile_compiles_every_program_fit_runs():
    from meqc_jax.compilation import CompileCounter

    tr = make_train(SYS, PPOConfig(epochs=5, **TINY), scale=96.0)
    assert precompile(tr, [0, 1], chunk=2) == 2  # 5 epochs in chunks of 2: lengths 2 and 1
    assert precompile(tr, [0, 1], chunk=2) == 0  # already there
    with CompileCounter() as cc:
        _, m = fit(tr, [0, 1], chunk=2)
    assert cc.programs == 0 and tr.compiled_chunks == 2 and np.isfinite(metrics_table(m)).all()
    with pytest.raises(ValueError, match=r"precompile: chunk=0 is invalid: allowed an integer >= 1"):
        precompile(tr, [0], chunk=0)


def test_shared_parameters_option():
    tr = make_train(SYS, PPOConfig(epochs=2, shared_params=True, **TINY), scale=100.0)
    params = tr.init_params(jax.random.key(0))
    assert jax.tree.leaves(params)[0].ndim <= 2  # not stacked over agents
    assert tr.obs_dim == MEQC_OBS + 3
    _, m = jax.jit(tr)(jax.random.key(0))
    assert np.all(np.isfinite(metrics_table(m)))


MEQC_OBS = 6 + 4 * 2


def test_tiny_training_beats_random_policy():
    sys10 = SystemConfig(num_users=4, num_servers=3, slots_per_episode=50)
    tr = make_train(sys10, PPOConfig(epochs=12, num_envs=8, num_minibatches=4, hidden=(64, 64)))
    state, _ = fit(tr, [0], chunk=12)
    res = evaluate(sys10, [tr.policy(tr.acting_params(state, 0), "ppo"), "random_offloading", "random_partitioning"],
                   num_envs=32, num_slots=20, seed=99)
    ppo_cost = res.summary["ppo"]["mean_cost"]
    assert ppo_cost < res.summary["random_offloading"]["mean_cost"]
    assert ppo_cost < res.summary["random_partitioning"]["mean_cost"]


def test_ppo_config_validation_and_presets():
    assert PPOConfig.preset("paper").gamma == 0.95 and PPOConfig.preset("paper").reward == "shared"
    assert PPOConfig().gamma == 0.0 and PPOConfig().reward == "own"
    for field, value in [("gamma", 1.5), ("reward", "team"), ("num_envs", 0), ("lr", 0.0), ("hidden", ())]:
        with pytest.raises(ValueError) as e:
            PPOConfig(**{field: value})
        assert f"PPOConfig.{field}=" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="num_minibatches"):
        make_train(SYS, PPOConfig(num_envs=3, num_minibatches=5), scale=1.0)


def test_cli_train_writes_all_outputs(tmp_path):
    from meqc_jax.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--users", "3", "--servers", "2", "--epochs", "2", "--seeds", "2", "--envs", "4",
               "--slots-per-epoch", "16", "--minibatches", "4", "--chunk", "1", "--eval-slots", "100",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    for k in ("policy_cost", "oracle_cost", "baselines", "epochs", "wall_s"):
        assert k in summary
    assert summary["oracle_cost"] <= summary["policy_cost"] * (1 + 1e-5)
    assert set(summary["baselines"]) == {"local", "random_offloading", "random_partitioning", "greedy"}
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert lines[0].startswith("seed,epoch,cost") and len(lines) == 1 + 2 * 2
    assert (out / "learning_curve.png").stat().st_size > 10_000
    config = json.loads((out / "config.json").read_text())
    assert config["learner"] == "ppo" and config["learner_config"]["epochs"] == 2
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch_000001", "epoch_000002"]


def test_central_critic_for_the_shared_reward(tmp_path):
    assert PPOConfig(reward="shared").central_critic and not PPOConfig().central_critic
    assert not PPOConfig.preset("paper").central_critic  # the paper's per-agent critics
    assert PPOConfig(critic="central").central_critic
    tr = make_train(SYS, PPOConfig(epochs=2, reward="shared", **TINY), scale=100.0)
    state = tr.init(jax.random.key(0))
    values = tr.critic.net.apply(state.critic["params"], state.obs)
    assert values.shape == (4, 3, 2)  # [envs, agents, (V^D, V^C)] from the global state
    out = tr.apply(state.params, state.obs, state.critic)
    np.testing.assert_array_equal(out.value_c, values[..., 1])
    # trains finite, reports the critic's losses, and resumes bit-identically from a checkpoint
    ck = tmp_path / "ck"
    state_a, m_a = fit(tr, [0], chunk=1, ckpt_dir=str(ck))
    assert np.all(m_a.loss_v_d > 0)
    import shutil

    shutil.rmtree(ck / "epoch_000002")
    state_r, m_r = fit(tr, [0], chunk=1, ckpt_dir=str(ck))
    np.testing.assert_array_equal(metrics_table(m_r), metrics_table(m_a))
    for x, y in zip(jax.tree.leaves(state_r.critic), jax.tree.leaves(state_a.critic)):
        np.testing.assert_array_equal(x, y)


def test_mixed_reward_adds_a_share_of_the_others_costs_and_is_normalized():
    from meqc_jax.env import Reward

    cfg = SystemConfig(num_users=4, num_servers=2, slots_per_episode=5)
    env = MEQCEnv(cfg)
    _, state = env.reset(jax.random.key(0))
    b = env.price(jax.random.key(1), state, (jnp.zeros(4, jnp.int32), jnp.full(4, 0.5)))
    r = Reward.normalized("mixed", cfg, scale=2.0, others=0.25)
    assert r.scale == pytest.approx(2.0 * (1 + 0.25 * 3)) and r.others == 0.25
    own = np.asarray(b.per_user)
    np.testing.assert_allclose(np.asarray(r(b)), -(own + 0.25 * (own.sum() - own)) / r.scale, rtol=1e-6)
    # the end points are the own and the (per-agent equal) shared rewards, up to their scales
    np.testing.assert_allclose(np.asarray(Reward("mixed", 1.0, 0.0)(b)), np.asarray(Reward("own", 1.0)(b)))
    np.testing.assert_allclose(np.asarray(Reward("mixed", 1.0, 1.0)(b)), np.asarray(Reward("shared", 1.0)(b)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"Reward.others=1.5 is invalid"):
        Reward("mixed", 1.0, 1.5)
    with pytest.raises(ValueError, match=r"PPOConfig.reward_others=-0.1 is invalid"):
        PPOConfig(reward="mixed", reward_others=-0.1)


def test_normalized_returns_scale_the_gae_targets_by_one_minus_gamma():
    cfg = SystemConfig(num_users=2, num_servers=2, slots_per_episode=4, dynamics=("queues",))
    base = dict(epochs=1, num_envs=2, num_minibatches=1, gamma=0.9, hidden=(8,))
    on = make_train(cfg, PPOConfig(**base), scale=1.0)
    off = make_train(cfg, PPOConfig(**base, normalize_returns=False), scale=1.0)
    st = on.init(jax.random.key(0))
    _, _, traj, _ = on.rollout(st.params, st.env_state, st.obs, jax.random.key(1))
    zero = traj.replace(value_d=jnp.zeros_like(traj.value_d), value_c=jnp.zeros_like(traj.value_c))
    last = on.apply(st.params, st.obs).replace(value_d=jnp.zeros((2, 2)), value_c=jnp.zeros((2, 2)))
    # with zero values the targets are discounted reward sums: normalizing scales them by exactly 1 - gamma
    np.testing.assert_allclose(np.asarray(on.make_batch(zero, last).target_d),
                               0.1 * np.asarray(off.make_batch(zero, last).target_d), rtol=1e-5)
    assert PPOConfig.preset("paper").normalize_returns is False  # the paper's set stays as it was


def test_lyapunov_shaping_adds_the_potential_difference_and_is_off_by_default():
    from meqc_jax.slot_solver import lyapunov_function

    cfg = SystemConfig(num_users=3, num_servers=2, slots_per_episode=4, dynamics=("queues", "battery"), slot_s=2.0)
    base = dict(epochs=1, num_envs=2, num_minibatches=1, gamma=0.9, hidden=(8,))
    plain = make_train(cfg, PPOConfig(**base), scale=1.0)
    shaped = make_train(cfg, PPOConfig(**base, shaping_v=4.0, shaping_theta=5.0), scale=1.0)
    st = plain.init(jax.random.key(0))
    _, _, t0, _ = plain.rollout(st.params, st.env_state, st.obs, jax.random.key(1))
    _, _, t1, _ = shaped.rollout(st.params, st.env_state, st.obs, jax.random.key(1))
    diff = np.asarray(t1.reward - t0.reward)  # [T, N, U]: the same system-level term for every agent
    np.testing.assert_allclose(diff, np.broadcast_to(diff[..., :1], diff.shape), rtol=1e-6)
    assert np.all(np.isfinite(diff)) and np.any(np.abs(diff) > 0)
    # replay the first slot (the rollout's key layout): its term is (L(s0) - gamma L(s1)) / V
    _, k_env = jax.random.split(jax.random.split(jax.random.key(1), plain.T)[0])
    _, s1, _, done, _ = jax.vmap(plain.env.step)(jax.random.split(k_env, 2), st.env_state,
                                                 (t0.server[0], jnp.clip(t0.x[0], 0.0, 1.0)))
    lyap = jax.vmap(lyapunov_function, in_axes=(0, None))
    first = (lyap(st.env_state, 5.0) - 0.9 * jnp.where(done, 0.0, lyap(s1, 5.0))) / 4.0
    np.testing.assert_allclose(diff[0, :, 0], np.asarray(first), rtol=1e-5, atol=1e-6)
    # off by default (the paper's and the project's sets), and L = 0 without a carry
    assert PPOConfig().shaping_v == 0.0 and PPOConfig.preset("paper").shaping_v == 0.0
    _, paper_state = MEQCEnv(SystemConfig(num_users=2, num_servers=2)).reset(jax.random.key(0))
    assert float(lyapunov_function(paper_state, 1.0)) == 0.0
    with pytest.raises(ValueError, match=r"PPOConfig.shaping_v=-1.0 is invalid"):
        PPOConfig(shaping_v=-1.0)


def test_a_checkpointed_run_with_a_carry_resumes_bit_identically(tmp_path):
    import shutil

    cfg = SystemConfig(num_users=2, num_servers=2, slots_per_episode=6, dynamics=("queues", "battery", "drift"),
                       slot_s=2.0)
    tr = make_train(cfg, PPOConfig(epochs=4, num_envs=2, num_minibatches=2, gamma=0.9, hidden=(8,)), scale=50.0)
    straight, m_straight = fit(tr, [0], chunk=2)
    ck = tmp_path / "ck"
    fit(tr, [0], chunk=2, ckpt_dir=str(ck))
    shutil.rmtree(ck / "epoch_000004")
    resumed, m_resumed = fit(tr, [0], chunk=2, ckpt_dir=str(ck))
    np.testing.assert_array_equal(metrics_table(m_resumed), metrics_table(m_straight))
    # the carry (queues, batteries, lifetimes, arrivals) comes back exactly with the rest of the state
    for x, y in zip(jax.tree.leaves(resumed.env_state.carry), jax.tree.leaves(straight.env_state.carry)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert set(straight.env_state.carry) == {"arrivals", "queues", "battery", "drift"}


def test_sequential_actors_see_the_earlier_devices_reservations_and_global_actors_every_observation():
    cfg = SYS.replace(dynamics=("contention",))
    tr = make_train(cfg, PPOConfig(epochs=2, shared_params=True, actor_order="sequential", actor_inputs="global",
                                   reward="shared", **TINY), scale=100.0)
    obs_dim = MEQCEnv(cfg).obs_dim
    assert tr.obs_dim == obs_dim + 3 * obs_dim + 3 + 2  # own + everyone's + agent id + reservations per server
    params = tr.init_params(jax.random.key(0))
    _, state = MEQCEnv(cfg).reset(jax.random.key(1))
    obs = MEQCEnv(cfg).observe(state)
    for key in (None, jax.random.key(2)):
        inputs, server, x, _ = tr.choose(params, obs[None], key)
        res = np.asarray(inputs[0, :, obs_dim:obs_dim + 2]) * 3  # each agent's reservation counts (x U)
        off = np.clip(np.asarray(x[0]), 0, 1) < 1
        for u in range(3):
            want = np.bincount(np.asarray(server[0, :u])[off[:u]], minlength=2)
            np.testing.assert_allclose(res[u], want, atol=1e-6)
    # the deterministic policy is the choice without a key
    s, p = tr.act(params, None, state, obs)
    _, s2, x2, _ = tr.choose(params, obs)
    np.testing.assert_array_equal(np.asarray(s), np.asarray(s2))
    _, m = jax.jit(tr)(jax.random.key(0))
    assert np.all(np.isfinite(metrics_table(m)))
    with pytest.raises(ValueError, match="PPOConfig.actor_order='turns' is invalid"):
        PPOConfig(actor_order="turns")

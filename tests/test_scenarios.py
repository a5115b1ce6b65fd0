"""The scenario registry: versioned names, make(name, **overrides), one-line errors, no overwrites."""

import jax
import numpy as np
import pytest

import meqc_jax
from meqc_jax import MEQCEnv, Reward, SystemConfig, scenarios


def test_paper_scenario_is_the_default_configuration():
    assert scenarios.scenario_config("MEQC-Paper-v0") == SystemConfig()
    env = meqc_jax.make("MEQC-Paper-v0", num_users=3, num_servers=2)
    assert isinstance(env, MEQCEnv) and env.config == SystemConfig(num_users=3, num_servers=2)
    # the same env as building it by hand: identical observations from the same key
    o1, _ = env.reset(jax.random.key(0))
    o2, _ = MEQCEnv(SystemConfig(num_users=3, num_servers=2)).reset(jax.random.key(0))
    np.testing.assert_array_equal(o1, o2)
    assert meqc_jax.make("MEQC-Paper-v0", reward=Reward("own", 2.0)).reward == Reward("own", 2.0)


def test_every_registration_is_versioned_described_and_valid():
    for name, reg in scenarios.SCENARIOS.items():
        assert scenarios.NAME_PATTERN.match(name) and reg.description and "\n" not in reg.description
        assert isinstance(reg.config(), SystemConfig)
        MEQCEnv(reg.config(num_users=2, num_servers=2))  # its dynamics are registered


@pytest.mark.parametrize("call, message", [
    (lambda: scenarios.scenario_config("MEQC-Nope-v0"), "unknown scenario 'MEQC-Nope-v0'"),
    (lambda: scenarios.scenario_config("MEQC-Paper-v0", users=3), "unknown SystemConfig field"),
    (lambda: scenarios.scenario_config("MEQC-Paper-v0", t1_ms=-1.0), "SystemConfig.t1_ms=-1.0 is invalid"),
    (lambda: scenarios.register("MEQC-Paper-v0", "again"), "registered already"),
    (lambda: scenarios.register("Paper", "no version"), "MEQC-<What>-v<N>"),
    (lambda: scenarios.register("MEQC-Bad-v9", "bad override", t1_ms=0.0), "SystemConfig.t1_ms="),
])
def test_bad_names_and_overrides_fail_in_one_line(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)
    assert "MEQC-Bad-v9" not in scenarios.SCENARIOS  # a failed registration leaves nothing behind


def test_cli_takes_a_scenario(tmp_path):
    from meqc_jax.cli import main

    assert main(["demo", "--scenario", "MEQC-Paper-v0", "--users", "2", "--servers", "2", "--slots", "1",
                 "--envs", "4"]) == 0

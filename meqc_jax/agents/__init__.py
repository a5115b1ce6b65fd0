"""Learning agents: hybrid discrete-continuous actor-critics (paper Section IV-B, Fig. 3)."""

from meqc_jax.agents.networks import CentralCritic, HybridActorCritic, HybridOutput, MLPTorso
from meqc_jax.agents.distributions import (
    deterministic_action,
    hybrid_entropy,
    hybrid_log_prob,
    sample_hybrid,
)

__all__ = [
    "CentralCritic",
    "HybridActorCritic",
    "HybridOutput",
    "MLPTorso",
    "deterministic_action",
    "hybrid_entropy",
    "hybrid_log_prob",
    "sample_hybrid",
]

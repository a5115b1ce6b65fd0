"""Shared servers (dynamics-spec section 8): the uplink's shares (equal bands or interference) and the
per-server counts and sums that processor sharing and the joint modes use.
"""

from __future__ import annotations

import jax.numpy as jnp

from meqc_jax.units import SIParams


def uplink_share(rule: str, si: SIParams, server, offloading, p_tx, g):
    """Each user's uplink when the users offloading to one server share it (dynamics-spec section 8):
    (bandwidth [U] Hz, noise [U] W) for `classical_terms`, from `server` [U], `offloading` [U] bool (it
    sends a part this slot), `p_tx` [U] W and the gains `g` [U, E].

    `equal`: the n_e users offloading to e split its band, B / n_e each, at the plain noise.
    `interference`: each keeps the whole band; the received power of the others offloading to the
    same server, sum_{v != u} p_tx[v] g[v, e], is added to the noise.
    A user that does not offload gets the whole link (its rate is then unused)."""
    E = g.shape[1]
    if rule == "equal":
        return si.bandwidth / sharers(server, offloading, E), None
    if rule != "interference":
        raise ValueError(f"uplink_share: rule={rule!r} is invalid: allowed one of equal, interference")
    own = jnp.where(offloading, p_tx * jnp.take_along_axis(g, server[:, None], axis=1)[:, 0], 0.0)
    # the others' power: the server's received total less the user's own (clipped: float32 rounding never
    # goes below 0)
    return None, si.noise_power + jnp.maximum(server_sum(server, own, E) - own, 0.0)


def sharers(server, members, num_servers: int):
    """How many `members` ([U] bool) are at each user's server, itself included ([U] float, >= 1): n_e of
    the uplink's equal shares, or m_e of processor sharing, whose edge time is then d_E x m_e
    (dynamics-spec section 8)."""
    return jnp.maximum(server_sum(server, members.astype(float), num_servers), 1.0)


# Up to this many user-server pairs a per-server sum is a masked [U, E] reduction (no scatter: several times
# faster under nested vmaps on a CPU, e.g. the joint planners'); above, a scatter-add over the servers.
_ONE_HOT_MAX_PAIRS = 4096


def server_sum(server, x, num_servers: int):
    """For each user, the sum of `x` ([U]) over the users at its server, itself included ([U])."""
    if server.shape[0] * num_servers <= _ONE_HOT_MAX_PAIRS:
        at = (server[:, None] == jnp.arange(num_servers)[None, :]).astype(x.dtype)  # [U, E] one-hot
        return at @ (x @ at)  # x summed per server, then read back at each user's server
    return jnp.zeros(num_servers, x.dtype).at[server].add(x)[server]

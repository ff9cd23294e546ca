"""The Redis memory budget (issue 11): at most 300 bytes of `used_memory` per consignment holding
two events, each consignment still expiring on its own TTL.

Measured by support.state_memory, as tests/bench/bench_state_memory.py does, on a few thousand
consignments and a private redis-server of the test's own (never the shared one): states built
by the core from simulated crossings, saved by the real `RedisStore`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bordermon.stores.base import ConsignmentCodec
from support.redis_servers import private_redis, redis_server_binary
from support.services import unavailable
from support.state_memory import JsonCodec, measure_memory, two_event_states, warm_up_script

pytestmark = pytest.mark.integration

BUDGET = 300
CONSIGNMENTS = 3000


@pytest.fixture
def server() -> Iterator[str]:
    binary = redis_server_binary()
    if binary is None:
        unavailable("redis-server is not installed (bordermon stack up installs it)")
    with private_redis(binary) as url:
        yield url


def test_a_consignment_holding_two_events_costs_at_most_300_bytes_of_redis(server: str) -> None:
    states = two_event_states(CONSIGNMENTS, seed=11)
    warm_up_script(server, states)
    old = measure_memory(server, 1, states, JsonCodec())
    new = measure_memory(server, 2, states, ConsignmentCodec())
    print(
        f"\nused_memory per consignment: format 1 {old.per_consignment:.0f} B,"
        f" format 2 {new.per_consignment:.0f} B"
    )
    # The measurement sees the difference (format 1 was ~540 B) ...
    assert old.per_consignment > 450
    # ... and format 2 is within the budget,
    assert new.per_consignment <= BUDGET, f"{new.per_consignment:.0f} B per consignment"
    # with one key per consignment, each with its own expiry (the contract tests check that
    # every save resets it).
    assert new.keys == len(states)
    assert new.with_expiry == new.sampled

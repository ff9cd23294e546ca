"""The `StateStore` contract (SPEC §6 bounded state), run against every store.

Every test runs once on `MemoryStore` (expiry on a fake clock) and once on `RedisStore` against
a real Redis (marked integration; expiry by shortening the key's TTL with PEXPIRE, so the suite
never sleeps).
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bordermon.core import ConsignmentState, InvalidCrossing, encode_state
from bordermon.core.state import STATE_VERSION, StateDecodeError, encode_state_json
from bordermon.stores.base import Fenced, SaveConflict
from support.builders import entry, exit_
from support.stores import (
    STATE_KINDS,
    CorruptLog,
    Harness,
    entry_only,
    exit_only,
    flagged_acknowledged,
    flagged_pending,
    run,
    state_of,
    two_entries,
)

TTL = 600

ODD_IDS = [
    "a",
    "a:",
    "a:b",
    ":a",
    " spaced id ",
    " ",
    "*",
    "a*",
    "a?",
    "[ab]",
    "{tag}",
    "\\",
    "🚚📦",
    "\u00e9",  # é precomposed ...
    "e\u0301",  # ... and decomposed: different ids, different states
    "Ω" * 128,
    "🚚" * 128,  # 128 characters, 512 bytes of UTF-8
    "CONS-2024-000123",
]


def test_saved_states_load_back_exactly(harness: Harness) -> None:
    states = {kind: make(f"CONS-{kind}") for kind, make in STATE_KINDS.items()}
    # What each kind exercises, so the round trip below covers every part of the state.
    assert states["entry_only"].entries and states["entry_only"].declared
    assert states["exit_only"].exits
    assert len(states["two_entries"].hs_codes) == 2
    assert states["flagged_pending"].flagged and states["flagged_pending"].pending
    assert states["flagged_acknowledged"].flagged and not states["flagged_acknowledged"].pending

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save(states.values())
            loaded = await store.load([s.consignment_id for s in states.values()])
            assert loaded == {s.consignment_id: s for s in states.values()}
            for state in states.values():
                assert encode_state(loaded[state.consignment_id]) == encode_state(state)

    run(scenario())


def test_missing_ids_are_absent(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            assert await store.load([]) == {}
            assert await store.load(["never-saved"]) == {}
            await store.save([entry_only("present")])
            loaded = await store.load(["absent-1", "present", "absent-2"])
            assert list(loaded) == ["present"]

    run(scenario())


def test_many_ids_in_one_load(harness: Harness) -> None:
    states = [two_entries(f"CONS-{n:05d}") for n in range(300)]
    wanted = [s.consignment_id for s in states] + [f"MISSING-{n}" for n in range(100)]

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save(states)
            loaded = await store.load(set(wanted))
            assert loaded == {s.consignment_id: s for s in states}
            # Repeated ids are fine and load once.
            again = await store.load([states[0].consignment_id] * 3)
            assert again == {states[0].consignment_id: states[0]}

    run(scenario())


def test_save_overwrites_and_the_last_state_of_a_batch_wins(harness: Harness) -> None:
    early = entry_only("CONS-1")
    later = state_of(
        [
            entry("CONS-1/e1", "2024-03-01T10:00:00Z", consignment_id="CONS-1"),
            exit_("CONS-1/x1", "2024-03-04T10:00:00Z", consignment_id="CONS-1"),
        ]
    )
    assert later != early

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([early])
            await store.save([later])
            assert await store.load(["CONS-1"]) == {"CONS-1": later}
            await store.save([later, early])
            assert await store.load(["CONS-1"]) == {"CONS-1": early}

    run(scenario())


def test_stored_states_are_not_shared_with_the_caller(harness: Harness) -> None:
    """`apply` mutates states in place; that must not reach the store without a save."""
    state = entry_only("CONS-1")
    expected = encode_state(state)

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([state])
            state.hs_codes.add("999999")
            loaded = (await store.load(["CONS-1"]))["CONS-1"]
            assert encode_state(loaded) == expected
            loaded.flagged.add("transit-to-ru")
            assert encode_state((await store.load(["CONS-1"]))["CONS-1"]) == expected

    run(scenario())


def test_unicode_and_odd_consignment_ids_each_get_their_own_state(harness: Harness) -> None:
    states = [entry_only(cid) for cid in ODD_IDS]
    assert len({s.consignment_id for s in states}) == len(ODD_IDS)

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save(states)
            loaded = await store.load(ODD_IDS)
            assert loaded == {s.consignment_id: s for s in states}
            # One at a time too: no id reaches another's state (no globbing, no prefix match).
            for state in states:
                assert await store.load([state.consignment_id]) == {state.consignment_id: state}
            assert await store.load(["a:b:c", "", "🚚", "e", "Ω" * 127]) == {}

    run(scenario())


_ID_CHARACTERS = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(consignment_id=st.text(_ID_CHARACTERS, min_size=1, max_size=128))
def test_any_valid_consignment_id_round_trips(harness: Harness, consignment_id: str) -> None:
    try:
        state = entry_only(consignment_id)
    except InvalidCrossing:
        return  # not an id the crossing schema accepts, so never stored

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([state])
            assert await store.load([consignment_id, consignment_id + "x"]) == {
                consignment_id: state
            }

    run(scenario())


def test_ttl_is_set_on_save_and_refreshed_by_every_save(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([entry_only("A"), entry_only("B")])
            for cid in ("A", "B"):
                left = await harness.expires_in(cid)
                assert left is not None and TTL - 2 < left <= TTL

            await harness.age(["A", "B"], 400)
            for cid in ("A", "B"):
                left = await harness.expires_in(cid)
                assert left is not None and TTL - 402 < left <= TTL - 400

            # Loading is not an event: it leaves the expiry alone.
            await store.load(["A", "B"])
            left = await harness.expires_in("A")
            assert left is not None and left <= TTL - 400

            # Saving is: the expiry starts again from now.
            await store.save([two_entries("A")])
            left = await harness.expires_in("A")
            assert left is not None and TTL - 2 < left <= TTL
            left = await harness.expires_in("B")
            assert left is not None and left <= TTL - 400

    run(scenario())


def test_a_state_expires_ttl_after_its_last_save(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([entry_only("OLD"), entry_only("RESAVED")])
            await harness.age(["OLD", "RESAVED"], TTL - 100)
            await store.save([entry_only("RESAVED"), entry_only("NEW")])

            await harness.age(["OLD", "RESAVED", "NEW"], 99)
            assert set(await store.load(["OLD", "RESAVED", "NEW"])) == {"OLD", "RESAVED", "NEW"}

            await harness.age(["OLD", "RESAVED", "NEW"], 1)  # OLD's last save was TTL ago
            assert set(await store.load(["OLD", "RESAVED", "NEW"])) == {"RESAVED", "NEW"}
            assert await harness.expires_in("OLD") is None

            await harness.age(["RESAVED", "NEW"], TTL - 100)
            assert await store.load(["OLD", "RESAVED", "NEW"]) == {}

            # An expired consignment starts afresh, like a new one.
            await store.save([entry_only("OLD")])
            assert set(await store.load(["OLD"])) == {"OLD"}

    run(scenario())


def test_undecodable_state_is_absent_reported_and_kept_aside(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    good = two_entries("GOOD")
    corrupt = {
        "GARBAGE": b"\x00not json at all\xff",
        "TRUNCATED": encode_state(flagged_pending("TRUNCATED"))[:-7],
        "FUTURE": b'{"v":2,"c":"FUTURE","n":1,"new":"field"}',
        "FUTURE-BINARY": bytes([STATE_VERSION + 1]) + encode_state(entry_only("FUTURE-BINARY"))[1:],
        "WRONG-ID": encode_state_json(entry_only("SOMEONE-ELSE")),
        # Format 2 does not hold the id (the key does); its checksum covers it.
        "WRONG-ID-BINARY": encode_state(entry_only("SOMEONE-ELSE")),
        "EMPTY": b"",
    }
    reported = CorruptLog()

    async def scenario() -> None:
        async with harness.session(TTL, on_corrupt=reported) as store:
            await store.save([good])
            for cid, raw in corrupt.items():
                await harness.put_raw(cid, raw)

            with caplog.at_level(logging.ERROR, logger="bordermon.stores"):
                loaded = await store.load(["GOOD", *corrupt])

            # The worker goes on: the good state loads, the bad ones are simply absent ...
            assert loaded == {"GOOD": good}
            # ... but nothing is lost silently: each is reported, logged, and kept aside.
            assert [cid for cid, _ in reported.calls] == list(corrupt)
            assert all(isinstance(error, StateDecodeError) for _, error in reported.calls)
            assert "version 2" in str(dict(reported.calls)["FUTURE"])
            assert "SOMEONE-ELSE" in str(dict(reported.calls)["WRONG-ID"])
            assert "another consignment" in str(dict(reported.calls)["WRONG-ID-BINARY"])
            assert "newer bordermon" in str(dict(reported.calls)["FUTURE-BINARY"])
            logged = "\n".join(r.getMessage() for r in caplog.records)
            for cid, raw in corrupt.items():
                assert repr(cid) in logged
                assert await harness.quarantined(cid) == raw
            assert await harness.quarantined("GOOD") is None

            # The worker then saves a fresh state over it; the quarantined copy stays.
            fresh = entry_only("GARBAGE")
            await store.save([fresh])
            assert await store.load(["GARBAGE"]) == {"GARBAGE": fresh}
            assert await harness.quarantined("GARBAGE") == corrupt["GARBAGE"]
            assert len(reported.calls) == len(corrupt)

    run(scenario())


def test_undecodable_state_without_a_callback_is_still_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await harness.put_raw("BAD", b"{")
            with caplog.at_level(logging.ERROR, logger="bordermon.stores"):
                assert await store.load(["BAD"]) == {}
            assert await harness.quarantined("BAD") == b"{"

    run(scenario())
    assert any("'BAD'" in r.getMessage() for r in caplog.records)


def test_empty_save_is_fine(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([])
            await store.save(iter(()))
            assert await store.load(["x"]) == {}

    run(scenario())


def test_states_from_an_encoder_of_this_version_decode(harness: Harness) -> None:
    """A value written by another process of this version (e.g. a previous worker) loads."""
    state = flagged_acknowledged("CONS-9")

    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await harness.put_raw("CONS-9", encode_state(state))
            loaded = await store.load(["CONS-9"])
            assert loaded == {"CONS-9": state}
            assert isinstance(loaded["CONS-9"], ConsignmentState)

    run(scenario())


# --- single writer: revisions and owner tokens (SPEC §6) ------------------------------------


def test_revisions_count_saves_and_absent_keys_are_revision_0(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            assert (await store.snapshot(["A"])).revisions == {"A": 0}
            assert await store.save([entry_only("A")], expected={"A": 0}) == {"A": 1}
            assert await store.save([two_entries("A")], expected={"A": 1}) == {"A": 2}
            snapshot = await store.snapshot(["A", "B"])
            assert snapshot.revisions == {"A": 2, "B": 0}
            assert snapshot.states == {"A": two_entries("A")}

    run(scenario())


def test_a_save_overtaken_by_another_writer_writes_nothing(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([entry_only("A")])
            seen = (await store.snapshot(["A", "B"])).revisions
            await store.save([exit_only("A")], expected=seen)  # the other writer
            with pytest.raises(SaveConflict) as raised:
                await store.save([two_entries("A"), entry_only("B")], expected=seen)
            assert raised.value.keys == {"A"}
            # All or nothing: B was not written either, and A keeps the other writer's state.
            assert await store.load(["A", "B"]) == {"A": exit_only("A")}

    run(scenario())


def test_a_key_saved_without_expectation_is_written_whatever_its_revision(
    harness: Harness,
) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            await store.save([entry_only("A")])
            assert await store.save([exit_only("A")], expected={}) == {"A": 2}
            assert await store.load(["A"]) == {"A": exit_only("A")}

    run(scenario())


def test_claims_fence_off_earlier_owners(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            first = await store.claim(["crossings:0", "crossings:1"])
            assert await store.save([entry_only("A")], fence=first) == {"A": 1}
            second = await store.claim(["crossings:1"])
            assert second["crossings:1"] > first["crossings:1"]
            # The earlier owner of partition 1 is refused, and writes nothing at all.
            with pytest.raises(Fenced) as raised:
                await store.save([exit_only("A"), entry_only("B")], fence=first)
            assert raised.value.owners == {"crossings:1"}
            assert await store.load(["A", "B"]) == {"A": entry_only("A")}
            # The new owner writes; an owner nobody claimed is never current.
            fence = {"crossings:0": first["crossings:0"], **second}
            assert await store.save([exit_only("A")], fence=fence) == {"A": 2}
            with pytest.raises(Fenced):
                await store.save([exit_only("A")], fence={"crossings:9": 1})

    run(scenario())


def test_a_state_stored_before_revisions_existed_reads_as_revision_1(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.session(TTL) as store:
            # Then, states were JSON (format 1).
            await harness.put_raw("OLD", encode_state_json(entry_only("OLD")))
            snapshot = await store.snapshot(["OLD"])
            assert snapshot.states == {"OLD": entry_only("OLD")}
            assert snapshot.revisions == {"OLD": 1}
            await store.save([exit_only("OLD")], expected=snapshot.revisions)
            assert await store.load(["OLD"]) == {"OLD": exit_only("OLD")}

    run(scenario())

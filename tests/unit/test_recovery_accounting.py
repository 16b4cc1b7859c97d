"""Connection state recovery counted per drop (labs/accounting/recovery.py): literal histories, each
broken one way, each count checked."""

from __future__ import annotations

from labs.accounting.history import Ack, ClientRecord, History, Received, Sent, Session
from labs.accounting.recovery import Rejoin, per_drop, totals


def history(received: list[Received], *, sent: list[Sent] | None = None, acks: list[Ack] | None = None,
            sessions: list[Session] | None = None) -> History:
    """a and b in one room; b drops at 2.0 and is back (answered) at 3.0; a sends m1 at 1.0 (before the drop),
    m2 at 2.5 (while b is away), m3 at 4.0 (after)."""
    sent = sent if sent is not None else [Sent("m1", "a", 1.0), Sent("m2", "a", 2.5), Sent("m3", "a", 4.0)]
    return History(
        replicas=["app-1", "app-2"],
        clients=[ClientRecord("a", True, 3, room="lobby"), ClientRecord("b", True, 0, room="lobby")],
        sessions=sessions if sessions is not None else [
            Session("a", "app-1", 0.1), Session("b", "app-2", 0.2, 2.0), Session("b", "app-1", 3.1)],
        sent=sent, acks=acks if acks is not None else [Ack(m.id, m.at + 0.01) for m in sent],
        received=received)


REJOINS = [Rejoin("b", 0.15, 0.18, False, False, False), Rejoin("b", 2.6, 3.0, True, True, True, ("m2",), "1-0")]


def test_a_replay_that_gives_back_what_was_missed_fills_the_whole_gap() -> None:
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 2.9), Received("m3", "b", 4.1)])
    [drop] = per_drop(h, REJOINS)
    assert (drop.recovered, drop.replayed, drop.missed, drop.filled, drop.duplicates, drop.lost) == (
        True, 1, 1, 1, 0, 0)
    assert drop.gap_filled == 1.0 and drop.back == 3.0


def test_a_replay_that_leaves_a_message_out_fills_part_of_the_gap_and_the_rest_is_lost() -> None:
    h = history([Received("m1", "b", 1.1), Received("m3", "b", 4.1)])
    rejoins = [REJOINS[0], Rejoin("b", 2.6, 3.0, True, True, True, ())]
    [drop] = per_drop(h, rejoins)
    assert (drop.missed, drop.filled, drop.lost, drop.gap_filled) == (1, 0, 1, 0.0)


def test_a_replayed_copy_of_a_message_the_client_had_is_a_duplicate() -> None:
    h = history([Received("m1", "b", 1.1), Received("m1", "b", 2.8), Received("m2", "b", 2.9),
                 Received("m3", "b", 4.1)])
    rejoins = [REJOINS[0], Rejoin("b", 2.6, 3.0, True, True, True, ("m1", "m2"))]
    [drop] = per_drop(h, rejoins)
    assert (drop.replayed, drop.duplicates, drop.filled, drop.lost) == (2, 1, 1, 0)


def test_a_live_copy_of_what_the_replay_just_gave_is_a_duplicate() -> None:
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 2.9), Received("m2", "b", 3.2),
                 Received("m3", "b", 4.1)])
    [drop] = per_drop(h, REJOINS)
    assert drop.duplicates == 1


def test_a_live_copy_of_a_message_its_sender_wrote_again_is_the_senders_duplicate_not_the_replays() -> None:
    """a's acknowledgement of m2 was lost with its own drop, so a wrote m2 again: b's second copy is a's."""
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 2.9), Received("m2", "b", 3.2),
                 Received("m3", "b", 4.1)])
    [before] = per_drop(h, REJOINS)
    h.resent.append(Sent("m2", "a", 3.15))
    [drop] = per_drop(h, REJOINS)
    assert (before.duplicates, drop.duplicates, drop.replayed, drop.lost) == (1, 0, 1, 0)


def test_a_replay_holding_both_copies_of_a_message_written_again_has_no_duplicate_of_its_own() -> None:
    """The stream keeps both of a's writes of m2, so the replay gives b both: one too many only when a wrote
    m2 once."""
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 2.8), Received("m2", "b", 2.9),
                 Received("m3", "b", 4.1)])
    rejoins = [REJOINS[0], Rejoin("b", 2.6, 3.0, True, True, True, ("m2", "m2"))]
    [once] = per_drop(h, rejoins)
    h.resent.append(Sent("m2", "a", 2.55))
    [twice] = per_drop(h, rejoins)
    assert (once.duplicates, twice.duplicates, twice.filled, twice.lost) == (1, 0, 1, 0)


def test_a_message_still_on_its_way_that_came_live_after_the_return_was_not_missed() -> None:
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 3.2), Received("m3", "b", 4.1)])
    rejoins = [REJOINS[0], Rejoin("b", 2.6, 3.0, True, True, True, ())]
    [drop] = per_drop(h, rejoins)
    assert (drop.missed, drop.lost) == (0, 0) and drop.gap_filled is None


def test_a_message_whose_sender_was_away_too_belongs_to_when_the_server_had_it() -> None:
    """m2 was generated while b was away but acknowledged (sent by its sender) only after b was back:
    no replay of b's drop could have held it."""
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 3.5), Received("m3", "b", 4.1)],
                acks=[Ack("m1", 1.01), Ack("m2", 3.4), Ack("m3", 4.01)])
    rejoins = [REJOINS[0], Rejoin("b", 2.6, 3.0, True, True, True, ())]
    [drop] = per_drop(h, rejoins)
    assert drop.missed == 0


def test_a_server_without_recovery_recovers_nothing_and_what_was_missed_is_lost() -> None:
    h = history([Received("m1", "b", 1.1), Received("m3", "b", 4.1)])
    rejoins = [REJOINS[0], Rejoin("b", 2.6, 3.0, False, False, False)]
    t = totals(per_drop(h, rejoins))
    assert (t.back, t.recovered, t.unrecovered, t.replayed, t.missed, t.lost, t.gap_filled) == (
        1, 0, 1, 0, 1, 1, 0.0)


def test_a_client_that_never_came_back_is_a_drop_neither_recovered_nor_not() -> None:
    h = history([Received("m1", "b", 1.1)], sessions=[Session("a", "app-1", 0.1), Session("b", "app-2", 0.2, 2.0)])
    [drop] = per_drop(h, REJOINS[:1])
    assert (drop.recovered, drop.back, drop.lost) == (None, None, 2)
    t = totals([drop])
    assert (t.drops, t.back, t.recovered, t.unrecovered) == (1, 0, 0, 0)


def test_an_attempt_the_server_never_answered_does_not_count_as_the_return() -> None:
    h = history([Received("m1", "b", 1.1), Received("m2", "b", 2.9), Received("m3", "b", 4.1)])
    rejoins = [REJOINS[0], Rejoin("b", 2.1, 2.4, True, True, None), REJOINS[1]]
    [drop] = per_drop(h, rejoins)
    assert (drop.back, drop.recovered, drop.filled) == (3.0, True, 1)


def test_nothing_dropped_leaves_every_ratio_unmeasured() -> None:
    h = history([Received("m1", "b", 1.1)], sessions=[Session("a", "app-1", 0.1), Session("b", "app-2", 0.2)])
    t = totals(per_drop(h, REJOINS[:1]))
    assert (t.drops, t.missed, t.gap_filled) == (0, 0, None)

"""The protocol engine's rules, one by one (docs/design.md "Prompting protocol")."""

import pytest

from studies.core.kinds import get_kind
from studies.prompting.protocol import (
    DEFAULT_PROTOCOL,
    Action,
    ProtocolError,
    State,
    apply_action,
    apply_score,
)

P = dict(DEFAULT_PROTOCOL)


def add(state, mode, x=1.0, y=1.0, protocol=P):
    return apply_action(state, Action("add", mode, x, y), protocol)


def with_points(green=1, red=1):
    state = State()
    for i in range(green):
        state = add(state, "green", i, i).state
    for i in range(red):
        state = add(state, "red", 10 + i, 10 + i).state
    return state


def test_prediction_needs_one_green_and_one_red():
    s = State()
    t = add(s, "green")
    assert not t.prediction_due and t.changed
    t = add(t.state, "green", 2, 2)
    assert not t.prediction_due
    t = add(t.state, "red", 5, 5)
    assert t.prediction_due
    assert t.state.green == ((1.0, 1.0), (2.0, 2.0)) and t.state.red == ((5.0, 5.0),)


def test_min_points_are_options():
    protocol = {**P, "min_red": 0}
    assert apply_action(State(), Action("add", "green", 1, 1), protocol).prediction_due


def test_remove_takes_the_nearest_point_of_the_mode():
    s = with_points(green=3, red=1)
    t = apply_action(s, Action("remove", "green", 1.2, 0.9), P)
    assert t.state.green == ((0.0, 0.0), (2.0, 2.0))
    assert t.prediction_due
    t = apply_action(t.state, Action("remove", "red", 0, 0), P)
    assert t.state.red == () and not t.prediction_due


def test_remove_without_points_changes_nothing():
    t = apply_action(State(), Action("remove", "red", 3, 3), P)
    assert t.state == State() and not t.changed and not t.prediction_due


def test_tie_does_not_improve_and_improvement_resets_counter():
    s = with_points()
    s = apply_score(s, 0.5, P).state
    assert (s.round_best, s.counter, s.timesteps) == (0.5, 1, 1)
    s = apply_score(s, 0.5, P).state  # tie
    assert (s.round_best, s.counter) == (0.5, 2)
    s = apply_score(s, 0.4, P).state
    assert s.counter == 3
    s = apply_score(s, 0.6, P).state
    assert (s.round_best, s.counter) == (0.6, 1)


def test_zero_score_first_timestep_does_not_improve():
    s = apply_score(with_points(), 0.0, P).state
    assert s.round_best == 0.0 and s.counter == 2


def test_round_ends_on_the_tenth_consecutive_non_improving_timestep():
    s = apply_score(with_points(), 0.9, P).state
    for k in range(1, 10):
        t = apply_score(s, 0.5, P)
        assert not t.round_ended, f"ended early at non-improving timestep {k}"
        s = t.state
    t = apply_score(s, 0.5, P)
    assert t.round_ended and not t.finished
    assert t.state.round == 2 and t.state.green == () and t.state.red == ()
    assert t.state.counter == 1 and t.state.round_best == 0.0 and t.state.timesteps == 11


def test_stagnation_limit_is_an_option():
    protocol = {**P, "stagnation_limit": 3}
    s = apply_score(with_points(), 0.9, protocol).state
    s = apply_score(s, 0.1, protocol).state
    s = apply_score(s, 0.1, protocol).state
    assert apply_score(s, 0.1, protocol).round_ended


def test_clear_resets_counter_keeps_round_and_best():
    s = apply_score(with_points(), 0.7, P).state
    s = apply_score(s, 0.2, P).state
    s = apply_score(s, 0.2, P).state
    assert s.counter == 3
    t = apply_action(s, Action("clear"), P)
    assert t.state.counter == 1 and t.state.green == () and t.state.red == ()
    assert t.state.round == 1 and t.state.round_best == 0.7 and not t.prediction_due


def test_second_stagnation_finishes_with_reason():
    s = with_points()
    rounds_ended = 0
    for _ in range(40):
        t = apply_score(s, 0.0, P)
        s = t.state
        rounds_ended += t.round_ended
        if t.finished:
            break
    assert t.finished and rounds_ended == 2
    assert s.stop_reason == "stagnation" and s.timesteps == 20 and s.round == 2


def test_finish_action_and_nothing_after():
    t = apply_action(with_points(), Action("finish"), P)
    assert t.finished and t.state.stop_reason == "finished"
    with pytest.raises(ProtocolError, match="already finished"):
        apply_action(t.state, Action("add", "green", 1, 1), P)
    with pytest.raises(ProtocolError, match="already finished"):
        apply_score(t.state, 0.5, P)


@pytest.mark.parametrize(
    "action, message",
    [
        (Action("jump"), "unknown action"),
        (Action("add", "blue", 1, 1), "mode"),
        (Action("add", "green", float("nan"), 1), "finite"),
        (Action("add", "green", None, 1), "finite"),
    ],
)
def test_bad_actions_are_named(action, message):
    with pytest.raises(ProtocolError, match=message):
        apply_action(State(), action, P)


def test_state_json_round_trip():
    s = apply_score(with_points(2, 1), 0.3, P).state
    assert State.from_json(s.to_json()) == s


def test_validate_protocol():
    validate_protocol = get_kind("prompting").validate_protocol
    assert validate_protocol({})["stagnation_limit"] == 10
    with pytest.raises(ProtocolError, match="mask_choice"):
        validate_protocol({"mask_choice": "largest"})
    with pytest.raises(ProtocolError, match="unknown protocol option"):
        validate_protocol({"speed": 3})
    with pytest.raises(ProtocolError, match="stagnation_limit"):
        validate_protocol({"stagnation_limit": 0})

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


def act(state, kind, protocol=P):
    return apply_action(state, Action(kind), protocol)


def test_undo_and_redo_restore_the_previous_and_next_point_sets():
    s = with_points(green=2, red=1)  # three changes: g1, g2, r1
    t = act(s, "undo")
    assert t.changed and t.state.green == ((0.0, 0.0), (1.0, 1.0)) and t.state.red == ()
    assert not t.prediction_due  # no red point left: below the minimum, no timestep
    t = act(t.state, "undo")
    assert t.state.green == ((0.0, 0.0),) and t.state.red == ()
    t = act(t.state, "redo")
    assert t.state.green == ((0.0, 0.0), (1.0, 1.0))
    t = act(t.state, "redo")
    assert t.state.red == ((10.0, 10.0),) and t.prediction_due  # back to a predictable set
    with pytest.raises(ProtocolError, match="nothing to redo"):
        act(t.state, "redo")


def test_a_new_change_forgets_the_redo_and_clear_can_be_undone():
    s = with_points(green=1, red=1)
    t = act(s, "clear")
    assert t.state.green == () and t.state.red == () and t.state.counter == 1
    t = act(t.state, "undo")
    assert t.state.green == ((0.0, 0.0),) and t.state.red == ((10.0, 10.0),) and t.prediction_due
    t = act(t.state, "undo")  # before the red point
    t = add(t.state, "red", 7, 7)
    assert t.state.future == ()
    with pytest.raises(ProtocolError, match="nothing to redo"):
        act(t.state, "redo")


def test_undo_history_survives_json_and_a_round_end_starts_empty():
    s = with_points(green=1, red=1)
    again = State.from_json(s.to_json())
    assert again == s and len(again.history) == 2
    p = dict(P, stagnation_limit=1, max_rounds=2)
    t = apply_score(s, 0.0, p)  # counter 1 == limit and 0.0 does not improve: the round ends
    assert t.round_ended and t.state.history == () and t.state.future == ()
    with pytest.raises(ProtocolError, match="nothing to undo"):
        act(t.state, "undo")
    assert State.from_json({"round": 1, "green": [[1, 2]], "red": []}).history == ()  # old rows


def test_finish_waits_for_the_minimum_number_of_predictions():
    p = dict(P, min_timesteps=2)
    s = with_points()
    with pytest.raises(ProtocolError, match="at least 2 predictions"):
        act(s, "finish", p)
    s = apply_score(apply_score(s, 0.5, p).state, 0.6, p).state
    assert act(s, "finish", p).finished
    assert act(with_points(), "finish").finished  # default 0: no minimum


def test_workspace_options_are_declared_and_checked():
    kind = get_kind("prompting")
    full = kind.validate_protocol({})
    assert full["layout"] == "workspace" and full["overlay_style"] == "fill"
    assert full["round_indicator"] is False and full["min_timesteps"] == 0
    with pytest.raises(ProtocolError, match="overlay_opacity must be an integer between 0 and 100"):
        kind.validate_protocol({"overlay_opacity": 101})
    with pytest.raises(ProtocolError, match="layout must be one of"):
        kind.validate_protocol({"layout": "grid"})
    assert "round_indicator" not in get_kind("intervention").options
    assert get_kind("intervention").options["min_timesteps"].default == 0


def test_manifest_protocol_claims_new_options_only_for_studies_that_have_them():
    from types import SimpleNamespace

    from studies.core.kinds import full_protocol

    old = SimpleNamespace(kind="prompting", protocol=dict(DEFAULT_PROTOCOL))  # stored pre-workspace
    assert "layout" not in full_protocol(old) and full_protocol(old)["max_rounds"] == 2
    new = SimpleNamespace(kind="prompting", protocol=get_kind("prompting").validate_protocol({}))
    assert full_protocol(new)["layout"] == "workspace"
    bare = SimpleNamespace(kind="prompting", protocol={})  # takes every default, new ones too
    assert full_protocol(bare)["min_timesteps"] == 0

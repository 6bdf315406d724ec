"""The prompting protocol engine: pure functions (state, action) -> new state.

No Django, no I/O. The server derives point sets, rounds, timesteps and the stagnation counter
from the participant's actions with these functions, so an export can never disagree with what
was shown. The defaults reproduce the PointPrompt collection tool (docs/design.md, "Prompting
protocol"): a prediction once >= 1 green and >= 1 red point exist; a round ends on the 10th
consecutive non-improving timestep; two rounds; ties do not improve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from studies.core.kinds import ProtocolError

DEFAULT_PROTOCOL: dict = {
    "show_ground_truth": True,
    "show_score": True,
    "min_green": 1,
    "min_red": 1,
    "mask_choice": "first",  # "first" (PointPrompt: masks[0]) or "best_predicted"
    "chain_low_res_mask": False,
    "stagnation_limit": 10,
    "max_rounds": 2,
    # protocol version 2 (docs/browser_decoder.md): the in-browser SAM decoder
    "browser_decoder": True,  # preview each click's mask in the browser when available
    "hover_preview": False,  # preview the mask under the resting cursor before a click
}
SINCE = {"browser_decoder": 2, "hover_preview": 2}  # options added after version 1

MASK_CHOICES = ("first", "best_predicted")
ACTIONS = ("add", "remove", "clear", "undo", "redo", "finish")
MODES = ("green", "red")


# An action the protocol does not allow; options are checked by the kind (prompting/kind.py).
__all__ = ["ProtocolError"]


@dataclass(frozen=True)
class Action:
    kind: str  # add / remove / clear / undo / redo / finish
    mode: str = ""  # green / red (add, remove)
    x: float | None = None
    y: float | None = None


Points = tuple[tuple[float, float], ...]
PointSets = tuple[Points, Points]  # (green, red)


@dataclass(frozen=True)
class State:
    round: int = 1  # 1-based
    green: tuple[tuple[float, float], ...] = ()
    red: tuple[tuple[float, float], ...] = ()
    timesteps: int = 0  # timesteps so far in the assignment (the next one's index)
    round_best: float = 0.0  # best score of the current round (0 before its first timestep)
    counter: int = 1  # stagnation counter
    finished: bool = False
    stop_reason: str = ""  # "stagnation" or "finished"
    # The round's earlier point sets (undo restores the last) and the undone ones (redo).
    history: tuple[PointSets, ...] = ()
    future: tuple[PointSets, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        data["green"] = [list(p) for p in self.green]
        data["red"] = [list(p) for p in self.red]
        for name in ("history", "future"):
            data[name] = [[[list(p) for p in g], [list(p) for p in r]] for g, r in data[name]]
        return data

    @classmethod
    def from_json(cls, data: dict | None) -> State:
        if not data:
            return cls()
        data = dict(data)
        data["green"] = tuple(tuple(p) for p in data.get("green", ()))
        data["red"] = tuple(tuple(p) for p in data.get("red", ()))
        for name in ("history", "future"):
            data[name] = tuple(
                (tuple(tuple(p) for p in g), tuple(tuple(p) for p in r))
                for g, r in data.get(name, ())
            )
        return cls(**data)


@dataclass(frozen=True)
class Transition:
    state: State
    prediction_due: bool = False  # the caller must predict a mask and call apply_score
    round_ended: bool = False
    finished: bool = False
    changed: bool = False  # the point sets changed
    notes: list[str] = field(default_factory=list)


def _nearest(points: tuple[tuple[float, float], ...], x: float, y: float) -> int:
    return min(range(len(points)), key=lambda i: (points[i][0] - x) ** 2 + (points[i][1] - y) ** 2)


def _due(state: State, protocol: dict) -> bool:
    """A prediction is due when both point sets reach their minimum (and some point exists)."""
    enough = len(state.green) >= protocol["min_green"] and len(state.red) >= protocol["min_red"]
    return enough and (len(state.green) + len(state.red)) > 0


def _changed(state: State, green: Points, red: Points, **changes) -> State:
    """`state` with new point sets; the old ones go on the undo history, redo is forgotten."""
    history = state.history + ((state.green, state.red),)
    return replace(state, green=green, red=red, history=history, future=(), **changes)


def apply_action(state: State, action: Action, protocol: dict) -> Transition:
    """Apply a participant's action. Says whether a prediction (a timestep) is now due.

    `undo` restores the point set before the round's last change (`redo` the one undone);
    both are ordinary point changes, so a prediction follows when the minimum is met. A round
    end starts an empty history. `finish` needs `min_timesteps` predictions (default 0).
    """
    if state.finished:
        raise ProtocolError("the image is already finished")
    if action.kind not in ACTIONS:
        raise ProtocolError(f"unknown action {action.kind!r}; expected one of {', '.join(ACTIONS)}")
    if action.kind == "finish":
        needed = protocol.get("min_timesteps", 0)
        if state.timesteps < needed:
            raise ProtocolError(
                f"this image needs at least {needed} predictions before it can be finished "
                f"(it has {state.timesteps})"
            )
        new = replace(state, finished=True, stop_reason="finished")
        return Transition(new, finished=True)
    if action.kind == "clear":
        if not (state.green or state.red):
            return Transition(replace(state, counter=1), notes=["no point to clear"])
        return Transition(_changed(state, (), (), counter=1), changed=True)
    if action.kind in ("undo", "redo"):
        source = state.history if action.kind == "undo" else state.future
        if not source:
            raise ProtocolError(f"there is nothing to {action.kind} in this round")
        green, red = source[-1]
        here = ((state.green, state.red),)
        if action.kind == "undo":
            new = replace(
                state, green=green, red=red, history=source[:-1], future=state.future + here
            )
        else:
            new = replace(
                state, green=green, red=red, history=state.history + here, future=source[:-1]
            )
        return Transition(new, prediction_due=_due(new, protocol), changed=True)
    if action.mode not in MODES:
        raise ProtocolError(f"mode must be one of {', '.join(MODES)} for {action.kind}")
    if (
        action.x is None
        or action.y is None
        or not (math.isfinite(action.x) and math.isfinite(action.y))
    ):
        raise ProtocolError(f"{action.kind} needs finite x and y")
    points = state.green if action.mode == "green" else state.red
    if action.kind == "add":
        points = points + ((float(action.x), float(action.y)),)
    else:
        if not points:
            return Transition(state, notes=[f"no {action.mode} point to remove"])
        drop = _nearest(points, action.x, action.y)
        points = points[:drop] + points[drop + 1 :]
    if action.mode == "green":
        new = _changed(state, points, state.red)
    else:
        new = _changed(state, state.green, points)
    return Transition(new, prediction_due=_due(new, protocol), changed=True)


def apply_score(state: State, score: float, protocol: dict) -> Transition:
    """Record one timestep's score: stagnation counter, round end, automatic finish.

    A score that does not exceed the round's best so far (ties do not improve) ends the round
    when the counter has reached `stagnation_limit`, else the counter grows by one; an improving
    score resets it to 1. Round `max_rounds` ending finishes the image (stop reason stagnation).
    """
    if state.finished:
        raise ProtocolError("the image is already finished")
    timesteps = state.timesteps + 1
    if score > state.round_best:
        return Transition(replace(state, timesteps=timesteps, round_best=score, counter=1))
    if state.counter < protocol["stagnation_limit"]:
        return Transition(replace(state, timesteps=timesteps, counter=state.counter + 1))
    if state.round >= protocol["max_rounds"]:
        new = replace(state, timesteps=timesteps, finished=True, stop_reason="stagnation")
        return Transition(new, round_ended=True, finished=True)
    new = State(round=state.round + 1, timesteps=timesteps)
    return Transition(new, round_ended=True)

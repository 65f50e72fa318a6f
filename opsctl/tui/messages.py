"""The dashboard's typed messages: data arriving from workers, and requests from widgets.

Workers post ``*Updated`` messages with frozen data; widgets post ``*Requested`` messages that
the screen confirms and carries out in a worker.
"""

from __future__ import annotations

from typing import Literal

from textual.message import Message

from opsctl.supervisor.events import Event
from opsctl.tui.data import (
    ActionOutcome,
    ConnectorsData,
    GateData,
    HealthData,
    ProcessesData,
    QueueData,
    RateLimitsData,
    StageOutcome,
)


class ProcessesUpdated(Message):
    def __init__(self, data: ProcessesData) -> None:
        super().__init__()
        self.data = data


class QueueUpdated(Message):
    def __init__(self, data: QueueData) -> None:
        super().__init__()
        self.data = data


class GateUpdated(Message):
    def __init__(self, data: GateData) -> None:
        super().__init__()
        self.data = data


class HealthUpdated(Message):
    def __init__(self, data: HealthData) -> None:
        super().__init__()
        self.data = data


class ConnectorsUpdated(Message):
    def __init__(self, data: ConnectorsData) -> None:
        super().__init__()
        self.data = data


class RateLimitsUpdated(Message):
    def __init__(self, data: RateLimitsData) -> None:
        super().__init__()
        self.data = data


class EventsReceived(Message):
    """A batch of the supervisor's events (log lines, starts, exits)."""

    def __init__(self, events: tuple[Event, ...]) -> None:
        super().__init__()
        self.events = events


class EventStreamChanged(Message):
    """The supervisor's event stream connected (``error`` None) or is down (why)."""

    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error


class ProcessActionRequested(Message):
    def __init__(self, op: Literal["restart", "stop"], target: str) -> None:
        super().__init__()
        self.op: Literal["restart", "stop"] = op
        self.target = target


class RetryDeadRequested(Message):
    def __init__(self, job_id: str, kind: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.kind = kind


class StageChangeRequested(Message):
    def __init__(self, verb: Literal["promote", "demote"], connector_id: str) -> None:
        super().__init__()
        self.verb: Literal["promote", "demote"] = verb
        self.connector_id = connector_id


class ActionFinished(Message):
    """A process or dead-letter action ended; the screen notifies and refreshes."""

    def __init__(self, outcome: ActionOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class StageChangeFinished(Message):
    def __init__(self, outcome: StageOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class FilterChanged(Message):
    """The ``/`` filter's text changed (empty: no filter); ``done`` when its input closed."""

    def __init__(self, text: str, *, done: bool = False) -> None:
        super().__init__()
        self.text = text
        self.done = done

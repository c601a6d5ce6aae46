"""Outputs waiting to be emitted, tagged with the sample index at which they were decided.

Every stage decides things at a definite point of the sample stream (an index), never at a
point of the caller's blocking. Sorting the outputs of one ``process`` call by that index
therefore gives the same overall sequence whatever the block size, which is what makes the
detector's output independent of how the samples arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.detect.types import Output

# Tie-break between outputs decided at the same sample: faults first (they explain what
# follows), then movements, series, sleep, presence, states, epochs, vitals.
ORDER_FAULT = 0
ORDER_MOVEMENT = 1
ORDER_SERIES = 2
ORDER_SLEEP = 3
ORDER_PRESENCE = 4
ORDER_STATE = 5
ORDER_EPOCH = 6
ORDER_VITALS = 7


@dataclass(frozen=True, slots=True)
class StateChange:
    """One field of the sleeper's State changes at ``t_s`` (``moving``, ``in_bed``, ``asleep``)."""

    field: str
    value: bool
    t_s: float


@dataclass(frozen=True, slots=True)
class FaultLead:
    """A movement dropped because it ran into a sensor fault: the fault began at ``start_s``."""

    start_s: float
    end_s: float


@dataclass(slots=True)
class Pending:
    """One output and where in the stream it was decided.

    ``at`` is the raw sample index (count of input samples) at which the decision could
    first be made; ``order`` breaks ties between stages; ``serial`` keeps the order within
    a stage. Events carry ``seq=-1`` until the Detector numbers them.
    """

    at: int
    order: int
    output: Output | StateChange | FaultLead
    serial: int = 0

    def key(self) -> tuple[int, int, int]:
        """Sort key: decision index, stage, order within the stage."""
        return (self.at, self.order, self.serial)

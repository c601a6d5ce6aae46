"""Movement, presence, sleep and vital-sign detection: pure numpy over sample arrays.

``Detector(rate_hz, params).process(samples)`` streams; ``analyze_array`` runs a recording
in one pass. Each stage is its own module and can be used alone.
"""

from service.detect.detector import Detector, analyze_array
from service.detect.params import DetectorParams
from service.detect.sleep import cole_kripke, find_awakenings, score_sleep, summarize_sleep
from service.detect.types import EVENT_TYPES, Epoch, Event, Output, State, Vitals

__all__ = [
    "EVENT_TYPES",
    "Detector",
    "DetectorParams",
    "Epoch",
    "Event",
    "Output",
    "State",
    "Vitals",
    "analyze_array",
    "cole_kripke",
    "find_awakenings",
    "score_sleep",
    "summarize_sleep",
]

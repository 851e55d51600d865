"""``aloe data build``: a training mixture from many sources (:mod:`.run`), in four modules with one job each:

* :mod:`.config`: the mixture's configuration (sources, weights, caps, formats);
* :mod:`.records`: one source's records read, cleaned and formatted into chat samples;
* :mod:`.split`: weights, caps, the train/validation split and the general share;
* :mod:`.run`: the build itself (dedup, decontamination, the split, stats and the dataset on disk).
"""

from aloekit.data.mixture.config import MCQFormat, MixtureConfig, ReasoningConfig, SafetyFormat, SourceEntry
from aloekit.data.mixture.records import (
    Record,
    balanced,
    clean_record,
    content_key,
    load_entry,
    styled_requests,
    teacher_reasoning,
    to_chat,
)
from aloekit.data.mixture.run import Entry, build
from aloekit.data.mixture.split import item_key, mix_and_split

__all__ = [
    "Entry",
    "MCQFormat",
    "MixtureConfig",
    "ReasoningConfig",
    "Record",
    "SafetyFormat",
    "SourceEntry",
    "balanced",
    "build",
    "clean_record",
    "content_key",
    "item_key",
    "load_entry",
    "mix_and_split",
    "styled_requests",
    "teacher_reasoning",
    "to_chat",
]

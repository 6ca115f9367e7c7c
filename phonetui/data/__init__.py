"""The data wing: course files (files), utterances from rows, demo sets (simulated, speech), row layout (frames)."""

from . import utterances
from .files import (
    DEMO_MARKER,
    DEMO_TEST_ROWS,
    DEMO_TEST_UTTERANCES,
    DEMO_TRAIN_ROWS,
    DEMO_UTTERANCES,
    TEST_X,
    TEST_Y,
    TRAIN_X,
    TRAIN_Y,
    TimitData,
    cache_dir,
    default_dir,
    demo_kind,
    load,
    load_features,
    load_labels,
    make_demo,
    make_speech_demo,
)

__all__ = ["DEMO_MARKER", "DEMO_TEST_ROWS", "DEMO_TEST_UTTERANCES", "DEMO_TRAIN_ROWS", "DEMO_UTTERANCES",
           "TEST_X", "TEST_Y", "TRAIN_X", "TRAIN_Y", "TimitData", "cache_dir", "default_dir", "demo_kind", "load",
           "load_features", "load_labels", "make_demo", "make_speech_demo", "utterances"]

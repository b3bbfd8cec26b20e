"""Online adaptation: support buffers, the adaptation engine (atomic swaps), environment profiles, recognition."""

from mtml_core.adapt.engine import MAX_STEPS, AdaptationEngine, EngineConfig, ServingState
from mtml_core.adapt.labels import normals_from_depth
from mtml_core.adapt.profiles import Profile, ProfileStore, check_name
from mtml_core.adapt.results import AdaptResult, Prediction, Recognition, TaskStats

__all__ = ["MAX_STEPS", "AdaptResult", "AdaptationEngine", "EngineConfig", "Prediction", "Profile", "ProfileStore",
           "Recognition", "ServingState", "TaskStats", "check_name", "normals_from_depth"]

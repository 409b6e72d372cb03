"""The training engine: one loop (`fit`), hooks, evaluation, schedules, device and seeding."""

from prunerep.engine.config import ArchOptimConfig as ArchOptimConfig
from prunerep.engine.config import OptimConfig as OptimConfig
from prunerep.engine.config import RuntimeConfig as RuntimeConfig
from prunerep.engine.device import pick_device as pick_device
from prunerep.engine.device import seed_everything as seed_everything
from prunerep.engine.evaluate import evaluate as evaluate
from prunerep.engine.hooks import TrainHooks as TrainHooks
from prunerep.engine.hooks import TrainState as TrainState
from prunerep.engine.trainer import FitResult as FitResult
from prunerep.engine.trainer import fit as fit

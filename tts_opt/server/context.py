"""What every route of one app shares: settings, profiles and engines, admission, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from tts_opt.server.admission import Admission
from tts_opt.server.config import ServerConfig
from tts_opt.server.metrics import Metrics
from tts_opt.server.profiles import ProfileRegistry


@dataclass(frozen=True)
class ServerContext:
    config: ServerConfig
    registry: ProfileRegistry
    metrics: Metrics = field(default_factory=Metrics)
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        admission = Admission(self.config.limits, self.config.degradation)
        self.metrics.node_calls.set_function(lambda: admission.node_calls)
        object.__setattr__(self, "admission", admission)

"""vLLM's own Prometheus metrics (`vllm:` prefix) of every in-process engine, in one exposition.

vLLM's `PrometheusStatLogger` creates its collectors in prometheus_client's global registry and,
when constructed, unregisters every `vllm:` collector already there: of several engines in one
process only the last one's metrics would survive. So each engine passes its `AsyncLLM` a
subclass (`stat_logger`) that creates them in a registry of its own, through the class hooks
(`_gauge_cls`, ...) vLLM's Ray logger overrides the same way; being a `PrometheusStatLogger`, it
also stops vLLM from adding its default one. `ENGINE_METRICS` exposes every engine's registry,
families of the same name merged into one (their series differ in the `model_name` label).

Importable without vLLM: the server reads `ENGINE_METRICS` whatever its engines are.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from vllm.v1.metrics.loggers import StatLoggerFactory


class EngineMetrics:
    """A collector over the registries of the engines that are up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registries: list[CollectorRegistry] = []

    def attach(self, registry: CollectorRegistry) -> None:
        with self._lock:
            self._registries.append(registry)

    def detach(self, registry: CollectorRegistry) -> None:
        """An engine that closed takes its series with it."""
        with self._lock:
            self._registries = [r for r in self._registries if r is not registry]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            registries = list(self._registries)
        families: dict[str, Metric] = {}
        for registry in registries:
            for family in registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    families[family.name] = family
                else:
                    merged.samples.extend(family.samples)
        return iter(families.values())


ENGINE_METRICS = EngineMetrics()


def stat_logger(registry: CollectorRegistry) -> StatLoggerFactory:
    """A `PrometheusStatLogger` class (for `AsyncLLM`'s `stat_loggers`) writing into `registry`."""
    from vllm.distributed.ec_transfer.ec_connector.metrics import ECConnectorProm
    from vllm.distributed.kv_transfer.kv_connector.v1.metrics import KVConnectorProm
    from vllm.v1.metrics.loggers import PrometheusStatLogger
    from vllm.v1.metrics.perf import PerfMetricsProm
    from vllm.v1.spec_decode.metrics import SpecDecodingProm

    # partial, not a function: a class attribute that is a function would be bound as a method.
    hooks = {
        "_gauge_cls": partial(Gauge, registry=registry),
        "_counter_cls": partial(Counter, registry=registry),
        "_histogram_cls": partial(Histogram, registry=registry),
    }

    def rebind(base: type) -> Any:
        return type(base.__name__, (base,), {k: v for k, v in hooks.items() if hasattr(base, k)})

    return type(
        "EnginePrometheusStatLogger",
        (PrometheusStatLogger,),
        {
            **hooks,
            "_spec_decoding_cls": rebind(SpecDecodingProm),
            "_kv_connector_cls": rebind(KVConnectorProm),
            "_ec_connector_cls": rebind(ECConnectorProm),
            "_perf_metrics_cls": rebind(PerfMetricsProm),
        },
    )

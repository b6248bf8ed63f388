"""Evaluation: run a graph on task questions and report accuracy (95% Wilson CI), latency,
tokens and FLOPs; fixed-topology probe graphs; the node-output cache.

Dependencies: graph, engines, runtime and tasks below; the optimizer and the CLI on top.
"""

from tts_opt.evaluation.cache import (
    CachedSample,
    NodeCache,
    NodeCacheError,
    default_cache_path,
    sample_keys,
)
from tts_opt.evaluation.caching_engine import CachingEngine
from tts_opt.evaluation.probes import (
    PROBE_SYNTAX,
    chain_graph,
    is_probe,
    model_spec,
    parallel_graph,
    probe_graph,
    single_model_graph,
)
from tts_opt.evaluation.report import (
    CacheStats,
    EvalReport,
    LatencyStats,
    QuestionResult,
    dumps_report,
    load_report,
    save_report,
    with_measurements,
)
from tts_opt.evaluation.runner import ResultCallback, evaluate
from tts_opt.evaluation.stats import percentile, wilson_interval

__all__ = [
    "PROBE_SYNTAX",
    "CacheStats",
    "CachedSample",
    "CachingEngine",
    "EvalReport",
    "LatencyStats",
    "NodeCache",
    "NodeCacheError",
    "QuestionResult",
    "ResultCallback",
    "chain_graph",
    "default_cache_path",
    "dumps_report",
    "evaluate",
    "is_probe",
    "load_report",
    "model_spec",
    "parallel_graph",
    "percentile",
    "probe_graph",
    "sample_keys",
    "save_report",
    "single_model_graph",
    "wilson_interval",
    "with_measurements",
]

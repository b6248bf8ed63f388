"""The optimizer: Agent-REINFORCE and the paper's baselines over collaboration graphs."""

from tts_opt.evaluation.stats import wilson_interval
from tts_opt.optimizer.archive import Archive, ArchiveMismatch, EvaluationRecord
from tts_opt.optimizer.budget import REPAIR_RULES, BudgetError, maximal_multisets, repair
from tts_opt.optimizer.context import Limits, ProgressEvent, SearchContext, SearchStopped
from tts_opt.optimizer.distribution import GraphDistribution, ProbabilityTable
from tts_opt.optimizer.methods import METHODS, build_method
from tts_opt.optimizer.objective import GraphScorer, Measurement, Objective
from tts_opt.optimizer.runner import OptimizeSettings, SearchResult, optimize
from tts_opt.optimizer.sampling import sample_graph
from tts_opt.optimizer.space import Candidate, SearchSpace, legalize
from tts_opt.optimizer.synthetic import SyntheticScorer

__all__ = [
    "METHODS",
    "REPAIR_RULES",
    "Archive",
    "ArchiveMismatch",
    "BudgetError",
    "Candidate",
    "EvaluationRecord",
    "GraphDistribution",
    "GraphScorer",
    "Limits",
    "Measurement",
    "Objective",
    "OptimizeSettings",
    "ProbabilityTable",
    "ProgressEvent",
    "SearchContext",
    "SearchResult",
    "SearchSpace",
    "SearchStopped",
    "SyntheticScorer",
    "build_method",
    "legalize",
    "maximal_multisets",
    "optimize",
    "repair",
    "sample_graph",
    "wilson_interval",
]

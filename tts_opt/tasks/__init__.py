"""Tasks: benchmark data, role prompts, answer extraction, scorers and the code sandbox."""

from tts_opt.tasks.code import assemble_program, run_tests
from tts_opt.tasks.custom import TaskSpec, load_task_spec
from tts_opt.tasks.datasets import (
    DATASETS,
    dataset_path,
    download_wheels,
    is_pulled,
    pull_datasets,
)
from tts_opt.tasks.errors import DatasetError, TaskError
from tts_opt.tasks.lengths import measure_lengths, task_lengths
from tts_opt.tasks.registry import get_task, subjects, task_names
from tts_opt.tasks.sandbox import (
    SandboxError,
    SandboxLimits,
    SandboxResult,
    isolation_available,
    run_python,
)
from tts_opt.tasks.schema import SPLITS, Question, Score, Split
from tts_opt.tasks.scorers import (
    ChoiceScorer,
    CodeScorer,
    ExactScorer,
    MathScorer,
    NumericScorer,
    RegexScorer,
    Scorer,
)
from tts_opt.tasks.task import Task

__all__ = [
    "DATASETS",
    "SPLITS",
    "ChoiceScorer",
    "CodeScorer",
    "DatasetError",
    "ExactScorer",
    "MathScorer",
    "NumericScorer",
    "Question",
    "RegexScorer",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "Score",
    "Scorer",
    "Split",
    "Task",
    "TaskError",
    "TaskSpec",
    "assemble_program",
    "dataset_path",
    "download_wheels",
    "get_task",
    "is_pulled",
    "isolation_available",
    "load_task_spec",
    "measure_lengths",
    "pull_datasets",
    "run_python",
    "run_tests",
    "subjects",
    "task_lengths",
    "task_names",
]

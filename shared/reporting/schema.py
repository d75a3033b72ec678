"""The schema of ``report.json`` (one per run) and of scheduled-evaluation reports.

This is the contract between the pipeline (which fills it) and the renderers (Markdown, HTML). Every
renderer reads only these models, so a report can be re-rendered from its JSON at any time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1

OFF_LABEL = "(off-label)"  # the confusion-matrix column for answers that are no label

RunOutcome = Literal["promoted", "rejected", "failed", "cancelled", "over_budget", "in_progress"]
# "classic": the CPU baseline (``ClassicBaseline``), shown beside the others, never in the promotion gate.
ModelRole = Literal["base", "candidate", "incumbent", "classic"]


class ClassMetrics(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class LatencySummary(BaseModel):
    """Milliseconds per request. ``samples`` keeps every measured latency (for histograms)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    samples: list[float] = Field(default_factory=list)


class TokenUsage(BaseModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0


class ConfusionMatrix(BaseModel):
    """``matrix[i][j]`` counts examples whose truth is ``labels[i]`` and whose answer is ``columns[j]``;
    ``columns`` is ``labels`` plus ``OFF_LABEL``."""

    labels: list[str]
    columns: list[str]
    matrix: list[list[int]]


class ModelMetrics(BaseModel):
    n: int
    correct: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    off_label: int
    off_label_rate: float
    errors: int = 0  # requests that got no answer at all (after retries)
    per_class: dict[str, ClassMetrics]
    confusion: ConfusionMatrix
    latency_ms: LatencySummary
    tokens: TokenUsage
    cost_usd: float = 0.0


class ModelEvaluation(BaseModel):
    role: ModelRole
    model: str  # model id (base model name or fine-tuned model id)
    deployment: str | None = None
    method: Literal["batch", "realtime", "cpu"]  # cpu: the classic baseline, on the function instance
    metrics: ModelMetrics
    # custom_id -> answer (raw text) is kept in a side file, not here: reports stay small.


class Decision(BaseModel):
    promoted: bool
    reason: str
    baseline_role: Literal["base", "incumbent"] | None = None
    margin: float
    p_value_threshold: float
    accuracy_delta: float | None = None
    p_value: float | None = None
    # McNemar's discordant pairs: b = candidate right & baseline wrong, c = the reverse.
    candidate_only_correct: int | None = None
    baseline_only_correct: int | None = None
    paired_examples: int | None = None


class ResultsRow(BaseModel):
    """One row of the fine-tuning job's ``results.csv`` (empty cells are None)."""

    step: int
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    validation_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class TrainingSummary(BaseModel):
    job_id: str | None = None
    base_model: str
    fine_tuned_model: str | None = None
    status: str | None = None
    hyperparameters: dict[str, float | int | str | None] = Field(default_factory=dict)
    trained_tokens: int | None = None
    submitted_examples: dict[str, int] = Field(default_factory=dict)  # split -> examples submitted
    # What the service says it used, when it says (images with people/faces are silently skipped).
    used_examples: dict[str, int] = Field(default_factory=dict)
    skipped_note: str | None = None
    results: list[ResultsRow] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RejectedFile(BaseModel):
    path: str
    code: str
    reason: str


class SplitSummary(BaseModel):
    examples: int
    per_label: dict[str, int]


class DatasetSummary(BaseModel):
    labels: list[str]
    splits: dict[str, SplitSummary]
    rejected: list[RejectedFile] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class ClassicVerdict(BaseModel):
    """What the fine-tune buys over the classic baseline, and what it costs to host."""

    fine_tune_accuracy: float
    classic_accuracy: float
    points: float  # fine-tune minus classic accuracy (0.023 = 2.3 percentage points)
    hosting_usd_per_hour: float
    hours_per_month: float
    hosting_usd_per_month: float
    classic_usd: float  # what training and scoring the classic model cost
    sentence: str


class ClassicBaseline(BaseModel):
    """The classic baseline of a run: how it was built, what it cost, or why it is missing. Its metrics
    are ``RunReport.classic`` (a ``ModelEvaluation`` with role ``classic``)."""

    status: Literal["scored", "skipped", "failed", "disabled", "pending", "not_run"]
    reason: str | None = None  # why it is missing (every status but "scored")
    features: str | None = None
    classifier: str | None = None
    feature_dims: int | None = None
    train_examples: int | None = None
    skipped_train_lines: int = 0  # training lines without a usable image
    test_examples: int | None = None
    iterations: int | None = None
    converged: bool | None = None
    train_seconds: float | None = None  # wall time: reading, features and fitting
    score_seconds: float | None = None  # wall time: every test image, one at a time
    latency_ms_per_image: float | None = None  # mean over the test images (decode, features, predict)
    memory_gb: float | None = None  # the instance memory Flex bills
    gb_seconds: float | None = None
    price_per_gb_second: float | None = None
    price_source: str | None = None
    train_usd: float | None = None
    score_usd: float | None = None
    total_usd: float | None = None
    verdict: ClassicVerdict | None = None


class CostSummary(BaseModel):
    estimated_training_tokens: int | None = None
    estimated_training_usd: float | None = None
    training_usd: float | None = None  # trained tokens x price, once known
    evaluation_usd: float = 0.0
    hosting_usd_per_hour: float | None = None
    hosting_hours: float | None = None  # candidate deployment hours so far
    classic_usd: float | None = None  # the classic baseline's compute (training + scoring)
    total_usd: float | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None


class Failure(BaseModel):
    stage: str
    message: str
    at: datetime


class Transition(BaseModel):
    state: str
    at: datetime
    detail: str = ""


class SuspectLabel(BaseModel):
    """A test image that the candidate and the other model both answered with the same label, other than
    its own: likely mislabelled. ``confidence`` is the mean of the two models' probabilities of that
    answer (logprobs), where they returned them."""

    custom_id: str
    source_path: str | None = None
    label: str  # the label the dataset gives the image
    answer: str  # what both models answered (matched to a label)
    candidate_answer: str
    other_role: str  # incumbent, or base for a first model
    other_answer: str
    confidence: float | None = None
    thumbnail: str | None = None  # a small JPEG as a data URL


class RunReport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    dataset: str
    version: str
    generated_at: datetime
    outcome: RunOutcome
    state: str  # the run's state when the report was written
    decision: Decision | None = None
    base: ModelEvaluation | None = None
    candidate: ModelEvaluation | None = None
    incumbent: ModelEvaluation | None = None
    classic: ModelEvaluation | None = None  # the classic baseline's metrics (never part of the decision)
    classic_baseline: ClassicBaseline | None = None  # how it was built and what it cost, or why it is missing
    training: TrainingSummary | None = None
    dataset_summary: DatasetSummary | None = None
    cost: CostSummary = Field(default_factory=CostSummary)
    failure: Failure | None = None
    timeline: list[Transition] = Field(default_factory=list)
    production_model: str | None = None  # what serves production after this run
    production_deployment: str | None = None
    suspects: list[SuspectLabel] = Field(default_factory=list)  # the review queue, most confident first


class EvaluationReport(BaseModel):
    """A scheduled re-evaluation of production (``reports/<dataset>/evaluations/<timestamp>.*``)."""

    schema_version: int = SCHEMA_VERSION
    dataset: str
    generated_at: datetime
    test_set_version: str  # the dataset version whose test split was used
    production: ModelEvaluation | None = None
    base: ModelEvaluation | None = None
    previous_accuracy: float | None = None
    regression: bool = False
    regression_threshold: float
    note: str = ""


class ProductionHistoryPoint(BaseModel):
    at: datetime
    version: str  # the version serving production at that time
    model: str
    accuracy: float
    source: Literal["run", "scheduled"]
    regression: bool = False
    test_set_version: str | None = None  # whose test split was used (accuracies on different ones differ)


class DatasetIndex(BaseModel):
    """``reports/<dataset>/index.json``: every version, production, and its accuracy over time."""

    schema_version: int = SCHEMA_VERSION
    dataset: str
    generated_at: datetime
    production_version: str | None = None
    production_model: str | None = None
    production_deployment: str | None = None
    runs: list[RunIndexEntry] = Field(default_factory=list)
    history: list[ProductionHistoryPoint] = Field(default_factory=list)
    regression_threshold: float = 0.02


class RunIndexEntry(BaseModel):
    version: str
    outcome: RunOutcome
    state: str
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    created_at: datetime | None = None
    report_path: str | None = None  # relative to the dataset's report folder, e.g. "<version>/report.html"


DatasetIndex.model_rebuild()

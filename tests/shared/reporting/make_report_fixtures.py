"""Build the fixture reports in ``fixtures/`` from simulated answers, through the real metrics and gate.

Run ``.venv/bin/python tests/shared/reporting/make_report_fixtures.py`` after a schema change; the tests
check that the committed fixtures equal what this script produces. Numbers follow the reference run
(Stanford Dogs, 120 breeds: base 73.7%, fine-tuned 82.7%, latency 1665 -> 1506 ms), answers are
correlated between models the way real paired answers are, and some answers are wrapped ("Label: x",
"x.") or off-label, so answer matching is exercised too.
"""

from __future__ import annotations

import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from shared.evaluation.gate import decide_promotion  # noqa: E402
from shared.evaluation.metrics import ScoredExample, compute_metrics  # noqa: E402
from shared.pipeline.classic import classic_verdict  # noqa: E402
from shared.reporting.schema import (  # noqa: E402
    ClassicBaseline,
    CostSummary,
    DatasetIndex,
    DatasetSummary,
    EvaluationReport,
    Failure,
    ModelEvaluation,
    ProductionHistoryPoint,
    RejectedFile,
    ResultsRow,
    RunIndexEntry,
    RunReport,
    SplitSummary,
    TrainingSummary,
    Transition,
)

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE_MODEL = "gpt-4.1-2025-04-14"
PRICE_IN, PRICE_OUT, PRICE_TRAIN, PRICE_HOSTING = 2.50, 10.0, 25.0, 1.70

DOG_BREEDS = """Chihuahua, Japanese spaniel, Maltese dog, Pekinese, Shih-Tzu, Blenheim spaniel, papillon, toy terrier,
Rhodesian ridgeback, Afghan hound, basset, beagle, bloodhound, bluetick, black-and-tan coonhound, Walker hound,
English foxhound, redbone, borzoi, Irish wolfhound, Italian greyhound, whippet, Ibizan hound, Norwegian elkhound,
otterhound, Saluki, Scottish deerhound, Weimaraner, Staffordshire bullterrier, American Staffordshire terrier,
Bedlington terrier, Border terrier, Kerry blue terrier, Irish terrier, Norfolk terrier, Norwich terrier,
Yorkshire terrier, wire-haired fox terrier, Lakeland terrier, Sealyham terrier, Airedale, cairn,
Australian terrier, Dandie Dinmont, Boston bull, miniature schnauzer, giant schnauzer, standard schnauzer,
Scotch terrier, Tibetan terrier, silky terrier, soft-coated wheaten terrier, West Highland white terrier, Lhasa,
flat-coated retriever, curly-coated retriever, golden retriever, Labrador retriever, Chesapeake Bay retriever,
German short-haired pointer, vizsla, English setter, Irish setter, Gordon setter, Brittany spaniel, clumber,
English springer, Welsh springer spaniel, cocker spaniel, Sussex spaniel, Irish water spaniel, kuvasz, schipperke,
groenendael, malinois, briard, kelpie, komondor, Old English sheepdog, Shetland sheepdog, collie, Border collie,
Bouvier des Flandres, Rottweiler, German shepherd, Doberman, miniature pinscher, Greater Swiss Mountain dog,
Bernese mountain dog, Appenzeller, EntleBucher, boxer, bull mastiff, Tibetan mastiff, French bulldog, Great Dane,
Saint Bernard, Eskimo dog, malamute, Siberian husky, affenpinscher, basenji, pug, Leonberg, Newfoundland,
Great Pyrenees, Samoyed, Pomeranian, chow, keeshond, Brabancon griffon, Pembroke, Cardigan, toy poodle,
miniature poodle, standard poodle, Mexican hairless, dingo, dhole, African hunting dog"""
DOGS = [b.strip() for b in DOG_BREEDS.replace("\n", " ").split(",")]
assert len(DOGS) == 120, len(DOGS)
TEN = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TWO = ["cat", "dog"]
OFF_LABEL_ANSWERS = ["I can't tell from this image.", "unknown", "It looks like a mixed breed.", "animal"]


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _confusers(labels: list[str], rng: random.Random) -> dict[str, list[str]]:
    """Each label is confused mostly with two fixed others (e.g. neighbouring breeds)."""
    out = {}
    for i, label in enumerate(labels):
        near = [labels[(i + 1) % len(labels)], labels[(i - 1) % len(labels)]]
        out[label] = near if len(labels) > 2 else [labels[1 - i]]
    return out


class Simulation:
    """Paired answers of several models on one test set (a Gaussian copula correlates correctness)."""

    def __init__(self, labels: list[str], per_class: int, seed: int, rho: float = 0.6):
        self.labels = labels
        self.rng = random.Random(seed)
        self.rho = rho
        self.confusers = _confusers(labels, self.rng)
        self.test = [(f"test-{i:05d}", labels[i % len(labels)]) for i in range(per_class * len(labels))]
        self.shared_z = [self.rng.gauss(0, 1) for _ in self.test]
        # Per-class difficulty, common to all models (some breeds are hard for everyone).
        self.difficulty = {label: self.rng.gauss(0, 1) for label in labels}

    def answers(self, accuracy: float, *, spread: float, off_label: float, latency_ms: float | None,
                failures: int = 0, prompt_tokens: int = 200, seed: int = 0) -> list[ScoredExample]:
        rng = random.Random(seed)
        out = []
        failed = set(rng.sample(range(len(self.test)), failures))
        for k, ((custom_id, truth), z_shared) in enumerate(zip(self.test, self.shared_z, strict=True)):
            class_acc = min(0.995, max(0.02, accuracy + spread * self.difficulty[truth] * 0.1))
            z = self.rho * z_shared + math.sqrt(1 - self.rho**2) * rng.gauss(0, 1)
            latency = None if latency_ms is None else round(latency_ms * math.exp(rng.gauss(0, 0.22)), 1)
            if k in failed:
                out.append(ScoredExample(custom_id, truth, None, None, 0, 0, error="429 Too Many Requests after 6 retries"))
                continue
            if _phi(z) < class_acc:
                answer = truth
            elif rng.random() < off_label:
                answer = rng.choice(OFF_LABEL_ANSWERS)
            elif rng.random() < 0.85:
                answer = rng.choice(self.confusers[truth])
            else:
                answer = rng.choice(self.labels)
            wrap = rng.random()
            if answer in self.labels and wrap < 0.05:
                answer = f"Label: {answer}"
            elif answer in self.labels and wrap < 0.12:
                answer = f"{answer}."
            out.append(ScoredExample(custom_id, truth, answer, latency, prompt_tokens + rng.randint(-3, 3),
                                     rng.randint(2, 6)))
        return out


def _evaluation(role: str, model: str, deployment: str | None, labels: list[str], examples: list[ScoredExample],
                batch: bool) -> ModelEvaluation:
    metrics = compute_metrics(labels, examples, price_input_per_1m=PRICE_IN, price_output_per_1m=PRICE_OUT,
                              discount=0.5 if batch else 0.0)
    return ModelEvaluation(role=role, model=model, deployment=deployment, method="batch" if batch else "realtime",
                           metrics=metrics)


def _results(steps: int, seed: int, final_acc: float, valid_every: int) -> list[ResultsRow]:
    rng = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        progress = step / steps
        loss = 0.28 + 2.6 * math.exp(-5.5 * progress) + rng.gauss(0, 0.12 * (1 - 0.6 * progress))
        acc = min(0.995, final_acc - (final_acc - 0.35) * math.exp(-5 * progress) + rng.gauss(0, 0.03))
        row = ResultsRow(step=step, train_loss=round(max(loss, 0.02), 4), train_mean_token_accuracy=round(acc, 4))
        if step % valid_every == 0 or step == steps:
            row.valid_loss = round(0.36 + 2.4 * math.exp(-5 * progress) + rng.gauss(0, 0.05), 4)
            row.validation_mean_token_accuracy = round(min(0.99, final_acc - 0.03 - 0.5 * math.exp(-5 * progress)), 4)
        if step == steps:
            row.full_valid_loss = round(row.valid_loss + 0.02, 4)
            row.full_valid_mean_token_accuracy = round(row.validation_mean_token_accuracy - 0.01, 4)
        rows.append(row)
    return rows


def _dataset(labels: list[str], per_class: dict[str, int], seed: int, rejected: int) -> DatasetSummary:
    rng = random.Random(seed)
    splits = {}
    for split, n in per_class.items():
        counts = {label: max(1, n + rng.randint(-max(1, n // 8), max(1, n // 8)) if split == "train" else n)
                  for label in labels}
        splits[split] = SplitSummary(examples=sum(counts.values()), per_label=counts)
    reasons = [
        ("unsupported_format", "GIF is not a supported format (JPEG, PNG, WEBP)", "gif"),
        ("corrupt_image", "cannot identify image file: truncated JPEG data", "jpg"),
        ("too_small", "image is 31x28 px; at least 32 px per side is needed", "png"),
        ("duplicate", "same content as {other}", "jpg"),
    ]
    items = []
    for i in range(rejected):
        code, reason, ext = reasons[rng.randrange(len(reasons)) if i > 3 else i]
        label = rng.choice(labels)
        path = f"{label}/img_{rng.randint(1000, 9999)}.{ext}"
        items.append(RejectedFile(path=path, code=code, reason=reason.format(other=f"{label}/img_{rng.randint(1000, 9999)}.jpg")))
    return DatasetSummary(labels=labels, splits=splits, rejected=items, ignored=[".DS_Store", "README.txt"][: 1 + seed % 2],
                          warnings=[] if min(per_class.values()) >= 5 else
                          ["validation has fewer than 5 examples per label: its loss is noisy"])


def _timeline(start: datetime, outcome: str, minutes: list[int]) -> list[Transition]:
    states = ["converted", "uploading", "training", "trained", "deploying", "deployed", "evaluating", "evaluated", outcome]
    details = {"training": "job ftjob-{}", "deployed": "GlobalStandard x10", "evaluating": "base by Batch API, candidate real-time"}
    out, t = [], start
    # A run that stopped early passes fewer minutes than states: its timeline is the first len(minutes).
    for state, m in zip(states, minutes, strict=False):
        t = t + timedelta(minutes=m)
        out.append(Transition(state=state, at=t, detail=details.get(state, "").format("7c1e9a4b")))
    return out


FLEX_GB_S = 0.000026
MEMORY_GB = 2.0


def _classic(sim: Simulation, labels: list[str], train_n: int, accuracy: float | None, missing: str | None,
             candidate: ModelEvaluation, seed: int) -> tuple[ModelEvaluation | None, ClassicBaseline | None]:
    """The classic baseline: simulated answers at ``accuracy`` (CPU latency, no tokens), or why it is missing."""
    if missing is not None:
        return None, ClassicBaseline(status="skipped", reason=missing)
    if accuracy is None:
        return None, None
    examples = [ScoredExample(e.custom_id, e.truth, e.answer if e.answer in labels else labels[0], e.latency_ms)
                for e in sim.answers(accuracy, spread=1.5, off_label=0.0, latency_ms=3.2, seed=seed + 4)]
    metrics = compute_metrics(labels, examples)
    train_seconds, score_seconds = 0.004 * train_n + 2.5, 0.0032 * len(examples)
    train_usd, score_usd = train_seconds * MEMORY_GB * FLEX_GB_S, score_seconds * MEMORY_GB * FLEX_GB_S
    metrics.cost_usd = score_usd
    summary = ClassicBaseline(
        status="scored", features="HOG + 16x16 grey pixels + RGB histogram", classifier="logistic regression",
        feature_dims=2084, train_examples=train_n, test_examples=len(examples), iterations=140, converged=True,
        train_seconds=train_seconds, score_seconds=score_seconds, latency_ms_per_image=metrics.latency_ms.mean,
        memory_gb=MEMORY_GB, gb_seconds=(train_seconds + score_seconds) * MEMORY_GB, price_per_gb_second=FLEX_GB_S,
        price_source="Azure Functions pricing (Flex Consumption, on demand)", train_usd=train_usd,
        score_usd=score_usd, total_usd=train_usd + score_usd,
        verdict=classic_verdict(candidate.metrics.accuracy, metrics.accuracy, hosting_usd_per_hour=PRICE_HOSTING,
                                classic_usd=train_usd + score_usd),
    )
    return ModelEvaluation(role="classic", model="HOG + colour, logistic regression", method="cpu", metrics=metrics), summary


def run_report(name: str, labels: list[str], *, per_class_test: int, train_per_class: int, seed: int,
               base_acc: float, cand_acc: float, inc_acc: float | None, epochs: int = 2,
               candidate_failures: int = 0, margin: float = 0.01, classic_acc: float | None = None,
               classic_missing: str | None = None) -> RunReport:
    sim = Simulation(labels, per_class_test, seed)
    prompt = 130 + 3 * len(labels)
    base_examples = sim.answers(base_acc, spread=1.2, off_label=0.12, latency_ms=None if len(labels) > 2 else 1665,
                                prompt_tokens=prompt, seed=seed + 1)
    cand_examples = sim.answers(cand_acc, spread=0.8, off_label=0.03, latency_ms=1506, failures=candidate_failures,
                                prompt_tokens=prompt, seed=seed + 2)
    dataset_name, version = name, f"v{seed:03d}" + "a7c3e91f0b"[: 6]
    fine_tuned = f"{BASE_MODEL}.ft-{random.Random(seed).getrandbits(64):016x}-{name[:12]}"
    base = _evaluation("base", BASE_MODEL, "gpt41-batch" if len(labels) > 2 else "gpt41", labels, base_examples,
                       batch=len(labels) > 2)
    candidate = _evaluation("candidate", fine_tuned, f"vt-{name[:12]}-{version[:8]}", labels, cand_examples, batch=False)
    incumbent = None
    baseline_examples, role = base_examples, "base"
    if inc_acc is not None:
        inc_examples = sim.answers(inc_acc, spread=0.9, off_label=0.04, latency_ms=1550, prompt_tokens=prompt,
                                   seed=seed + 3)
        incumbent = _evaluation("incumbent", f"{BASE_MODEL}.ft-0a1b2c3d4e5f6789-{name[:12]}",
                                f"vt-{name[:12]}-v000prod", labels, inc_examples, batch=False)
        baseline_examples, role = inc_examples, "incumbent"
    decision = decide_promotion(cand_examples, baseline_examples, baseline_role=role, labels=labels, margin=margin,
                                p_value_threshold=0.05)
    outcome = "promoted" if decision.promoted else "rejected"
    train_n = train_per_class * len(labels)
    steps = max(10, math.ceil(train_n * epochs / 16))
    tokens_per_example = 85 + prompt + 6
    trained_tokens = train_n * epochs * tokens_per_example
    submitted = {"train": train_n, "validation": max(1, train_per_class // 8) * len(labels)}
    used = {"train": train_n - max(1, train_n // 170), "validation": submitted["validation"] - 1}
    started = T0 + timedelta(minutes=14)
    finished = started + timedelta(minutes=55 + steps // 4)
    training = TrainingSummary(
        job_id="ftjob-7c1e9a4b2d3f4e5a6b7c8d9e0f1a2b3c", base_model=BASE_MODEL, fine_tuned_model=fine_tuned,
        status="succeeded", hyperparameters={"n_epochs": epochs, "batch_size": 16, "learning_rate_multiplier": 2.0},
        trained_tokens=trained_tokens, submitted_examples=submitted, used_examples=used,
        skipped_note=(f"The service used {used['train']:,} of {submitted['train']:,} training images: images with "
                      "people or faces are skipped without an error."),
        results=_results(steps, seed, 0.9 if len(labels) > 2 else 0.97, max(1, steps // 25)),
        events=["Validating training file", "Training started", f"Step {steps}/{steps}: training loss=0.31",
                "Training completed", "Model deployed for evaluation"],
        checkpoints=[f"ftchkpt-{seed:02d}{i}e2c" for i in range(3)],
        started_at=started, finished_at=finished,
    )
    classic, classic_baseline = _classic(sim, labels, train_n, classic_acc, classic_missing, candidate, seed)
    evaluation_usd = base.metrics.cost_usd + candidate.metrics.cost_usd + (incumbent.metrics.cost_usd if incumbent else 0)
    hosting_hours = 1.4
    training_usd = trained_tokens * PRICE_TRAIN / 1e6
    cost = CostSummary(
        estimated_training_tokens=int(trained_tokens * 1.03), estimated_training_usd=trained_tokens * 1.03 * PRICE_TRAIN / 1e6,
        training_usd=training_usd, evaluation_usd=evaluation_usd, hosting_usd_per_hour=PRICE_HOSTING,
        hosting_hours=hosting_hours, classic_usd=classic_baseline.total_usd if classic_baseline else None,
        total_usd=training_usd + evaluation_usd + PRICE_HOSTING * hosting_hours
        + (classic_baseline.total_usd or 0.0 if classic_baseline else 0.0),
        budget_usd=500.0, budget_tokens=50_000_000,
    )
    test_per_class = per_class_test
    return RunReport(
        dataset=dataset_name, version=version, generated_at=T0 + timedelta(hours=3, minutes=12), outcome=outcome,
        state=outcome, decision=decision, base=base, candidate=candidate, incumbent=incumbent, classic=classic,
        classic_baseline=classic_baseline, training=training,
        dataset_summary=_dataset(labels, {"train": train_per_class, "validation": max(1, train_per_class // 8),
                                          "test": test_per_class}, seed, rejected=3 + seed % 9),
        cost=cost, timeline=_timeline(T0, outcome, [0, 6, 8, 55 + steps // 4, 1, 4, 1, 30, 1]),
        production_model=fine_tuned if decision.promoted else (incumbent.model if incumbent else None),
        production_deployment=(candidate.deployment if decision.promoted else (incumbent.deployment if incumbent else None)),
    )


def failed_report() -> RunReport:
    labels = TEN
    at = T0 + timedelta(minutes=41)
    return RunReport(
        dataset="cifar-mini", version="v0f2c9a71", generated_at=at + timedelta(minutes=2), outcome="failed",
        state="failed",
        failure=Failure(stage="training", at=at, message=(
            "Fine-tuning job ftjob-3b9d0e2a failed: invalid_training_file: Too few examples remain after the "
            "service skipped images: 7 of 12 training examples contain people or faces; at least 10 are required.")),
        training=TrainingSummary(job_id="ftjob-3b9d0e2a", base_model=BASE_MODEL, status="failed",
                                 hyperparameters={"n_epochs": 3}, submitted_examples={"train": 12, "validation": 4},
                                 used_examples={"train": 5, "validation": 2},
                                 events=["Validating training file", "Job failed: invalid_training_file"],
                                 started_at=T0 + timedelta(minutes=12)),
        dataset_summary=_dataset(labels, {"train": 1, "validation": 1, "test": 1}, 4, rejected=2),
        cost=CostSummary(estimated_training_tokens=12 * 3 * 230, estimated_training_usd=12 * 3 * 230 * PRICE_TRAIN / 1e6,
                         budget_usd=500.0, budget_tokens=50_000_000, total_usd=0.0),
        timeline=_timeline(T0, "failed", [0, 4, 8])[:3] + [Transition(state="failed", at=at, detail="stage training")],
    )


def over_budget_report() -> RunReport:
    labels = DOGS
    tokens = 61_200_000
    return RunReport(
        dataset="stanford-dogs-full", version="v9e41c07b", generated_at=T0 + timedelta(minutes=3),
        outcome="over_budget", state="failed",
        failure=Failure(stage="budget", at=T0 + timedelta(minutes=2), message=(
            f"estimated {tokens:,} training tokens (${tokens * PRICE_TRAIN / 1e6:,.2f}) exceed the limits of "
            "50,000,000 tokens and $500.00; nothing was uploaded")),
        dataset_summary=_dataset(labels, {"train": 160, "validation": 20, "test": 20}, 7, rejected=11),
        cost=CostSummary(estimated_training_tokens=tokens, estimated_training_usd=tokens * PRICE_TRAIN / 1e6,
                         budget_usd=500.0, budget_tokens=50_000_000, total_usd=0.0),
        timeline=[Transition(state="converted", at=T0, detail="19,200 train / 2,400 validation / 2,400 test"),
                  Transition(state="failed", at=T0 + timedelta(minutes=2), detail="over budget; nothing uploaded")],
    )


def evaluation_report() -> EvaluationReport:
    labels = TEN
    sim = Simulation(labels, 40, 77)
    production = ModelEvaluation(
        role="candidate", model=f"{BASE_MODEL}.ft-55aa77cc99ee0011-cifar-mini", deployment="vt-cifar-mini-v014",
        method="realtime", metrics=compute_metrics(labels, sim.answers(0.86, spread=0.8, off_label=0.03, latency_ms=1480,
                                                                        prompt_tokens=160, seed=78),
                                                   price_input_per_1m=PRICE_IN, price_output_per_1m=PRICE_OUT))
    base = _evaluation("base", BASE_MODEL, "gpt41-batch", labels,
                       sim.answers(0.71, spread=1.2, off_label=0.1, latency_ms=None, prompt_tokens=160, seed=79), batch=True)
    previous = 0.914
    return EvaluationReport(
        dataset="cifar-mini", generated_at=T0 + timedelta(days=9, hours=-6), test_set_version="v014c2d9e8",
        production=production, base=base, previous_accuracy=previous,
        regression=production.metrics.accuracy < previous - 0.02, regression_threshold=0.02,
        note="Scheduled re-evaluation on the latest test split (400 images).",
    )


def index_report() -> DatasetIndex:
    rng = random.Random(5)
    history, runs = [], []
    versions = [("v011a0c3d1", 0.842, "promoted"), ("v012b7e2f0", 0.848, "rejected"), ("v013c9d1a2", 0.897, "promoted"),
                ("v014c2d9e8", 0.914, "promoted"), ("v015d0e4b7", None, "failed")]
    t = T0 - timedelta(days=40)
    production = None
    for i, (version, accuracy, outcome) in enumerate(versions):
        t = t + timedelta(days=8)
        runs.append(RunIndexEntry(version=version, outcome=outcome, state=outcome, accuracy=accuracy,
                                  baseline_accuracy=(production[1] if production else 0.712) if accuracy else None,
                                  created_at=t, report_path=f"{version}/report.html"))
        if outcome == "promoted":
            production = (version, accuracy)
            history.append(ProductionHistoryPoint(at=t + timedelta(hours=3), version=version,
                                                  model=f"{BASE_MODEL}.ft-{i:016x}-cifar-mini", accuracy=accuracy,
                                                  source="run"))
        for day in range(1, 8):
            if production is None:
                continue
            drift = rng.gauss(0, 0.004)
            acc = production[1] + drift
            if version == "v014c2d9e8" and day >= 6:  # data drift in the last days
                acc = production[1] - 0.034 - 0.01 * (day - 6)
            history.append(ProductionHistoryPoint(
                at=t + timedelta(days=day, hours=-6), version=production[0],
                model=f"{BASE_MODEL}.ft-{versions.index(next(v for v in versions if v[0] == production[0])):016x}-cifar-mini",
                accuracy=round(acc, 4), source="scheduled", regression=acc < production[1] - 0.02))
    return DatasetIndex(dataset="cifar-mini", generated_at=max(h.at for h in history) + timedelta(hours=1),
                        production_version="v014c2d9e8",
                        production_model=f"{BASE_MODEL}.ft-{3:016x}-cifar-mini",
                        production_deployment="vt-cifar-mini-v014", runs=runs, history=history, regression_threshold=0.02)


def build_all() -> dict[str, str]:
    """Fixture file name -> JSON text."""
    reports = {
        "run_2_classes.json": run_report("cats-vs-dogs", TWO, per_class_test=90, train_per_class=160, seed=2,
                                         base_acc=0.62, cand_acc=0.95, inc_acc=None, epochs=3, classic_acc=0.78),
        "run_10_classes.json": run_report("cifar-mini", TEN, per_class_test=40, train_per_class=120, seed=10,
                                          base_acc=0.71, cand_acc=0.93, inc_acc=0.83, classic_acc=0.94),
        "run_120_classes.json": run_report("stanford-dogs", DOGS, per_class_test=5, train_per_class=40, seed=120,
                                           base_acc=0.74, cand_acc=0.83, inc_acc=None, candidate_failures=2,
                                           classic_acc=0.62),
        "run_rejected.json": run_report("cifar-mini", TEN, per_class_test=40, train_per_class=120, seed=12,
                                        base_acc=0.71, cand_acc=0.855, inc_acc=0.85,
                                        classic_missing="the dataset is too large for the budget: fitting on 19,200 "
                                        "training images x 2,084 features needs about 763 MB, over the classic "
                                        "baseline's memory budget of 512 MB (VISIONTUNE_CLASSIC_MAX_MEMORY_MB)"),
        "run_failed.json": failed_report(),
        "run_over_budget.json": over_budget_report(),
        "evaluation_regression.json": evaluation_report(),
        "index.json": index_report(),
    }
    return {name: report.model_dump_json(indent=1) + "\n" for name, report in reports.items()}


if __name__ == "__main__":
    FIXTURES.mkdir(exist_ok=True)
    for name, text in build_all().items():
        (FIXTURES / name).write_text(text, encoding="utf-8")
        print(f"wrote {FIXTURES / name} ({len(text) / 1024:.0f} KiB)")

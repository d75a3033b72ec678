"""Fine-tuning work: training a job's model on a worker thread, and the checkpoints and events it shows."""

from __future__ import annotations

import csv
import io
import pickle
from typing import Any

from local.emulator import learners
from local.emulator.core import EmulatorCore, hex_id

RESULTS_COLUMNS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "validation_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


class TrainingMixin(EmulatorCore):
    """A job's training run, its checkpoints and its events."""

    def _training_data(self, job: dict[str, Any]) -> tuple[Any, list[str], int]:
        """Features, labels and tokens of a job's own file plus (continued fine-tuning) its parent's data."""
        import numpy as np

        data = np.load(self.features_dir / f"{job['training_file']}.npz")
        features, labels, tokens = data["features"], [str(v) for v in data["labels"]], int(data["tokens"].sum())
        if job.get("parent_job"):
            parent = np.load(self.models_dir / job["parent_job"] / "data.npz")
            features = np.concatenate([parent["features"], features]) if len(parent["features"]) else features
            labels = [str(v) for v in parent["labels"]] + labels
            tokens += int(parent["tokens"])
        return features, labels, tokens

    def _train(self, job_id: str) -> None:
        import numpy as np

        job = self.store.get("job", job_id)
        if job is None:
            return
        folder = self.models_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            features, labels, tokens = self._training_data(job)
            if len(labels) == 0:
                raise ValueError(
                    "No training example contains an image; the emulator fine-tunes image classifiers only."
                )
            if len(set(labels)) < 2:
                raise ValueError("The training data needs at least two different assistant answers (labels).")
            validation_features = validation_labels = None
            if job.get("validation_file"):
                validation = np.load(self.features_dir / f"{job['validation_file']}.npz")
                if len(validation["labels"]):
                    validation_features = validation["features"]
                    validation_labels = [str(v) for v in validation["labels"]]
            hyper = job["hyperparameters"]
            result = learners.train_classifier(
                features,
                labels,
                n_epochs=hyper["n_epochs"],
                batch_size=hyper["batch_size"],
                learning_rate_multiplier=hyper["learning_rate_multiplier"],
                seed=job["seed"],
                validation_features=validation_features,
                validation_labels=validation_labels,
                should_stop=lambda: self._closed
                or (self.store.get("job", job_id) or {"cancelled_at": 1}).get("cancelled_at") is not None,
            )
        except learners.TrainingStopped:
            return
        except (ValueError, OSError) as exc:
            self._update(
                "job",
                job_id,
                training={"error": {"code": "invalid_training_file", "message": str(exc)}, "failed_at": self.now()},
            )
            return
        for epoch, model in enumerate(result.epoch_models):
            with open(folder / f"epoch-{epoch}.pkl", "wb") as handle:
                pickle.dump(model, handle)
        np.savez(
            folder / "data.npz", features=features, labels=np.array(labels, dtype=str), tokens=np.array(tokens)
        )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(RESULTS_COLUMNS)
        for row in result.rows:
            writer.writerow(["" if row[c] is None else (f"{row[c]:.5f}" if c != "step" else row[c]) for c in RESULTS_COLUMNS])
        steps_per_epoch = max(1, len(result.rows) // max(1, hyper["n_epochs"]))
        state_end = self._job_times(job)["end"]
        results_file = self._new_output_file("results.csv", "fine-tune-results", buffer.getvalue().encode(), state_end)
        epoch_rows = [result.rows[min(len(result.rows), (e + 1) * steps_per_epoch) - 1] for e in range(hyper["n_epochs"])]
        self._update(
            "job",
            job_id,
            training={
                "trained_tokens": tokens * hyper["n_epochs"],
                "results_file": results_file,
                "classes": result.classes,
                "epoch_rows": epoch_rows,
                "epoch_metrics": result.epoch_metrics,
                "finished": self.now(),
            },
        )

    def _checkpoints(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """Every epoch's checkpoint (oldest first) with the time it appears; empty until trained."""
        training = job.get("training") or {}
        if not training.get("epoch_rows"):
            return []
        times = self._job_times(job)
        n_epochs = job["hyperparameters"]["n_epochs"]
        checkpoints = []
        for epoch, row in enumerate(training["epoch_rows"]):
            appears = times["running"] + (times["end"] - times["running"]) * (epoch + 1) / n_epochs
            checkpoints.append(
                {
                    "id": "ftchkpt-" + hex_id(f"{job['id']}:checkpoint:{epoch}"),
                    "epoch": epoch,
                    "step": int(row["step"]),
                    "appears": appears,
                    "model": f"{job['fine_tuned_model']}:ckpt-step-{int(row['step'])}",
                    "row": row,
                }
            )
        return checkpoints

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        job = self._job(job_id)
        now = self.now()
        state = self._job_state(job, now)
        horizon = now if state["status"] != "cancelled" else min(now, job["cancelled_at"])
        visible = [c for c in self._checkpoints(job) if c["appears"] <= horizon][-3:]
        data = [
            {
                "object": "fine_tuning.job.checkpoint",
                "id": c["id"],
                "created_at": int(c["appears"]),
                "fine_tuned_model_checkpoint": c["model"],
                "fine_tuning_job_id": job["id"],
                "step_number": c["step"],
                "metrics": {
                    key.replace("validation_", "valid_"): float(value)
                    for key, value in c["row"].items()
                    if value is not None
                },
            }
            for c in reversed(visible)
        ]
        return self._page(data, after, limit)

    def _events(self, job: dict[str, Any], now: float) -> list[tuple[float, dict[str, Any]]]:
        times = self._job_times(job)
        state = self._job_state(job, now)
        entries: list[tuple[float, str, str, str, dict[str, Any] | None]] = [
            (job["created_at"], "info", "message", "Job enqueued. Waiting for jobs ahead to complete.", None),
            (times["validating_files"], "info", "message", f"Validating training file: {job['training_file']}", None),
            (times["queued"], "info", "message", "Training file validated. Job queued.", None),
            (times["running"], "info", "message", "Job started.", None),
        ]
        training = job.get("training") or {}
        for checkpoint in self._checkpoints(job):
            row = checkpoint["row"]
            data = {k: v for k, v in row.items() if v is not None}
            entries.append(
                (
                    checkpoint["appears"],
                    "info",
                    "metrics",
                    f"Step {checkpoint['step']}: training loss={row['train_loss']:.4f}",
                    data,
                )
            )
            entries.append(
                (checkpoint["appears"], "info", "message", f"Checkpoint created at step {checkpoint['step']}", None)
            )
        finished = state["finished_at"]
        if state["status"] == "succeeded":
            entries.append((finished, "info", "message", f"Training tokens billed: {training['trained_tokens']}", None))
            entries.append((finished, "info", "message", "Model Evaluation Passed.", None))
            entries.append((finished, "info", "message", "The job has successfully completed", None))
        elif state["status"] == "failed":
            entries.append((finished, "error", "message", f"The job failed: {state['error']['message']}", None))
        elif state["status"] == "cancelled":
            entries.append((finished, "info", "message", "The job was cancelled.", None))
            entries = [e for e in entries if e[0] <= finished]
        events = []
        # A stable sort: events at the same instant keep the order they were written in.
        for number, (when, level, kind, message, event_data) in enumerate(sorted(entries, key=lambda e: e[0])):
            event = {
                "object": "fine_tuning.job.event",
                "id": "ftevent-" + hex_id(f"{job['id']}:event:{number}:{message}"),
                "created_at": int(when),
                "level": level,
                "message": message,
                "type": kind,
            }
            if event_data is not None:
                event["data"] = event_data
            events.append((when, event))
        return events

    def list_events(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        job = self._job(job_id)
        now = self.now()
        visible = [event for when, event in self._events(job, now) if when <= now]
        return self._page(list(reversed(visible)), after, limit)

"""One exception root: every exception class of ``shared`` derives from ``VisiontuneError``, and the retry
logic reads its ``transient`` flag."""

import importlib
import inspect
import pkgutil

import shared
from shared.aoai.deployments import DeploymentConflictError, DeploymentError, TransientDeploymentError
from shared.aoai.errors import AoaiError
from shared.aoai.scoring import ScoringError
from shared.errors import VisiontuneError
from shared.pipeline.evaluate import EvaluationSetupError, ScoringStalledError
from shared.pipeline.failures import is_transient


def _shared_exception_classes():
    for info in pkgutil.walk_packages(shared.__path__, "shared."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                yield obj


def test_every_exception_class_of_shared_has_the_root():
    classes = list(_shared_exception_classes())
    assert len(classes) >= 20
    assert [c.__name__ for c in classes if not issubclass(c, VisiontuneError)] == []


def test_transient_flag_drives_the_retry_decision_also_through_causes():
    transient = [TransientDeploymentError("x"), DeploymentConflictError("x"), ScoringError("x"), ScoringStalledError("x")]
    assert all(e.transient and is_transient(e) for e in transient)
    for error in (DeploymentError("x"), AoaiError("x"), EvaluationSetupError("x")):
        assert not error.transient and not is_transient(error)
    wrapper = AoaiError("wrapped")
    wrapper.__cause__ = ScoringStalledError("inner")
    assert is_transient(wrapper)


def test_subclasses_keep_their_builtin_base():
    assert issubclass(EvaluationSetupError, ValueError) and issubclass(AoaiError, RuntimeError)

"""match_answer: what counts as naming a label, and what is off-label."""

import time

import pytest

from shared.evaluation.answers import match_answer

LABELS = ["cat", "dog", "golden_retriever", "Labrador retriever", "St. Bernard", "C++"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("cat", "cat"),
        ("  Cat  ", "cat"),
        ("cat.", "cat"),
        ('"dog"', "dog"),
        ("**dog**", "dog"),
        ("`dog`", "dog"),
        ("Label: dog", "dog"),
        ("label - cat", "cat"),
        ("The answer is: cat", "cat"),
        ("Answer: Dog.", "dog"),
        ("dog\n", "dog"),
        ('{"label": "cat"}', "cat"),
        ("golden retriever", "golden_retriever"),
        ("Golden-Retriever", "golden_retriever"),
        ("labrador_retriever", "Labrador retriever"),
        ("St. Bernard", "St. Bernard"),
        ("st bernard", None),  # the dot inside the label is part of it
        ("C++", "C++"),
        ("“cat”", "cat"),
    ],
)
def test_wrapped_answers_name_their_label(answer, expected):
    assert match_answer(answer, LABELS) == expected


@pytest.mark.parametrize(
    "answer",
    [None, "", "   ", "cat or dog", "cat, dog", "cat\ndog", "It is a cat.", "bird", "cats", "Label:", '{"label": 3}',
     '{"label": "cat", "answer": "dog"}', "retriever"],
)
def test_off_label_answers_are_none(answer):
    assert match_answer(answer, LABELS) is None


def test_labels_equal_after_normalisation_are_never_guessed():
    labels = ["Cat", "cat", "sea_lion", "sea-lion"]
    assert match_answer("Cat", labels) == "Cat"  # exact text still decides
    assert match_answer("cat", labels) == "cat"
    assert match_answer("CAT", labels) is None  # could be either
    assert match_answer("sea lion", labels) is None
    assert match_answer("sea_lion", labels) == "sea_lion"


def test_matching_is_fast_with_many_labels():
    labels = [f"breed number {i}" for i in range(150)]
    answers = [f"Label: Breed Number {i % 150}." for i in range(20_000)]
    start = time.perf_counter()
    matched = [match_answer(a, labels) for a in answers]
    elapsed = time.perf_counter() - start
    assert matched[:3] == ["breed number 0", "breed number 1", "breed number 2"]
    assert elapsed < 2.0, f"20,000 matches took {elapsed:.2f} s"

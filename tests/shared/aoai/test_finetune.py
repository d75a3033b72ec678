"""Fine-tuning job suffixes and the results.csv parser (no server needed)."""

from __future__ import annotations

import base64

import pytest

from shared.aoai.finetune import SUFFIX_RE, make_suffix, parse_results_csv

DATASET_NAMES = [
    "digits",
    "Dogs",
    "dogs",
    "stanford-dogs-120-breeds-v2",
    "stanford-dogs-120-breeds-v3",
    "a.b",
    "a_b",
    "x" * 63,
    "9",
    "my_data-set.v2",
]

RESULTS_CSV = (
    "step,train_loss,train_mean_token_accuracy,valid_loss,validation_mean_token_accuracy,"
    "full_valid_loss,full_valid_mean_token_accuracy\n"
    "1,2.31,0.10,,,,\n"
    "2,1.75,0.45,1.9,0.40,,\n"
    "3,0.52,0.91,0.61,0.88,0.64,0.87\n"
)


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_suffix_is_valid_short_and_deterministic(dataset: str) -> None:
    suffix = make_suffix(dataset)
    assert SUFFIX_RE.match(suffix), suffix
    assert 1 <= len(suffix) <= 18
    assert make_suffix(dataset) == suffix


def test_suffix_keeps_short_clean_names_and_separates_the_rest() -> None:
    assert make_suffix("digits") == "digits"
    assert make_suffix("a_b") == "a_b"
    suffixes = [make_suffix(d) for d in DATASET_NAMES]
    assert len(set(suffixes)) == len(suffixes), suffixes
    assert make_suffix("stanford-dogs-120-breeds-v2").startswith("stanford-do")


def test_results_csv_plain_and_base64_parse_the_same() -> None:
    plain = parse_results_csv(RESULTS_CSV)
    encoded = parse_results_csv(base64.b64encode(RESULTS_CSV.encode()))
    assert plain == encoded
    assert [r.step for r in plain] == [1, 2, 3]
    assert plain[0].train_loss == pytest.approx(2.31)
    assert plain[0].valid_loss is None
    assert plain[1].validation_mean_token_accuracy == pytest.approx(0.40)
    assert plain[2].full_valid_mean_token_accuracy == pytest.approx(0.87)


def test_results_csv_tolerates_extra_columns_and_bad_rows_but_not_garbage() -> None:
    text = "step,train_loss,extra\n1,0.5,x\nnot-a-step,1,2\n2.0,nan,y\n"
    rows = parse_results_csv(text.encode())
    assert [(r.step, r.train_loss) for r in rows] == [(1, 0.5), (2, None)]
    with pytest.raises(ValueError, match="not a results.csv"):
        parse_results_csv(b"hello,world\n1,2\n")

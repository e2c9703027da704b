"""Small wording rules of messages and reports: articles, plurals, counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimgen.errors import RunFolderError
from dimgen.infomax.runs import encoder_report
from dimgen.io import read_run, write_run


def test_run_folder_kind_takes_the_right_article(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "f").mkdir()
    write_run(tmp_path / "e", "encoder")
    with pytest.raises(RunFolderError, match="is an 'encoder' run folder; expected gan"):
        read_run(tmp_path / "e", "gan")
    write_run(tmp_path / "f", "flow")
    with pytest.raises(RunFolderError, match="is a 'flow' run folder; expected encoder"):
        read_run(tmp_path / "f", "encoder")


@pytest.mark.parametrize("epochs, text", [(1, "1 epoch, batch"), (2, "2 epochs, batch")])
def test_encoder_report_counts_epochs(epochs: int, text: str) -> None:
    metrics = {"capacity_nats": 3.0, "mi_lower_bound_nats": 2.0, "kl_upper_bound_nats": 1.0,
               "mi_bound_kind": "infonce", "mi_lower_bound_stderr": 0.1, "mi_eval_batch": 8,
               "prior": "gaussian", "dim": 2, "n_train": 10, "n_test": 5, "code_mean": [0, 0],
               "code_cov": [[1, 0], [0, 1]], "code_second_moment_train": [1, 1],
               "code_second_moment_test": [1, 1]}  # fmt: skip
    config = {"sigma": 0.2, "eps": 0.1, "data": "digits", "epochs": epochs, "batch_size": 8}
    report = encoder_report(metrics, config)
    assert text in report

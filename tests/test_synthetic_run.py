"""The synthetic run is the real score and aggregate phases over synthetic generations (issue 8)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rai_harness.record import RunRecord
from rai_harness.run.rescore import score_run
from rai_harness.suites import make_suite
from rai_harness.testing.synthetic_run import SUITE_NAMES, stand_in_pool, write_synthetic_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    write_synthetic_run(folder, n_samples=90, seed=5, hostile=False)
    return folder


def test_every_suite_declares_its_own_metrics(run_dir: Path) -> None:
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text(encoding="utf-8"))
    assert set(record.suites) == set(SUITE_NAMES) and len(SUITE_NAMES) == 9
    for name, run in record.suites.items():
        suite = make_suite(name, dict(run.params), seed=record.seed)
        # The metric specs (names, headline flags, sources) are the suite's, not a copy of them.
        assert run.metrics == list(suite.metrics), name
        assert run.version == suite.version
        for result in run.results.values():
            assert set(result.metrics) <= {m.name for m in suite.metrics}
    # Intervals are the suites' own: exact intervals for rates, bootstraps for means, no
    # normal approximation labelled "bootstrap" as the hand-kept copy had.
    methods = {
        est.method
        for run in record.suites.values()
        for result in run.results.values()
        for est in result.metrics.values()
        if est.value is not None
    }
    assert "clopper-pearson" in methods and methods <= {
        "clopper-pearson",
        "expanded-bootstrap",
        "expanded-cluster-bootstrap",
        "cluster-bootstrap-se-t",
        "bootstrap-se-t",
        "studentized-cluster-bootstrap",  # pii.emission's findings per output (a count)
        "sidak-t",
        "none",
    }


def test_rescoring_the_synthetic_run_reproduces_it(run_dir: Path, tmp_path: Path) -> None:
    # `rai score` over the synthetic folder with the same scorers gives the same numbers: the
    # record holds exactly what the real pipeline computes from its samples.
    original = RunRecord.model_validate_json((run_dir / "run.json").read_text(encoding="utf-8"))
    again = score_run(run_dir, out_dir=tmp_path / "rescored", pool=stand_in_pool(broken_similarity=False))
    for name, run in original.suites.items():
        for pid, result in run.results.items():
            assert again.suites[name].results[pid].metrics == result.metrics, (name, pid)
        assert again.suites[name].comparisons == run.comparisons, name


def test_calls_per_provider_and_failed_scorer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)  # the failing scorer's traceback is expected
    record = write_synthetic_run(tmp_path, n_samples=50, seed=1, status="incomplete", hostile=False)
    lines = (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 50 * len(record.providers)
    assert record.status == "incomplete"
    gen = record.suites["factuality.truthfulqa_gen"]
    assert gen.error is not None and "similarity model failed" in gen.error and not gen.results
    assert all(run.results for name, run in record.suites.items() if name != "factuality.truthfulqa_gen")
    # The guarded provider's harmful answers were blocked: less toxic than the same model bare.
    tox = record.suites["toxicity"].results
    assert (
        tox["smollm2+guard"].metrics["toxicity_probability"].value
        <= tox["smollm2"].metrics["toxicity_probability"].value
    )

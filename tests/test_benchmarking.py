"""The benchmark's measurements that run in fresh processes."""

from pathlib import Path

from mdpiano.benchmarking import COLD_START_STAGES, cold_start_stages

REPOSITORY = Path(__file__).resolve().parents[1]


def test_cold_start_is_timed_by_stage():
    example = sorted((REPOSITORY / "examples").glob("Q1_*"))[0]
    stages = cold_start_stages(str(REPOSITORY / "models" / "mdpiano-emopia"), example)
    assert tuple(stages) == COLD_START_STAGES
    assert all(seconds > 0 for seconds in stages.values())
    assert stages["import torch"] > stages["import mdpiano"]  # torch's import is the heavy one, not this package's

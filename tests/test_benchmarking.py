"""The benchmark's measurements that run in fresh processes."""

import time
from pathlib import Path

from mdpiano.benchmarking import (
    BASIC_PITCH_COLD_START_STAGES,
    COLD_START_STAGES,
    basic_pitch_cold_start_stages,
    cold_start_stages,
    memory_profile,
    timed_cpu,
)
from mdpiano.plots import plot_memory_profiles

REPOSITORY = Path(__file__).resolve().parents[1]


def test_cold_start_is_timed_by_stage():
    example = sorted((REPOSITORY / "examples").glob("Q1_*"))[0]
    stages = cold_start_stages(str(REPOSITORY / "models" / "mdpiano-emopia"), example)
    assert tuple(stages) == COLD_START_STAGES
    assert all(seconds > 0 for seconds in stages.values())  # how they compare is the benchmark's to say


def test_basic_pitch_cold_start_is_timed_by_stage():
    example = sorted((REPOSITORY / "examples").glob("Q3_*"))[0]
    stages = basic_pitch_cold_start_stages(example)
    assert tuple(stages) == BASIC_PITCH_COLD_START_STAGES
    assert all(seconds > 0 for seconds in stages.values())


def test_memory_profile_samples_a_fresh_process_and_plots(tmp_path):
    example = sorted((REPOSITORY / "examples").glob("Q2_*"))[0]
    profile = memory_profile(str(REPOSITORY / "models" / "mdpiano-emopia"), example, interval_s=0.02)
    assert len(profile["seconds"]) == len(profile["rss_mb"]) > 1
    assert profile["seconds"] == sorted(profile["seconds"])
    # The peak covers every sample and start-up; classifying takes memory beyond the loaded pipeline.
    assert max(profile["rss_mb"]) <= profile["peak_mb"] + 0.1
    assert profile["loaded_mb"] <= profile["peak_mb"]
    assert max(profile["rss_mb"]) > profile["loaded_mb"]
    path = plot_memory_profiles({"clip": profile}, tmp_path / "memory.png", "test")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_timed_cpu_tells_a_busy_core_from_a_wait():
    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return "spun"

    seconds, busy, result = timed_cpu(spin, 0.3)
    # One thread computing keeps about one core busy; on a machine busy with other work, less, but far from none.
    assert result == "spun" and seconds >= 0.3 and busy > 0.2
    seconds, idle, _ = timed_cpu(time.sleep, 0.3)
    assert seconds >= 0.3 and idle < 0.1

"""Speed and memory measurements of the emotion pipeline against basic-pitch's own `predict()`, in one process."""

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .audio_mdpiano import stream_audio
from .windowing import window_starts


def basic_pitch_predictor():
    """basic-pitch's `predict()` with its ONNX model loaded once (the reference: transcription alone)."""
    from .transcription_mdpiano import _basic_pitch, default_model_path

    inference = _basic_pitch("inference").inference
    model = inference.Model(default_model_path())

    def predict(path):
        with contextlib.redirect_stdout(io.StringIO()):  # basic-pitch prints a line per file
            return inference.predict(str(path), model)

    return predict


def timed(function, *args, **kwargs) -> tuple[float, object]:
    seconds, _, result = timed_cpu(function, *args, **kwargs)
    return seconds, result


def timed_cpu(function, *args, **kwargs) -> tuple[float, float, object]:
    """
    Wall seconds of a call, the cores the process kept busy meanwhile (CPU seconds of all its threads over the wall
    seconds: 2.0 is two cores fully used), and the call's result.
    """
    started, cpu_started = time.perf_counter(), os.times()
    result = function(*args, **kwargs)
    seconds, cpu = time.perf_counter() - started, os.times()
    return seconds, (cpu.user - cpu_started.user + cpu.system - cpu_started.system) / seconds, result


def stage_times(pipe, path) -> dict[str, float]:
    """
    Seconds of each stage of the pipeline's work on one file, run one after another (the pipeline interleaves the
    first three block by block): decoding and resampling, features, transcription, window inputs (tokens and
    feature crops), model.
    """
    import torch

    processor, model = pipe.processor, pipe.model
    rate = processor.sampling_rate
    window_s = processor.feature_extractor.chunk_length_s
    times = {}
    times["decode + resample"], waveform = timed(lambda: np.concatenate(list(stream_audio(str(path), None, rate))))
    times["features"], features = timed(processor.feature_extractor.extract, waveform, False)
    times["transcription"], notes = timed(processor.transcriber, waveform, rate)
    notes = np.array(notes, dtype=np.float64).reshape(-1, 4)
    starts = window_starts(len(waveform) / rate, window_s, window_s, processor.feature_extractor.frames_per_second)
    times["tokens + windows"], batches = timed(lambda: [processor.window_inputs([(features, notes, s)]) for s in starts])

    def forward():
        with torch.inference_mode():
            for inputs in batches:
                model(**inputs)

    times["model"], _ = timed(forward)
    return times


def _pipeline_script(model_dir: str, dtype: str) -> str:
    return (
        "import mdpiano, torch; from transformers import pipeline\n"
        f"pipe = pipeline('audio-classification', model={str(model_dir)!r}, dtype=torch.{dtype})\n"
    )


def memory_profile(model_dir: str, path, dtype: str = "float32", interval_s: float = 0.05) -> dict:
    """
    Memory of a fresh process that loads the pipeline and classifies one file: `peak_mb` (its peak resident memory,
    start-up included), `loaded_mb` (resident once the pipeline is loaded), and `seconds` / `rss_mb`, its resident
    memory every `interval_s` during the classification (sampled by a thread of that process).
    """
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its (larger) parent's peak.
    script = _pipeline_script(model_dir, dtype) + f"""
import json, threading, time
def status(key):
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(key)) / 1024
samples, done = [], threading.Event()
def sample(start):
    while True:
        samples.append((round(time.perf_counter() - start, 3), round(status('VmRSS'), 1)))
        if done.wait({interval_s!r}):
            return
loaded = status('VmRSS')
sampler = threading.Thread(target=sample, args=(time.perf_counter(),))
sampler.start()
pipe({str(path)!r})
done.set()
sampler.join()
print(json.dumps({{"peak_mb": status('VmHWM'), "loaded_mb": loaded, "seconds": [t for t, _ in samples],
                  "rss_mb": [m for _, m in samples]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


COLD_START_STAGES = ("import torch", "import transformers", "import mdpiano", "load", "first prediction")
BASIC_PITCH_COLD_START_STAGES = ("import basic_pitch", "load", "first prediction")


def _staged_run(steps: list[str]) -> list[float]:
    """Seconds of each line of Python in `steps`, run one after another in a fresh interpreter."""
    script = (
        "import time; marks = [time.perf_counter()]\n"
        + "".join(f"{step}; marks.append(time.perf_counter())\n" for step in steps)
        + "print(*[b - a for a, b in zip(marks, marks[1:])])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return [float(seconds) for seconds in result.stdout.strip().splitlines()[-1].split()]


def cold_start_stages(model_dir: str, path, dtype: str = "float32") -> dict[str, float]:
    """
    Seconds from a fresh interpreter to the first prediction, by stage: importing torch, then transformers' modeling
    code (what any transformers model imports), then mdpiano and the pipeline factory; loading the pipeline; one file.
    """
    steps = ["import torch", "import transformers.modeling_utils", *_pipeline_script(model_dir, dtype).splitlines(),
             f"pipe({str(path)!r})"]  # fmt: skip
    return dict(zip(COLD_START_STAGES, _staged_run(steps)))


def basic_pitch_cold_start_stages(path) -> dict[str, float]:
    """
    The reference's cold start, as a basic-pitch user has it: seconds to import `basic_pitch.inference`, to load its
    ONNX model, and of the first `predict()` on one file.
    """
    from .transcription_mdpiano import default_model_path

    steps = ["import basic_pitch.inference as inference", f"model = inference.Model({default_model_path()!r})",
             f"inference.predict({str(path)!r}, model)"]  # fmt: skip
    return dict(zip(BASIC_PITCH_COLD_START_STAGES, _staged_run(steps)))


def write_json(path, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))


__all__ = [
    "BASIC_PITCH_COLD_START_STAGES",
    "COLD_START_STAGES",
    "basic_pitch_cold_start_stages",
    "basic_pitch_predictor",
    "cold_start_stages",
    "memory_profile",
    "stage_times",
    "timed",
    "timed_cpu",
    "write_json",
]

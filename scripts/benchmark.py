"""Speed and memory of the emotion pipeline, against basic-pitch's own `predict()` on the same files, in one run.

    python scripts/benchmark.py [--clips 10] [--soundfont FluidR3_GM] [--model models/mdpiano-emopia]

Renders N clips of the EMOPIA test split (44.1 kHz WAV, so both sides decode and resample) and a 10-minute
concatenation, then measures, alternating per clip after a warm-up: (a) basic-pitch `predict()` (the reference:
transcription alone), (b) `pipeline("audio-classification")` end to end, (c) each stage of (b). Each clip's (a) and
(b) are the fastest of `--repeats` alternating runs, and each batch size's throughput the best of as many rounds
over all batch sizes: on a shared machine, noise only ever adds time. Prints and writes (results/benchmark.json,
README's Performance section): median seconds, times real time, the ratio (b)/(a) per clip and its median, stage
shares, batch throughput (and the cores each batch size kept busy), peak memory of a fresh process on the 10-minute
and 1-hour files and its resident memory over the classification (results/memory.png), and the cold start (median
of three fresh processes, against basic-pitch's own cold start in as many). Temporary audio is deleted afterwards.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from mdpiano import DEFAULT_MODEL_DIR
from mdpiano.benchmarking import (
    basic_pitch_cold_start_stages,
    basic_pitch_predictor,
    cold_start_stages,
    memory_profile,
    stage_times,
    timed,
    timed_cpu,
    write_json,
)
from mdpiano.checkpoints import load_model_or_exit
from mdpiano.cli import exit_on_input_errors
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia
from mdpiano.evaluation import replace_section, shown_path
from mdpiano.plots import plot_memory_profiles
from mdpiano.rendering_mdpiano import render_midi
from mdpiano.transcription_mdpiano import _available_cpus

REPOSITORY = Path(__file__).resolve().parents[1]
RATE = 44100
COLD_STARTS = 3  # fresh processes; the median is reported
MEMORY_RUNS = 3  # fresh processes per file; the median peak is reported (thread timing moves it by tens of MB)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--soundfont", default="FluidR3_GM")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the emotion model's weights")
    parser.add_argument("--repeats", type=int, default=3, help="runs per clip and per batch size; the fastest counts")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--hour", action="store_true", help="also the peak memory on a 1-hour file (slow)")
    parser.add_argument("--output", help="default: results/benchmark.json (results/benchmark-bfloat16.json for bfloat16)")
    parser.add_argument("--no-readme", action="store_true", help="do not write README's Performance section")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    if not 0 < args.long_minutes <= 600:
        parser.error("--long-minutes must be more than 0 and at most 600")
    if not Path(args.model).is_dir():
        parser.error(f"--model {args.model} is not a model folder")
    load_model_or_exit(args.model)  # a folder that cannot be loaded is named now, not after the rendering

    with tempfile.TemporaryDirectory(prefix="mdpiano-benchmark-") as folder:
        summary = measure(args, Path(folder))
    suffix = "" if args.dtype == "float32" else f"-{args.dtype}"
    output = Path(args.output or REPOSITORY / "results" / f"benchmark{suffix}.json")
    write_json(output, summary)
    plot = plot_memory_profiles(summary["memory_profiles"], output.with_name(f"memory{suffix}.png"),
                                f"Resident memory while classifying one file (emotion model in {args.dtype})")  # fmt: skip
    text = report(summary, " ".join(["python scripts/benchmark.py", *sys.argv[1:]]), output, plot)
    print(text)
    if not args.no_readme:
        replace_section(REPOSITORY / "README.md", f"performance{suffix}", text)


def repeated(audio: np.ndarray, samples: int) -> np.ndarray:
    """`audio` repeated to exactly `samples` samples (tiled only as far as needed: an hour is 0.3 GB, not more)."""
    return np.tile(audio, -(-samples // len(audio)))[:samples]


def median_memory_profile(args, path: Path) -> dict:
    """The memory profile (`benchmarking.memory_profile`) whose peak is the median of `MEMORY_RUNS` fresh processes."""
    profiles = sorted((memory_profile(args.model, path, args.dtype) for _ in range(MEMORY_RUNS)), key=lambda p: p["peak_mb"])
    return profiles[len(profiles) // 2]


def median_stages(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.median([stages[name] for stages in runs])) for name in runs[0]}


def measure(args, folder: Path) -> dict:
    """Renders the clips and the long files into `folder` and measures; returns the summary."""
    import torch
    from transformers import pipeline

    test = load_emopia(Path(args.data) / "emopia")["test"]
    paths, waveforms = [], []
    for row in list(test)[: args.clips]:
        waveform = render_midi(row["midi_path"], args.soundfont, RATE)
        waveforms.append(waveform)
        paths.append(folder / f"{row['clip_id']}.wav")
        soundfile.write(paths[-1], waveform, RATE, subtype="PCM_16")
    clips_audio = np.concatenate(waveforms)
    long_path = folder / "long.wav"
    soundfile.write(long_path, repeated(clips_audio, int(args.long_minutes * 60 * RATE)), RATE, subtype="PCM_16")

    reference = basic_pitch_predictor()
    classify = pipeline("audio-classification", model=args.model, dtype=getattr(torch, args.dtype))
    reference(paths[0]), classify(str(paths[0]))  # warm-up: sessions, caches, first-call allocations
    rows = []
    for path, waveform in zip(paths, waveforms):
        runs = [(timed(reference, path)[0], timed(classify, str(path))[0]) for _ in range(args.repeats)]
        seconds_reference, seconds_pipeline = (min(times) for times in zip(*runs))
        rows.append({"clip": path.stem, "audio_s": len(waveform) / RATE, "basic_pitch_s": seconds_reference,
                     "pipeline_s": seconds_pipeline, "ratio": seconds_pipeline / seconds_reference,
                     "stages": stage_times(classify, path)})  # fmt: skip
    long_reference, _ = timed(reference, long_path)
    long_pipeline, _ = timed(classify, str(long_path))
    throughput, cores_busy = dict.fromkeys((1, 4, 16), 0.0), {}
    for _ in range(args.repeats):  # rounds over all sizes, so a slow spell of the machine does not fall on one size
        for batch_size in throughput:
            seconds, cores, _ = timed_cpu(classify, [str(p) for p in paths], batch_size=batch_size)
            if len(paths) / seconds > throughput[batch_size]:
                throughput[batch_size], cores_busy[batch_size] = len(paths) / seconds, cores
    memory = {f"{args.long_minutes:g} min": median_memory_profile(args, long_path)}
    if args.hour:
        hour_path = folder / "hour.wav"
        soundfile.write(hour_path, repeated(clips_audio, 3600 * RATE), RATE, subtype="PCM_16")
        memory["1 h"] = median_memory_profile(args, hour_path)
    cold_starts, basic_pitch_cold_starts = [], []
    for _ in range(COLD_STARTS):  # alternating, so a slow spell of the machine does not fall on one side
        cold_starts.append(cold_start_stages(args.model, paths[0], args.dtype))
        basic_pitch_cold_starts.append(basic_pitch_cold_start_stages(paths[0]))

    stage_names = list(rows[0]["stages"])
    stage_totals = {name: sum(r["stages"][name] for r in rows) for name in stage_names}
    return {
        "machine": f"{torch.get_num_threads()} threads",
        "clips": len(rows),
        "soundfont": args.soundfont,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "median_basic_pitch_s": float(np.median([r["basic_pitch_s"] for r in rows])),
        "median_pipeline_s": float(np.median([r["pipeline_s"] for r in rows])),
        "median_ratio": float(np.median([r["ratio"] for r in rows])),
        "median_audio_s": float(np.median([r["audio_s"] for r in rows])),
        "realtime_basic_pitch": float(np.median([r["audio_s"] / r["basic_pitch_s"] for r in rows])),
        "realtime_pipeline": float(np.median([r["audio_s"] / r["pipeline_s"] for r in rows])),
        "stage_shares": {name: total / sum(stage_totals.values()) for name, total in stage_totals.items()},
        "long_minutes": args.long_minutes,
        "long_basic_pitch_s": long_reference,
        "long_pipeline_s": long_pipeline,
        "throughput_clips_per_s": throughput,
        "throughput_cores_busy": cores_busy,
        "cores": _available_cpus(),
        "peak_rss_mb": {name: profile["peak_mb"] for name, profile in memory.items()},
        "memory_profiles": memory,
        "cold_start_s": float(np.median([sum(stages.values()) for stages in cold_starts])),
        "cold_start_stages_s": median_stages(cold_starts),
        "basic_pitch_cold_start_s": float(np.median([sum(stages.values()) for stages in basic_pitch_cold_starts])),
        "basic_pitch_cold_start_stages_s": median_stages(basic_pitch_cold_starts),
        "rows": rows,
    }


def report(s: dict, command: str, output: Path, plot: Path) -> str:
    lines = [
        f"{s['clips']} EMOPIA test clips rendered with {s['soundfont']} (44.1 kHz WAV, median {s['median_audio_s']:.0f} s), "
        f"on this machine's CPU, emotion model in {s['dtype']}, measured alternately in one process after a warm-up "
        f"(each clip's time: the fastest of {s['repeats']} runs):",
        "",
        "| | median s per clip | × real time |",
        "|---|---|---|",
        f"| (a) basic-pitch `predict()` (transcription alone) | {s['median_basic_pitch_s']:.2f} | {s['realtime_basic_pitch']:.0f}× |",
        f"| (b) mdpiano pipeline, end to end | {s['median_pipeline_s']:.2f} | {s['realtime_pipeline']:.0f}× |",
        "",
        f"Ratio (b)/(a): median **{s['median_ratio']:.2f}** (per clip: "
        + ", ".join(f"{r['ratio']:.2f}" for r in s["rows"]) + ").",
        "",
        "Stages of (b): " + ", ".join(f"{name} {share:.0%}" for name, share in s["stage_shares"].items()) + ".",
        "",
        f"{s['long_minutes']:g}-minute file: basic-pitch {s['long_basic_pitch_s']:.1f} s, pipeline {s['long_pipeline_s']:.1f} s "
        f"(ratio {s['long_pipeline_s'] / s['long_basic_pitch_s']:.2f}). Peak memory of a fresh process classifying one file "
        f"(median of {MEMORY_RUNS}): "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in s["peak_rss_mb"].items()) + ".",
        "",
        f"Throughput (clips per second, best of {s['repeats']} rounds; in brackets, the cores of {s['cores']} that round "
        "kept busy on average) by `batch_size`: "
        + ", ".join(f"{b}: {v:.2f} ({s['throughput_cores_busy'][b]:.2f})" for b, v in s["throughput_clips_per_s"].items())
        + ".",
        f"Cold start (import, load, first prediction of one clip; median of {COLD_STARTS} fresh processes, alternating): "
        f"mdpiano {s['cold_start_s']:.1f} s (stage medians: "
        + ", ".join(f"{name} {sec:.2f} s" for name, sec in s["cold_start_stages_s"].items())
        + f"); basic-pitch's own {s['basic_pitch_cold_start_s']:.1f} s ("
        + ", ".join(f"{name} {sec:.2f} s" for name, sec in s["basic_pitch_cold_start_stages_s"].items())
        + f"); ratio {s['cold_start_s'] / s['basic_pitch_cold_start_s']:.2f}.",
        "",
        f"![Resident memory over the classification of each long file]({shown_path(plot, REPOSITORY)})",
        "",
        f"Produced by `{command}` ({shown_path(output, REPOSITORY)}, {shown_path(plot, REPOSITORY)}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    exit_on_input_errors(main)

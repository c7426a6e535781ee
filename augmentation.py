"""Rendering conditions: which piano, velocity curve, room, EQ, noise and codec a MIDI clip is rendered through.

EMOPIA ships MIDI only, so training and test audio are renderings. Training draws its conditions at random from
the `train` distribution; the acceptance test renders through a piano, a room, an EQ, a noise colour and a codec
that the training distribution never uses (`test-new-piano`). `test-unseen` holds out the recording chain only: its
piano, FluidR3_GM, is not new to training, since FluidR3Mono_GM, a training piano, is MuseScore's mono, lossy
edition of the same SoundFont.
"""

import dataclasses
import io
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import signal

from .notes_mdpiano import load_midi
from .rendering_mdpiano import render_midi

TRAIN_SOUNDFONTS = ("TimGM6mb", "MuseScore_General_Lite", "FluidR3Mono_GM")
TRAIN_PROGRAMS = (0, 1)  # General MIDI acoustic grand and bright acoustic piano
CODEC_EXTENSIONS = {"flac": ".flac", "ogg": ".ogg", "mp3": ".mp3"}


@dataclass(frozen=True)
class RenderCondition:
    """
    One rendering condition. Effects apply in this order: velocity curve (on the MIDI), synthesis, room, EQ, noise,
    peak level, codec.

    Args:
        soundfont: SoundFont name (see `rendering_mdpiano.KNOWN_SOUNDFONTS`) or path.
        program: General MIDI program.
        velocity_gamma, velocity_scale: velocities become `127 * scale * (v / 127) ** gamma`, clipped to 1-127.
        rt60_s: reverberation time of a synthetic room (exponentially decaying noise); 0 adds no room.
        wet: share of reverberated signal.
        low_shelf_db, high_shelf_db: shelving EQ gains at 200 Hz and 4 kHz.
        peak_db, peak_hz: a peaking EQ band (1 octave wide).
        noise_snr_db: additive noise level below the signal, `None` for none.
        noise_color: `white`, `pink` (1/f) or `brown` (1/f^2).
        peak: peak amplitude before the codec.
        codec: `flac` (lossless), `ogg` (Vorbis) or `mp3`.
        codec_quality: libsndfile compression level in [0, 1] for `ogg` and `mp3` (1 is the smallest file).
        sampling_rate: rate of the rendering and of the file.
    """

    soundfont: str
    program: int = 0
    velocity_gamma: float = 1.0
    velocity_scale: float = 1.0
    rt60_s: float = 0.0
    wet: float = 0.0
    low_shelf_db: float = 0.0
    high_shelf_db: float = 0.0
    peak_db: float = 0.0
    peak_hz: float = 1000.0
    noise_snr_db: float | None = None
    noise_color: str = "white"
    peak: float = 0.9
    codec: str = "flac"
    codec_quality: float = 0.5
    sampling_rate: int = 22050

    @property
    def extension(self) -> str:
        return CODEC_EXTENSIONS[self.codec]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_train_condition(rng: np.random.Generator) -> RenderCondition:
    """A condition from the training distribution: three SoundFonts, two piano programs, small rooms, shelving EQ,
    white or pink noise, lossless or Vorbis."""
    reverberant = rng.random() < 0.7
    noisy = rng.random() < 0.5
    codec = "ogg" if rng.random() < 0.5 else "flac"
    return RenderCondition(
        soundfont=str(rng.choice(TRAIN_SOUNDFONTS)),
        program=int(rng.choice(TRAIN_PROGRAMS)),
        velocity_gamma=float(rng.uniform(0.75, 1.35)),
        velocity_scale=float(rng.uniform(0.8, 1.1)),
        rt60_s=float(rng.uniform(0.2, 0.9)) if reverberant else 0.0,
        wet=float(rng.uniform(0.1, 0.4)) if reverberant else 0.0,
        low_shelf_db=float(rng.uniform(-6, 6)),
        high_shelf_db=float(rng.uniform(-6, 6)),
        noise_snr_db=float(rng.uniform(25, 45)) if noisy else None,
        noise_color=str(rng.choice(["white", "pink"])),
        peak=float(rng.uniform(0.3, 0.95)),
        codec=codec,
        codec_quality=float(rng.uniform(0.2, 0.7)),
    )


# A recording chain outside the training distribution: a longer room, a peaking EQ, brown noise and MP3 at 44.1 kHz.
UNSEEN_CHAIN = dict(rt60_s=1.6, wet=0.35, peak_db=5.0, peak_hz=1500.0, noise_snr_db=30.0, noise_color="brown", peak=0.7,
                    codec="mp3", codec_quality=0.9, sampling_rate=44100)  # fmt: skip

# Fixed conditions. `test-new-piano`: a piano that training never heard (FreePats' acoustic grand, a GUS patch
# rendered with TiMidity++) through the unseen chain; `test-new-piano-clean`: that piano alone. `test-unseen`: the
# unseen chain on FluidR3_GM, whose samples training knows from FluidR3Mono_GM (its mono, lossy edition), so it holds
# out the recording chain only; `test-clean`: that piano alone.
# `validation-unseen`: a training piano through another recording chain outside the training distribution (a long
# room, an EQ cut, loud white noise, strong Vorbis at 32 kHz), to select models for robustness without the test set;
# `validation-new-piano`: that chain on a piano neither training nor the test sets play (FreePats' bright piano).
VALIDATION_CHAIN = dict(rt60_s=1.3, wet=0.3, peak_db=-6.0, peak_hz=500.0, noise_snr_db=20.0, noise_color="white",
                        peak=0.6, codec="ogg", codec_quality=0.95, sampling_rate=32000)  # fmt: skip
FIXED_CONDITIONS = {
    "validation-unseen": RenderCondition(soundfont="MuseScore_General_Lite", **VALIDATION_CHAIN),
    "validation-new-piano": RenderCondition(soundfont="FreePats_Bright", **VALIDATION_CHAIN),
    "test-new-piano": RenderCondition(soundfont="FreePats_Grand", **UNSEEN_CHAIN),
    "test-new-piano-clean": RenderCondition(soundfont="FreePats_Grand"),
    "test-unseen": RenderCondition(soundfont="FluidR3_GM", **UNSEEN_CHAIN),
    "test-clean": RenderCondition(soundfont="FluidR3_GM"),
}
ACCEPTANCE_SET = "test-new-piano"  # the test audio that the published figures lead with


def condition_for(name: str, clip_id: str, variant: int = 0) -> RenderCondition:
    """The condition of a named set for one clip: fixed for test sets, drawn (reproducibly per clip and variant)
    from the training distribution for `train` and `validation`."""
    if name in FIXED_CONDITIONS:
        return FIXED_CONDITIONS[name]
    if name not in ("train", "validation"):
        raise ValueError(f"Unknown condition set {name!r}: use train, validation or one of {sorted(FIXED_CONDITIONS)}.")
    return sample_train_condition(np.random.default_rng(zlib.crc32(f"{name}/{clip_id}/{variant}".encode())))


def render_condition(
    midi_path: str, condition: RenderCondition, seed: int = 0, max_duration_s: float | None = None
) -> np.ndarray:
    """Renders a MIDI file (its first `max_duration_s` seconds, if given) through a condition, up to (not including)
    the codec: mono float32 at its rate."""
    midi = load_midi(midi_path)
    for instrument in midi.instruments:
        for note in instrument.notes:
            curved = 127 * condition.velocity_scale * (note.velocity / 127) ** condition.velocity_gamma
            note.velocity = int(np.clip(round(curved), 1, 127))
    audio = render_midi(
        midi,
        condition.soundfont,
        condition.sampling_rate,
        max_duration_s=max_duration_s,
        peak=1.0,
        program=condition.program,
    ).astype(np.float64)
    rng = np.random.default_rng(seed)
    rate = condition.sampling_rate
    if condition.rt60_s > 0 and condition.wet > 0:
        audio = add_room(audio, rate, condition.rt60_s, condition.wet, rng)
    audio = equalize(audio, rate, condition.low_shelf_db, condition.high_shelf_db, condition.peak_db, condition.peak_hz)
    if condition.noise_snr_db is not None:
        audio = add_noise(audio, condition.noise_snr_db, condition.noise_color, rng)
    return (audio * condition.peak / max(np.abs(audio).max(), 1e-9)).astype(np.float32)


def encode(audio: np.ndarray, condition: RenderCondition) -> bytes:
    """The file bytes of a rendering in the condition's codec."""
    import soundfile

    formats = {
        "flac": {"format": "FLAC", "subtype": "PCM_16"},
        "ogg": {"format": "OGG", "subtype": "VORBIS", "compression_level": condition.codec_quality},
        "mp3": {"format": "MP3", "subtype": "MPEG_LAYER_III", "compression_level": condition.codec_quality,
                "bitrate_mode": "CONSTANT"},
    }  # fmt: skip
    if condition.codec not in formats:
        raise ValueError(f"Unknown codec {condition.codec!r}; use one of {sorted(formats)}.")
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", condition.sampling_rate, 1, **formats[condition.codec]) as file:
        # One-second blocks: libsndfile's Vorbis encoder can hang on a single write of a long signal.
        for start in range(0, len(audio), condition.sampling_rate):
            file.write(audio[start : start + condition.sampling_rate])
    return buffer.getvalue()


def add_room(audio: np.ndarray, rate: int, rt60_s: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolution with a synthetic room response: a direct path, then noise decaying by 60 dB over `rt60_s`."""
    length = int(rt60_s * rate)
    decay = np.exp(-6.9 * np.arange(length) / (rt60_s * rate))  # ln(1000) = 6.9: -60 dB at rt60
    response = rng.standard_normal(length) * decay
    response[: int(0.005 * rate)] = 0.0  # 5 ms pre-delay before the reflections
    reverberant = signal.fftconvolve(audio, response)[: len(audio)]
    reverberant *= np.sqrt(np.mean(audio**2) / max(np.mean(reverberant**2), 1e-12))
    return (1 - wet) * audio + wet * reverberant


def _biquad(kind: str, frequency: float, gain_db: float, rate: int, q: float = 0.707):
    """Biquad coefficients (b, a) of the Audio EQ Cookbook (R. Bristow-Johnson) shelving and peaking filters."""
    amplitude = 10 ** (gain_db / 40)
    omega = 2 * np.pi * frequency / rate
    alpha = np.sin(omega) / (2 * q)
    cos = np.cos(omega)
    if kind == "peak":
        b = [1 + alpha * amplitude, -2 * cos, 1 - alpha * amplitude]
        a = [1 + alpha / amplitude, -2 * cos, 1 - alpha / amplitude]
    else:
        root = 2 * np.sqrt(amplitude) * alpha
        sign = 1 if kind == "low" else -1
        b = [
            amplitude * ((amplitude + 1) - sign * (amplitude - 1) * cos + root),
            sign * 2 * amplitude * ((amplitude - 1) - sign * (amplitude + 1) * cos),
            amplitude * ((amplitude + 1) - sign * (amplitude - 1) * cos - root),
        ]
        a = [
            (amplitude + 1) + sign * (amplitude - 1) * cos + root,
            -sign * 2 * ((amplitude - 1) + sign * (amplitude + 1) * cos),
            (amplitude + 1) + sign * (amplitude - 1) * cos - root,
        ]
    return np.array(b) / a[0], np.array(a) / a[0]


def equalize(audio, rate, low_shelf_db=0.0, high_shelf_db=0.0, peak_db=0.0, peak_hz=1000.0) -> np.ndarray:
    """Low shelf at 200 Hz, high shelf at 4 kHz and a one-octave peaking band; 0 dB bands are skipped."""
    bands = [("low", 200.0, low_shelf_db, 0.707), ("high", 4000.0, high_shelf_db, 0.707), ("peak", peak_hz, peak_db, 1.41)]
    for kind, frequency, gain_db, q in bands:
        if gain_db:
            b, a = _biquad(kind, frequency, gain_db, rate, q)
            audio = signal.lfilter(b, a, audio)
    return audio


def add_noise(audio: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """Adds white, pink (1/f power) or brown (1/f^2) noise `snr_db` below the signal's RMS."""
    exponents = {"white": 0.0, "pink": 0.5, "brown": 1.0}
    if color not in exponents:
        raise ValueError(f"Unknown noise colour {color!r}; use one of {sorted(exponents)}.")
    spectrum = np.fft.rfft(rng.standard_normal(len(audio)))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / frequencies ** exponents[color], n=len(audio))
    signal_rms = np.sqrt(np.mean(audio**2))
    noise *= signal_rms / max(np.sqrt(np.mean(noise**2)), 1e-12) / 10 ** (snr_db / 20)
    return audio + noise


def _render_one(task) -> tuple[str, str | None]:
    clip_id, midi_path, condition, out_path, seed, max_duration_s = task
    try:
        data = encode(render_condition(midi_path, condition, seed, max_duration_s), condition)
    except Exception as error:  # one bad clip must not stop a long run; it is reported
        return clip_id, f"{type(error).__name__}: {error}"
    partial = out_path.with_suffix(out_path.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(out_path)  # atomic: an interrupted run leaves no truncated file behind
    return clip_id, None


def render_folder(
    midi_paths: dict, condition_set: str, variant: int, out_dir, workers: int = 2, max_duration_s: float | None = None
) -> dict[str, str]:
    """
    Renders clips (`{clip_id: midi_path}`) through the conditions of a set into `out_dir/<clip_id>.<ext>` (the
    first `max_duration_s` seconds of each, if given), with a progress bar. Clips already rendered are skipped, so
    an interrupted run resumes. `out_dir/conditions.jsonl` records each clip's condition.

    Returns:
        `{clip_id: error message}` for clips that failed.
    """
    import json
    import multiprocessing
    from pathlib import Path

    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks, records = [], []
    for clip_id, midi_path in sorted(midi_paths.items()):
        condition = condition_for(condition_set, clip_id, variant)
        out_path = out_dir / f"{clip_id}{condition.extension}"
        records.append(json.dumps({"clip_id": clip_id, **condition.to_dict()}))
        if not out_path.exists():
            seed = zlib.crc32(f"{clip_id}/{variant}".encode())
            tasks.append((clip_id, str(midi_path), condition, out_path, seed, max_duration_s))
    (out_dir / "conditions.jsonl").write_text("\n".join(records) + "\n")
    description = f"Rendering {condition_set} #{variant} ({len(midi_paths) - len(tasks)} done before)"

    def failures_of(results) -> dict[str, str]:
        return {clip_id: error for clip_id, error in tqdm(results, total=len(tasks), desc=description) if error}

    if workers == 1 or len(tasks) <= 1:  # no worker process to start
        return failures_of(map(_render_one, tasks))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return failures_of(pool.imap_unordered(_render_one, tasks))


__all__ = [
    "ACCEPTANCE_SET",
    "FIXED_CONDITIONS",
    "RenderCondition",
    "add_noise",
    "add_room",
    "condition_for",
    "encode",
    "equalize",
    "render_condition",
    "render_folder",
    "sample_train_condition",
]

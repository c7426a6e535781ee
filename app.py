"""mdpiano demo (a Gradio app; the Space's entry point): the emotion quadrant of a piano recording or MIDI file.

    python app.py                      # http://127.0.0.1:7860
    MDPIANO_MODEL=runs/full/best python app.py

Upload or record audio, or upload a MIDI file. The app shows the four quadrant probabilities, the prediction on the
valence-arousal plane, the piano roll of the transcription, an emotion timeline for audio longer than one window,
and the transcription as a MIDI file to download. Uploads are limited in size and duration.
"""

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import soundfile
from transformers import pipeline

import mdpiano
from mdpiano.checkpoints import load_model_or_exit
from mdpiano.configuration_mdpiano import QUADRANT_NAMES
from mdpiano.notes_mdpiano import notes_to_midi
from mdpiano.plots import figure_piano_roll, figure_timeline, figure_valence_arousal_point
from mdpiano.rendering_mdpiano import rendered_duration
from mdpiano.statistics_fusion import MIN_FUSION_NOTES


def positive_setting(name: str, default: float) -> float:
    """A positive number from the environment variable `name`; a clear exit when it is something else."""
    text = os.environ.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise SystemExit(f"error: {name} must be a positive number, got {text!r}.")
    return value


MODEL = os.environ.get("MDPIANO_MODEL", str(mdpiano.DEFAULT_MODEL_DIR))
MAX_SECONDS = positive_setting("MDPIANO_MAX_SECONDS", 600)
MAX_MEGABYTES = positive_setting("MDPIANO_MAX_MEGABYTES", 50)
EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parent / "examples").glob("*.mp3"))
MIDI_SUFFIXES = (".mid", ".midi")
# Transcriptions offered for download; Gradio copies each into its own cache as the request returns.
TRANSCRIPTION_DIR = Path(tempfile.mkdtemp(prefix="mdpiano-demo-"))
atexit.register(shutil.rmtree, TRANSCRIPTION_DIR, ignore_errors=True)
TRANSCRIPTION_KEPT_S = 600

model, processor = load_model_or_exit(MODEL, "MDPIANO_MODEL")
classifier = pipeline("audio-classification", model=model, processor=processor)


def minutes(seconds: float) -> str:
    """A duration for people: `11.5 min`, or `45 s` under a minute."""
    return f"{round(seconds / 60, 1):g} min" if seconds >= 60 else f"{round(seconds, 1):g} s"


def audio_info(path: str) -> tuple[float | None, float | None]:
    """
    The duration and sampling rate of an audio file without decoding it: libsndfile's formats from their header,
    others through torchcodec (ffmpeg): the header's duration, else the container's (WebM announces none in its
    header). None for what neither can tell.
    """
    try:
        info = soundfile.info(path)
        return info.duration, info.samplerate
    except RuntimeError:  # not a format libsndfile reads (m4a, aac, webm, ...)
        pass
    try:
        from torchcodec.decoders import AudioDecoder

        metadata = AudioDecoder(path).metadata
        return metadata.duration_seconds_from_header or metadata.duration_seconds, metadata.sample_rate
    except Exception:  # no torchcodec, or not audio at all
        return None, None


def check_limits(path: str) -> float | None:
    """Refuses uploads over the size or duration limit, before any decoding beyond the header; returns an audio
    file's sampling rate (None for MIDI, or when the header does not say)."""
    megabytes = os.path.getsize(path) / 1e6
    if megabytes > MAX_MEGABYTES:
        raise gr.Error(f"The file is {megabytes:.1f} MB; this demo takes up to {MAX_MEGABYTES:g} MB.")
    rate = None
    if path.lower().endswith(MIDI_SUFFIXES):
        duration = rendered_duration(path)  # to its last event, as rendered: a late controller change counts
    else:
        duration, rate = audio_info(path)
        if duration is None:  # a few MB of a low-bitrate codec can hold hours: nothing is decoded without a length
            raise gr.Error("The length of this file cannot be read (is it audio?): upload WAV, FLAC, MP3 or Ogg.")
    if duration > MAX_SECONDS:
        raise gr.Error(f"The recording lasts {minutes(duration)}; this demo takes up to {minutes(MAX_SECONDS)}.")
    return rate


def classify(audio_path, midi_path):
    """Gradio handler: uploaded file paths in, the five views out."""
    path = midi_path or audio_path
    if not path:
        raise gr.Error("Upload or record piano audio, or upload a MIDI file.")
    try:
        rate = check_limits(path)
        result = classifier(path, return_timeline=True, return_notes=True)
    except gr.Error:  # a ValueError itself, already worded for the user
        raise
    except (ValueError, OSError, ImportError) as error:  # bad files, missing FluidSynth for MIDI: say what
        # named as the user's file, not by the server's upload folder
        raise gr.Error(str(error).replace(os.path.join(os.path.dirname(path), ""), "")) from error
    scores = {entry["label"]: entry["score"] for entry in result["labels"]}
    label = {f"{quadrant} {QUADRANT_NAMES[quadrant].split(' ')[0]}": score for quadrant, score in scores.items()}
    notes = result["notes"]  # None: the model reads no notes
    midi_file = transcription_file(notes) if notes is not None else None
    timeline = figure_timeline(result["timeline"]) if len(result["timeline"]) > 1 else None
    messages = ["Both audio and a MIDI file were given: this is the MIDI file's result."] if midi_path and audio_path else []
    if notes is None:
        messages.append("This model reads the audio alone (no notes): there is no transcription to show.")
    elif not notes:
        messages.append("No notes were found: the symbolic branch saw an empty transcription.")
    model_rate = classifier.processor.sampling_rate
    if rate is not None and rate < model_rate:
        messages.append(f"This recording is sampled at {rate:g} Hz, below the {model_rate:g} Hz the model reads: it "
                        f"holds nothing above {rate / 2:g} Hz, and the model is less accurate on such audio (mostly "
                        f"arousal){band_limited_clause(classifier.model.config)}. Upload the recording at a higher "
                        "rate if there is one.")  # fmt: skip
    message = " ".join(messages)
    piano_roll = figure_piano_roll(notes) if notes is not None else None
    return label, figure_valence_arousal_point(scores), piano_roll, timeline, midi_file, message


def band_limited_clause(config) -> str:
    """What the model's fusion does for audio sampled below its rate, if it has a weight for such audio."""
    fusion = config.note_statistics_fusion
    if fusion is None or "band_limited_network_weight" not in fusion:
        return ""
    weight = fusion["band_limited_network_weight"]
    if weight == 0:
        return (f"; its answer for such audio comes from the statistics of the transcribed notes alone (given "
                f"{MIN_FUSION_NOTES} notes or more)")
    return f"; for such audio it weighs the network {weight:g} against the statistics of the transcribed notes"


def transcription_file(notes) -> str:
    """A MIDI file of `notes` to offer for download; earlier requests' files are removed once Gradio has copied them."""
    for old in TRANSCRIPTION_DIR.glob("*.mid"):
        if time.time() - old.stat().st_mtime > TRANSCRIPTION_KEPT_S:
            old.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".mid", prefix="transcription-", dir=TRANSCRIPTION_DIR, delete=False) as file:
        path = file.name
    notes_to_midi(notes).write(path)
    return path


def build_demo() -> gr.Blocks:
    # Uploads and the transcriptions handed out are copied into Gradio's cache: checked every 10 min, kept for an hour.
    with gr.Blocks(title="mdpiano: piano music emotion", delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            "# mdpiano: the emotion of piano music\n"
            "Which quadrant does a piano recording express: **Q1 happy**, **Q2 tense**, **Q3 sad** or **Q4 calm**? "
            "Acoustic features and a basic-pitch transcription, fused by cross-domain attention "
            f"(Zhu et al., 2023). Up to {minutes(MAX_SECONDS)} and {MAX_MEGABYTES:g} MB."
        )
        with gr.Row():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Piano audio")
            midi = gr.File(file_types=list(MIDI_SUFFIXES), label="or a MIDI file")
        button = gr.Button("Classify", variant="primary")
        message = gr.Markdown()
        with gr.Row():
            label = gr.Label(num_top_classes=4, label="Emotion quadrant")
            plane = gr.Plot(label="Valence-arousal plane")
        roll = gr.Plot(label="Piano roll of the transcription")
        timeline = gr.Plot(label="Emotion timeline: each analysis window as the network alone reads it (the result "
                                 "averages the windows with notes and weighs in the note statistics)")
        download = gr.File(label="Transcription (MIDI)")
        button.click(classify, inputs=[audio, midi], outputs=[label, plane, roll, timeline, download, message],
                     api_name="classify")  # fmt: skip
        if EXAMPLES:
            gr.Examples(examples=EXAMPLES, inputs=[audio], label="Examples (EMOPIA test clips, rendered)")
    return demo


if __name__ == "__main__":
    build_demo().launch(max_file_size=int(MAX_MEGABYTES * 1e6))

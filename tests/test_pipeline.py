import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from mdpiano import MDPianoAudioClassificationPipeline, MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.checkpoints import save_for_package
from mdpiano.windowing import window_starts

SR = 22050
QUADRANTS = {"Q1", "Q2", "Q3", "Q4"}


@pytest.fixture(scope="module")
def model_and_processor(tiny_config):
    torch.manual_seed(0)
    return MDPianoForAudioClassification(tiny_config).eval(), MDPianoProcessor.from_config(tiny_config)


@pytest.fixture(scope="module")
def hub_folder(model_and_processor, tmp_path_factory):
    """A folder written by plain `save_pretrained`: Hub-ready, with module files and `auto_map`."""
    folder = tmp_path_factory.mktemp("hub")
    model, processor = model_and_processor
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def package_folder(model_and_processor, tmp_path_factory):
    """A folder for use with mdpiano installed (no module files), like the default model folder."""
    model, processor = model_and_processor
    return save_for_package(tmp_path_factory.mktemp("package"), model, processor)


@pytest.fixture(scope="module")
def pipe(model_and_processor):
    model, processor = model_and_processor
    return pipeline("audio-classification", model=model, processor=processor)


def assert_quadrant_scores(result):
    assert [set(r) for r in result] == [{"label", "score"}] * 4
    assert {r["label"] for r in result} == QUADRANTS
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1) < 1e-5 and all(np.isfinite(scores))


def test_model_object(pipe, rendered_clip):
    path, _ = rendered_clip
    assert isinstance(pipe, MDPianoAudioClassificationPipeline)
    assert_quadrant_scores(pipe(str(path)))


def test_every_input_form_gives_the_same_scores(pipe, rendered_clip, tmp_path):
    path, waveform = rendered_clip
    reference = pipe(str(path))
    assert pipe(waveform, sampling_rate=SR) == reference
    assert pipe({"array": waveform, "sampling_rate": SR}) == reference
    assert pipe({"raw": waveform, "sampling_rate": SR}) == reference
    assert pipe({"raw": waveform}, sampling_rate=SR) == reference  # a dict without its rate takes the call's
    assert pipe(waveform.tolist(), sampling_rate=SR) == reference  # samples in a list: one input, not a batch
    assert pipe(path.read_bytes()) == reference
    with open(path, "rb") as file:
        assert pipe(file) == reference
    assert pipe(io.BytesIO(path.read_bytes())) == reference
    with open(path) as text_file, pytest.raises(ValueError, match="open for binary reading"):
        pipe(text_file)
    import array
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".wav") as copy:  # a file object that is no io.IOBase
        copy.write(path.read_bytes())
        copy.seek(0)
        assert pipe(copy) == reference
    samples = pipe(array.array("f", waveform), sampling_rate=SR)  # a sequence of samples: one input, not a batch
    assert [r["label"] for r in samples] == [r["label"] for r in reference]
    pcm = np.round(waveform * 32767).astype(np.int16)  # typed samples keep their type: 16-bit PCM, scaled as such
    assert pipe(array.array("h", pcm.tobytes()), sampling_rate=SR) == pipe(pcm, sampling_rate=SR) == pipe(memoryview(pcm), sampling_rate=SR)
    from datasets import Audio, Dataset

    dataset = Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", Audio())
    assert pipe(dataset[0]["audio"]) == reference
    # Another rate: resampled once, to nearly the same scores.
    import librosa

    at_44k = librosa.resample(waveform, orig_sr=SR, target_sr=44100)
    other = {r["label"]: r["score"] for r in pipe((at_44k, 44100))}
    assert all(abs(other[r["label"]] - r["score"]) < 0.02 for r in reference)


def test_midi_input_skips_transcription(pipe, clip_midi, monkeypatch):
    from mdpiano import MDPianoTranscriber

    def refuse(*args, **kwargs):
        raise AssertionError("transcription was run")

    monkeypatch.setattr(MDPianoTranscriber, "__call__", refuse)
    result = pipe(str(clip_midi), return_timeline=True)
    assert_quadrant_scores(result["labels"])
    assert pipe({"path": str(clip_midi)}) == result["labels"]  # a `datasets`-style value naming the MIDI file
    from mdpiano import read_midi_notes

    notes = read_midi_notes(clip_midi)
    first = result["timeline"][0]
    assert first["num_notes"] == sum(n.onset < first["end"] for n in notes)


def test_midi_input_reads_its_rendering_and_its_notes(pipe, clip_midi):
    """A MIDI file's acoustic domain is its rendering (FluidSynth), its symbolic domain its notes: the first window
    scores as the model does on the processor's inputs of that rendering with those notes."""
    from mdpiano import read_midi_notes
    from mdpiano.rendering_mdpiano import render_midi

    first = pipe(str(clip_midi), return_timeline=True)["timeline"][0]
    rendering = render_midi(clip_midi, sampling_rate=SR)
    inputs = pipe.processor(audio=rendering, sampling_rate=SR, notes=read_midi_notes(clip_midi), return_tensors="pt")
    with torch.no_grad():
        expected = pipe.model(**inputs).logits.softmax(-1)[0].numpy()
    scores = {r["label"]: r["score"] for r in first["labels"]}
    np.testing.assert_allclose([scores[q] for q in ("Q1", "Q2", "Q3", "Q4")], expected, atol=1e-4)


def test_batch_size_does_not_change_scores(pipe, quadrant_clips):
    inputs = [str(path) for _, path, _ in quadrant_clips]
    one_by_one = pipe(inputs, batch_size=1)
    batched = pipe(inputs, batch_size=4)
    for a, b in zip(one_by_one, batched):
        assert [r["label"] for r in a] == [r["label"] for r in b]
        np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)


def test_three_minutes_are_windowed_and_aggregated(pipe, model_and_processor, quadrant_clips, tmp_path):
    long_audio = np.tile(np.concatenate([w for _, _, w in quadrant_clips]), 8)[: SR * 180]
    path = tmp_path / "three_minutes.wav"
    soundfile.write(path, long_audio, SR, subtype="FLOAT")
    result = pipe(str(path), return_timeline=True)
    window = pipe.feature_extractor.chunk_length_s
    timeline = result["timeline"]
    fps = pipe.feature_extractor.sampling_rate / pipe.feature_extractor.hop_length  # window starts snap to frames
    assert [w["start"] for w in timeline] == [round(s * fps) / fps for s in window_starts(180.0, window, window)]
    assert timeline[-1]["end"] == pytest.approx(180.0, abs=1 / fps)
    assert all(w["num_notes"] > 0 for w in timeline)
    # Overall scores are the mean of the window scores.
    mean = {q: np.mean([next(r["score"] for r in w["labels"] if r["label"] == q) for w in timeline]) for q in QUADRANTS}
    for entry in result["labels"]:
        assert entry["score"] == pytest.approx(mean[entry["label"]], abs=1e-6)
    assert pipe(str(path)) == result["labels"]
    fine = pipe(str(path), stride_length_s=window / 2, return_timeline=True)["timeline"]
    assert len(fine) == len(window_starts(180.0, window, window / 2)) > len(timeline)
    # Call arguments may also be given when the pipeline is made, as transformers allows.
    model, processor = model_and_processor
    preset = pipeline("audio-classification", model=model, processor=processor, stride_length_s=window / 2, return_timeline=True)
    assert preset(str(path))["timeline"] == fine


def test_window_starts_cover_the_recording():
    assert window_starts(4.0, 6.0, 3.0) == [0.0]
    assert window_starts(13.0, 6.0, 3.0) == [0.0, 3.0, 6.0, 7.0]
    assert window_starts(12.0, 6.0, 6.0) == [0.0, 6.0]
    # The last window is not the last regular one again: not by rounding, nor on the same frame.
    assert window_starts(10.3, 10.0, 0.3) == [0.0, 0.3]
    assert window_starts(12.0 + 1 / 22050, 6.0, 6.0, frames_per_second=22050 / 1024) == [0.0, 6.0]
    assert window_starts(12.0 + 1024 / 22050, 6.0, 6.0, frames_per_second=22050 / 1024) == pytest.approx([0.0, 6.0, 6.0 + 1024 / 22050])


def test_a_window_is_never_scored_twice(pipe, quadrant_clips):
    window = pipe.feature_extractor.chunk_length_s
    audio = np.tile(np.concatenate([w for _, _, w in quadrant_clips]), 4)[: int(SR * 2 * window) + 1]  # 2 windows + 1 sample
    result = pipe({"raw": audio, "sampling_rate": SR}, return_timeline=True)
    starts = [w["start"] for w in result["timeline"]]
    assert len(starts) == 2 and len(set(starts)) == 2


def test_collections_and_iterators_are_batches(pipe, quadrant_clips):
    from datasets import Audio, Dataset

    paths = [str(path) for _, path, _ in quadrant_clips[:2]]
    reference = pipe(paths)
    dataset = Dataset.from_dict({"audio": paths}).cast_column("audio", Audio())
    column = dataset["audio"]  # a datasets column: a sequence, not a list
    assert not isinstance(column, list)
    # whole datasets, whose rows hold other columns too: their audio column is read
    labelled = dataset.add_column("label", [0, 1]).add_column("clip_id", ["a", "b"])
    for inputs in (column, labelled, labelled.to_iterable_dataset(), iter(paths), map(str, paths)):
        results = pipe(inputs)
        results = results if isinstance(results, list) else list(results)  # iterators stream their results
        assert len(results) == 2
        for got, expected in zip(results, reference):
            assert [r["label"] for r in got] == [r["label"] for r in expected]
            np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-3)


def test_a_dataset_without_one_audio_column_is_refused_with_its_columns(pipe, quadrant_clips):
    from datasets import Audio, Dataset

    paths = [str(quadrant_clips[0][1])]
    with pytest.raises(ValueError, match=r"no audio column \(columns: \['midi_path', 'label'\]\).*dataset\['midi_path'\]"):
        pipe(Dataset.from_dict({"midi_path": paths, "label": [0]}))
    two = Dataset.from_dict({"left": paths, "right": paths}).cast_column("left", Audio()).cast_column("right", Audio())
    with pytest.raises(ValueError, match=r"several audio columns \(columns: \['left', 'right'\]\)"):
        pipe(two)
    # one `Audio` column, whatever its name, is the one read
    named = Dataset.from_dict({"recording": paths}).cast_column("recording", Audio())
    assert pipe(named)[0] == pipe(paths[0])


def test_an_input_too_short_for_the_model_is_named_in_a_batch(pipe, quadrant_clips, tmp_path):
    blip = tmp_path / "blip.wav"
    soundfile.write(blip, np.sin(np.linspace(0, 200, 2205)).astype(np.float32), SR)  # 0.1 s
    with pytest.raises(ValueError, match=f"The recording {blip} lasts 0.10 s, too short to analyse"):
        pipe([str(quadrant_clips[0][1]), str(blip)], batch_size=4)


def test_function_to_apply_is_softmax_only(pipe, rendered_clip):
    _, waveform = rendered_clip
    assert pipe(waveform, sampling_rate=SR, function_to_apply="softmax") == pipe(waveform, sampling_rate=SR)
    for other in ("sigmoid", "none"):
        with pytest.raises(ValueError, match="only 'softmax' is accepted"):
            pipe(waveform, sampling_rate=SR, function_to_apply=other)


def test_top_k(pipe, rendered_clip):
    _, waveform = rendered_clip
    top = pipe(waveform, sampling_rate=SR, top_k=1)
    assert len(top) == 1 and top[0] == pipe(waveform, sampling_rate=SR)[0]
    for bad in (0, 2.5, "2"):
        with pytest.raises(ValueError, match="`top_k` must be a whole number"):
            pipe(waveform, sampling_rate=SR, top_k=bad)


def test_saved_folder_with_the_package_installed(package_folder, hub_folder, pipe, rendered_clip):
    path, _ = rendered_clip
    reference = pipe(str(path))
    assert not list(package_folder.glob("*.py"))  # no module copies to go stale beside the package's own
    assert (hub_folder / "note_extraction.py").is_file()  # remote code needs the modules its modules import
    for folder in (package_folder, hub_folder):
        loaded = pipeline("audio-classification", model=str(folder))
        assert isinstance(loaded, MDPianoAudioClassificationPipeline)
        assert loaded(str(path)) == reference


def test_bfloat16_model(package_folder, pipe, rendered_clip):
    """`dtype=torch.bfloat16` loads bf16 weights; features follow the model's dtype, scores stay close."""
    path, _ = rendered_clip
    reference = {r["label"]: r["score"] for r in pipe(str(path))}
    half = pipeline("audio-classification", model=str(package_folder), dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    result = half(str(path))
    assert_quadrant_scores(result)
    assert all(abs(r["score"] - reference[r["label"]]) < 0.02 for r in result)


def test_hub_folder_in_a_fresh_process_without_the_package(hub_folder, pipe, rendered_clip, tmp_path):
    path, _ = rendered_clip
    expected = pipe(str(path))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["mdpiano"] = None  # the package must not be importable
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
        from transformers import (AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, AutoProcessor,
                                  AutoTokenizer, pipeline)
        folder = {str(hub_folder)!r}
        pipe = pipeline("audio-classification", model=folder, trust_remote_code=True)
        assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
        assert type(pipe.model).__module__.startswith("transformers_modules"), type(pipe.model).__module__
        loaded = {{auto.__name__: type(auto.from_pretrained(folder, trust_remote_code=True)).__name__
                  for auto in (AutoConfig, AutoModelForAudioClassification, AutoFeatureExtractor, AutoTokenizer,
                               AutoProcessor)}}
        print(json.dumps({{"scores": pipe({str(path)!r}), "loaded": loaded}}))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["loaded"] == {
        "AutoConfig": "MDPianoConfig",
        "AutoModelForAudioClassification": "MDPianoForAudioClassification",
        "AutoFeatureExtractor": "MDPianoFeatureExtractor",
        "AutoTokenizer": "MDPianoTokenizer",
        "AutoProcessor": "MDPianoProcessor",
    }
    assert [r["label"] for r in output["scores"]] == [r["label"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in output["scores"]], [r["score"] for r in expected], atol=1e-6)


def test_other_models_keep_the_stock_pipeline():
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, AudioClassificationPipeline

    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=128, num_mel_bins=64, num_labels=2)
    model = ASTForAudioClassification(config).eval()
    stock = pipeline("audio-classification", model=model, feature_extractor=ASTFeatureExtractor(max_length=128, num_mel_bins=64))
    assert type(stock) is AudioClassificationPipeline
    assert len(stock(np.zeros(16000, np.float32))) == 2
    with pytest.raises(ValueError, match="feature extractor"):
        pipeline("audio-classification", model=model)


def test_bare_array_needs_its_rate(pipe):
    with pytest.raises(ValueError, match="sampling rate"):
        pipe(np.zeros(SR, np.float32))
    with pytest.raises(ValueError, match="An audio dict with `array` needs its sampling rate: a `sampling_rate` key"):
        pipe({"raw": np.zeros(SR, np.float32)})
    with pytest.raises(ValueError, match="must be a whole number of Hz, got 22050.5"):
        pipe((np.zeros(SR, np.float32), 22050.5))
    with pytest.raises(ValueError, match="pass several inputs as a list"):
        pipe(("a.wav", "b.wav"))
    with pytest.raises(ValueError, match="No inputs"):
        pipe([])


@pytest.mark.parametrize("stride", [0.0, -1.0, float("inf"), float("nan"), "5", True, "window + 1"])
def test_stride_must_be_a_positive_number_of_seconds_up_to_the_window(pipe, stride):
    """A stride longer than the window would leave the audio between windows unanalysed."""
    window = pipe.feature_extractor.chunk_length_s
    stride = window + 1 if stride == "window + 1" else stride
    with pytest.raises(ValueError, match="stride_length_s. must be a number of seconds above 0 and at most the window"):
        pipe(np.zeros(SR, np.float32), sampling_rate=SR, stride_length_s=stride)


def test_stride_shorter_than_a_frame_is_refused(pipe):
    """Windows start on feature frames: a shorter stride started several on one frame and counted them twice."""
    frame_s = 1 / pipe.processor.feature_extractor.frames_per_second
    with pytest.raises(ValueError, match="shorter than one feature frame"):
        pipe(np.zeros(SR, np.float32), sampling_rate=SR, stride_length_s=frame_s / 2)


def test_model_outputs_and_the_pipeline_agree_through_the_calibration(model_and_processor, quadrant_clips):
    import mdpiano

    model, processor = model_and_processor
    _, _, waveform = quadrant_clips[0]  # 6 s: one window
    bias = [0.0, 0.3, -0.2, -0.5]
    model.config.quadrant_logit_bias = bias
    with pytest.raises(TypeError, match="return_tensors"):
        model(**processor(waveform, sampling_rate=SR))  # lists, not tensors
    try:
        with torch.no_grad():
            logits = model(**processor(waveform, sampling_rate=SR, return_tensors="pt")).logits
        expected = mdpiano.apply_quadrant_bias(logits.softmax(-1), bias)[0]
        scores = {r["label"]: r["score"] for r in pipeline("audio-classification", model=model, processor=processor)((waveform, SR))}
    finally:
        model.config.quadrant_logit_bias = None
    np.testing.assert_allclose([scores[q] for q in ("Q1", "Q2", "Q3", "Q4")], expected.numpy(), atol=1e-5)


def test_timeline_windows_are_calibrated_one_by_one(model_and_processor, rendered_clip):
    """With a decision calibration, every window of the timeline is weighted by it, as the overall scores are."""
    import mdpiano

    model, processor = model_and_processor
    _, waveform = rendered_clip  # 20 s: several windows
    classify = pipeline("audio-classification", model=model, processor=processor)
    raw = classify(waveform, sampling_rate=SR, return_timeline=True)["timeline"]
    bias = [0.0, 0.3, -0.2, -0.5]
    model.config.quadrant_logit_bias = bias
    try:
        calibrated = classify(waveform, sampling_rate=SR, return_timeline=True)["timeline"]
    finally:
        model.config.quadrant_logit_bias = None
    assert len(calibrated) == len(raw) > 1

    def probabilities(window):
        scores = {r["label"]: r["score"] for r in window["labels"]}
        return np.array([scores[q] for q in ("Q1", "Q2", "Q3", "Q4")])

    for before, after in zip(raw, calibrated):
        expected = mdpiano.apply_quadrant_bias(torch.tensor(probabilities(before))[None], bias)[0].numpy()
        np.testing.assert_allclose(probabilities(after), expected, atol=1e-4)


def test_notes_and_silence(pipe, rendered_clip, quadrant_clips):
    _, waveform = rendered_clip
    result = pipe(waveform, sampling_rate=SR, return_notes=True)
    assert_quadrant_scores(result["labels"])
    assert result["num_notes"] == len(result["notes"]) > 50
    assert result["notes"] == pipe.processor.transcriber(waveform, SR)
    silent = pipe(np.zeros(SR * 30, np.float32), sampling_rate=SR, return_timeline=True)
    assert silent["num_notes"] == 0 and all(w["num_notes"] == 0 for w in silent["timeline"])
    assert_quadrant_scores(silent["labels"])
    # Notes come back per input when several are batched.
    inputs = [str(path) for _, path, _ in quadrant_clips]
    batched = pipe(inputs, batch_size=3, return_notes=True)
    assert [len(r["notes"]) for r in batched] == [r["num_notes"] for r in pipe(inputs, return_notes=True)]


def test_silent_windows_do_not_vote(pipe, rendered_clip):
    """Silence around the music leaves the recording's scores to the windows with notes, in the pipeline and in the
    cached evaluation alike; a recording without notes averages all its windows."""
    from mdpiano.training import Clip, WindowBatcher, predict_clips

    _, waveform = rendered_clip
    music = waveform[: 12 * SR]  # two whole windows of the tiny config's 6 s
    silence = np.zeros(30 * SR, np.float32)
    padded = np.concatenate([silence[: 6 * SR], music, silence])
    result = pipe(padded, sampling_rate=SR, return_timeline=True, return_notes=True)
    timeline = result["timeline"]
    counts = [window["num_notes"] for window in timeline]
    assert counts[0] == 0 and counts[-1] == 0 and sum(n > 0 for n in counts) == 2

    def probabilities(labels):
        scores = {r["label"]: r["score"] for r in labels}
        return np.array([scores[q] for q in ("Q1", "Q2", "Q3", "Q4")])

    voted = np.mean([probabilities(w["labels"]) for w in timeline if w["num_notes"] > 0], axis=0)
    np.testing.assert_allclose(probabilities(result["labels"]), voted, atol=1e-5)
    assert not np.allclose(voted, np.mean([probabilities(w["labels"]) for w in timeline], axis=0), atol=1e-3)
    # the music's windows alone, give or take the transcription at the edges of the silence
    np.testing.assert_allclose(probabilities(result["labels"]), probabilities(pipe(music, sampling_rate=SR)), atol=0.05)

    processor = pipe.processor
    notes = np.array([[n.onset, n.offset, n.pitch, n.velocity] for n in result["notes"]], dtype=np.float32)
    clip = Clip("padded", 0, notes, processor.feature_extractor.extract(padded, normalize=False), len(padded) / SR)
    cached = predict_clips(pipe.model, WindowBatcher(processor, True), [clip])["probabilities"][0]
    np.testing.assert_allclose(cached, probabilities(result["labels"]), atol=1e-4)

    silent = pipe(silence, sampling_rate=SR, return_timeline=True)
    everything = np.mean([probabilities(w["labels"]) for w in silent["timeline"]], axis=0)
    np.testing.assert_allclose(probabilities(silent["labels"]), everything, atol=1e-5)


def test_processor_gives_the_inputs_of_the_first_window(pipe, rendered_clip):
    """`processor(audio=...)` then the model gives the pipeline's first window: the window is cut from the
    recording's features and transcription, not analysed as a recording of its own."""
    path, _ = rendered_clip
    processor, model = pipe.processor, pipe.model
    inputs = processor(audio=str(path), return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits.softmax(-1)[0]
    first = pipe(str(path), return_timeline=True)["timeline"][0]
    assert first["start"] == 0.0
    got = {r["label"]: r["score"] for r in first["labels"]}
    for index, label in model.config.id2label.items():
        assert got[label] == pytest.approx(float(expected[index]), abs=1e-6)


def test_long_inputs_are_cut_while_they_stream(pipe, quadrant_clips, monkeypatch):
    """Windows are cut as frames and notes become final (short note segments and audio blocks here, to see it in
    minutes): what is held does not grow with the input's length, and the scores equal those of the whole input's
    windows."""
    import functools

    from mdpiano import processing_mdpiano, windowing
    from mdpiano.notes_mdpiano import notes_to_array
    from mdpiano.transcription_mdpiano import BASIC_PITCH_SAMPLE_RATE, WINDOW_HOP, TranscriptionStream

    monkeypatch.setattr(TranscriptionStream, "SEGMENT_S", 20)
    monkeypatch.setattr(TranscriptionStream, "MARGIN_S", 5)
    block_s = 7.0
    monkeypatch.setattr(processing_mdpiano, "stream_audio", functools.partial(processing_mdpiano.stream_audio, block_seconds=block_s))
    original_cut, held = windowing.WindowCutter.cut, []

    def cut_and_record(cutter, start):
        held.append((len(cutter.features), cutter.first_frame + len(cutter.features)))
        return original_cut(cutter, start)

    monkeypatch.setattr(windowing.WindowCutter, "cut", cut_and_record)
    music = np.tile(np.concatenate([w for _, _, w in quadrant_clips]), 16).astype(np.float32)
    peaks = {}
    for seconds in (180, 360):
        held.clear()
        audio = music[: SR * seconds]
        timeline = pipe({"array": audio, "sampling_rate": SR}, return_timeline=True)["timeline"]
        total_frames = 1 + len(audio) // pipe.feature_extractor.hop_length
        assert held[0][1] < total_frames / 2  # the first window was cut long before the input ended
        peaks[seconds] = max(frames for frames, _ in held)
    # What is held is bounded by the streaming settings, not the input's length: features run ahead of the final notes
    # by at most a note segment and its margin, an audio block, the transcription batches in flight and the one
    # filling, plus the window being cut and the one before it (and 2 s of slack for window and frame alignment).
    transcriber = pipe.processor.transcriber
    batches = transcriber.max_runs_in_flight + 1
    batch_s = batches * transcriber.batch_size * WINDOW_HOP / BASIC_PITCH_SAMPLE_RATE
    bound_s = TranscriptionStream.SEGMENT_S + TranscriptionStream.MARGIN_S + block_s + batch_s + 2 * pipe.feature_extractor.chunk_length_s + 2
    frames_per_s = SR / pipe.feature_extractor.hop_length
    assert max(peaks.values()) <= bound_s * frames_per_s < SR * 180 / pipe.feature_extractor.hop_length / 2

    processor, model = pipe.processor, pipe.model
    features = processor.feature_extractor.extract(audio, normalize=False)
    notes = notes_to_array(processor.transcriber(audio, SR))
    for window in timeline:
        inputs = processor.window_inputs([(features, notes, window["start"])])
        with torch.no_grad():
            expected = model(**inputs).logits.softmax(-1)[0]
        got = {r["label"]: r["score"] for r in window["labels"]}
        for index, label in model.config.id2label.items():
            assert got[label] == pytest.approx(float(expected[index]), abs=1e-6)
        in_window = (notes[:, 0] >= window["start"]) & (notes[:, 0] < window["start"] + pipe.feature_extractor.chunk_length_s)
        assert window["num_notes"] == int(in_window.sum())


def test_a_model_without_notes_reports_none(tiny_config, quadrant_clips, tmp_path):
    """An acoustic-only model transcribes nothing: its note counts and notes are None, not an empty transcription,
    and the command line will not write empty transcriptions for it."""
    from mdpiano.cli import main

    config = MDPianoConfig(**{**tiny_config.to_diff_dict(), "domains": "acoustic"})
    torch.manual_seed(0)
    folder = save_for_package(tmp_path / "acoustic", MDPianoForAudioClassification(config).eval(), MDPianoProcessor.from_config(config))
    classify = pipeline("audio-classification", model=str(folder))
    result = classify(str(quadrant_clips[0][1]), return_timeline=True, return_notes=True)
    assert result["num_notes"] is None and result["notes"] is None
    assert [window["num_notes"] for window in result["timeline"]] == [None] * len(result["timeline"])
    with pytest.raises(SystemExit, match="reads no notes \\(domains='acoustic'\\), so nothing is transcribed"):
        main(["predict", str(quadrant_clips[0][1]), "--model", str(folder), "--midi-out", str(tmp_path / "midi")])


def test_window_note_counts_compare_float32_onsets_as_the_model_reads_them():
    """A float32 onset on a window's snapped start falls where `window_notes` puts it (float64 comparison)."""
    from mdpiano.notes_mdpiano import window_notes
    from mdpiano.windowing import notes_in_windows

    frames_per_second = SR / 512
    for start in (18.0, 30.0):
        snapped = round(start * frames_per_second) / frames_per_second
        for onset in (np.float32(snapped), np.float32(snapped + 6.0)):
            notes = np.array([[onset, onset + 0.5, 60, 80]], np.float32)
            assert notes_in_windows(notes, [start], 6.0, frames_per_second) == [len(window_notes(notes, snapped, 6.0))]
        at_the_end = np.array([[snapped + 6.0, snapped + 6.5, 60, 80]])  # belongs to the next window
        assert notes_in_windows(at_the_end, [start], 6.0, frames_per_second) == [len(window_notes(at_the_end, snapped, 6.0))] == [0]


def test_a_model_without_notes_averages_every_window(tiny_config, rendered_clip):
    """An acoustic-only model has no notes to tell silence by: every window votes, in the pipeline and the cached
    evaluation alike."""
    from mdpiano.training import Clip, WindowBatcher, predict_clips

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(MDPianoConfig(**{**tiny_config.to_dict(), "domains": "acoustic"})).eval()
    processor = MDPianoProcessor.from_config(tiny_config)
    _, waveform = rendered_clip
    padded = np.concatenate([waveform[: 12 * SR], np.zeros(18 * SR, np.float32)])
    result = pipeline("audio-classification", model=model, processor=processor)(padded, sampling_rate=SR, return_timeline=True)

    def probabilities(labels):
        scores = {r["label"]: r["score"] for r in labels}
        return np.array([scores[q] for q in ("Q1", "Q2", "Q3", "Q4")])

    assert [w["num_notes"] for w in result["timeline"]] == [None] * 5
    everything = np.mean([probabilities(w["labels"]) for w in result["timeline"]], axis=0)
    np.testing.assert_allclose(probabilities(result["labels"]), everything, atol=1e-5)
    notes = processor.transcriber(padded, SR)
    clip = Clip("padded", 0, np.array([[n.onset, n.offset, n.pitch, n.velocity] for n in notes], np.float32),
                processor.feature_extractor.extract(padded, normalize=False), len(padded) / SR)  # fmt: skip
    np.testing.assert_allclose(predict_clips(model, WindowBatcher(processor, True), [clip])["probabilities"][0], everything, atol=1e-4)

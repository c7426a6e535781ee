import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Audio, Dataset

from mdpiano import MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.caching import cache_dataset
from mdpiano.notes_mdpiano import window_notes
from mdpiano.training import TrainingArguments, WindowBatcher, load_clips, predict_clips, quadrant_metrics, train

SR = 22050


@pytest.fixture(scope="module")
def processor(tiny_config):
    return MDPianoProcessor.from_config(tiny_config)


@pytest.fixture(scope="module")
def quadrant_dataset(quadrant_clips):
    labels = {"Q1": 0, "Q2": 1, "Q3": 2, "Q4": 3}
    rows = {"clip_id": [p.stem for _, p, _ in quadrant_clips], "label": [labels[q] for q, _, _ in quadrant_clips],
            "audio": [str(p) for _, p, _ in quadrant_clips]}  # fmt: skip
    return Dataset.from_dict(rows).cast_column("audio", Audio())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def clips(quadrant_dataset, processor, cache_dir):
    return load_clips(cache_dataset(quadrant_dataset, processor, cache_dir, "quadrants"))


def test_cache_is_computed_once(quadrant_dataset, processor, cache_dir, clips):
    cached = cache_dataset(quadrant_dataset, processor, cache_dir, "quadrants")
    def stamps(dataset):
        return [Path(p).stat().st_mtime_ns for p in list(dataset["notes_path"]) + list(dataset["features_path"])]

    before = stamps(cached)
    assert stamps(cache_dataset(quadrant_dataset, processor, cache_dir, "quadrants")) == before
    assert [c.clip_id for c in clips] == list(quadrant_dataset["clip_id"])
    assert all(c.features.dtype == np.float16 and c.features.shape[1] == processor.feature_extractor.feature_size for c in clips)
    assert all(len(c.notes) > 0 and c.duration == pytest.approx(6.0, abs=0.01) for c in clips)
    # Other feature settings reuse the transcriptions and cache features of their own.
    other = MDPianoProcessor.from_config(MDPianoConfig(chunk_length_s=6.0, n_mels=24))
    moved = cache_dataset(quadrant_dataset, other, cache_dir, "quadrants")
    assert list(moved["notes_path"]) == list(cached["notes_path"])
    assert not set(moved["features_path"]) & set(cached["features_path"])


def test_a_damaged_entry_is_computed_again(quadrant_dataset, processor, cache_dir, clips):
    cached = cache_dataset(quadrant_dataset, processor, cache_dir, "quadrants")
    damaged, emptied = Path(cached["notes_path"][0]), Path(cached["features_path"][1])
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    emptied.write_bytes(b"")
    again = load_clips(cache_dataset(quadrant_dataset, processor, cache_dir, "quadrants"))
    np.testing.assert_array_equal(again[0].notes, clips[0].notes)
    np.testing.assert_array_equal(again[1].features, clips[1].features)


def test_a_bundled_transcription_model_transcribes_and_keys_the_cache(quadrant_dataset, processor, tmp_path, monkeypatch):
    """A processor carrying its own ONNX model (a Hub folder's) caches with it; a model other than basic-pitch's own
    gets transcriptions of its own."""
    import shutil

    from mdpiano import caching, transcription_mdpiano
    from mdpiano.caching import cache_folders

    bundled = tmp_path / "nmp.onnx"
    shutil.copy(transcription_mdpiano.default_model_path(), bundled)
    carrying = MDPianoProcessor.from_config(MDPianoConfig(chunk_length_s=6.0))
    carrying.transcription_model_path = str(bundled)
    assert cache_folders(tmp_path, carrying, "x")[0] == cache_folders(tmp_path, processor, "x")[0]  # the same model
    used = []
    monkeypatch.setattr(caching, "MDPianoTranscriber", lambda **settings: used.append(settings["model_path"]) or
                        transcription_mdpiano.MDPianoTranscriber(**settings))  # fmt: skip
    cache_dataset(quadrant_dataset.select([0]), carrying, tmp_path / "cache", "mine")
    assert used == [str(bundled)]
    monkeypatch.setattr(transcription_mdpiano, "_file_sha1", lambda path: "other" if path == str(bundled) else "default")
    assert cache_folders(tmp_path, carrying, "x")[0] != cache_folders(tmp_path, processor, "x")[0]


def test_each_transcription_version_has_caches_of_its_own(tmp_path, monkeypatch):
    """Notes change with the transcription's version (2 reaches the end of the recording): older caches are left."""
    from mdpiano import caching

    processor = MDPianoProcessor.from_config(MDPianoConfig())
    current = caching.cache_folders(tmp_path, processor, "x")
    monkeypatch.setattr(caching, "TRANSCRIPTION_VERSION", 1)
    older = caching.cache_folders(tmp_path, processor, "x")
    assert older[0] != current[0] and older[1] == current[1]  # the features do not depend on it


def test_each_level_floor_has_caches_of_its_own(tmp_path):
    """Quiet recordings transcribe and sound otherwise once raised to the floor: caches made with another floor, or
    none (as before the floor existed), are never reused."""
    from mdpiano.caching import cache_folders

    processor = MDPianoProcessor.from_config(MDPianoConfig())
    folders = set()
    for min_peak in (processor.min_peak, None, 0.1):
        processor.min_peak = min_peak
        notes_dir, features_dir = cache_folders(tmp_path, processor, "x")
        folders |= {notes_dir, features_dir}
    assert len(folders) == 6


def test_cache_follows_changed_audio_and_names_undecodable_files(quadrant_clips, processor, tmp_path):
    import shutil

    import soundfile

    from mdpiano.audio_mdpiano import AudioDecodeError

    def cached(paths, clip_ids=None):
        rows = {"clip_id": clip_ids or [p.stem for p in paths], "label": [0] * len(paths), "audio": [str(p) for p in paths]}
        return cache_dataset(Dataset.from_dict(rows).cast_column("audio", Audio()), processor, tmp_path / "cache", "mine")

    paths = [tmp_path / "mine" / f"clip{i}.wav" for i in range(3)]
    paths[0].parent.mkdir()
    for path, (_, source, _) in zip(paths, quadrant_clips):
        shutil.copy(source, path)
    first = load_clips(cached(paths))
    # The same name, other audio: re-rendered or edited after it was cached.
    shutil.copy(quadrant_clips[3][1], paths[0])
    again = load_clips(cached(paths))
    assert not np.array_equal(again[0].notes, first[0].notes) and np.array_equal(again[1].notes, first[1].notes)
    # Replaced by a copy older than the entries (cp -p, rsync -a, unzip): computed again all the same.
    shutil.copy2(quadrant_clips[1][1], paths[0])
    assert paths[0].stat().st_mtime_ns < Path(cached(paths)["notes_path"][1]).stat().st_mtime_ns
    assert np.array_equal(load_clips(cached(paths))[0].notes, first[1].notes)
    # An entry written before entries recorded their audio (features then in .npy) is computed again, once.
    entry = cached(paths)
    notes_path, features_path = Path(entry["notes_path"][2]), Path(entry["features_path"][2])
    np.savez(notes_path, notes=np.zeros((0, 4), np.float32), duration=6.0)
    features_path.unlink()
    np.save(features_path.with_suffix(".npy"), np.zeros((1, 1), np.float16))
    assert np.array_equal(load_clips(cached(paths))[2].notes, first[2].notes)
    assert not features_path.with_suffix(".npy").exists()
    # A clip id given another file of the same size and time (a CSV edited to point elsewhere): computed again.
    other = tmp_path / "mine" / "other.wav"
    soundfile.write(other, soundfile.read(paths[1])[0][::-1].copy(), processor.sampling_rate, subtype=soundfile.info(paths[1]).subtype)
    stat = paths[1].stat()
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert other.stat().st_size == stat.st_size and other.stat().st_mtime_ns == stat.st_mtime_ns
    remapped = load_clips(cached([paths[0], other, paths[2]], [p.stem for p in paths]))
    assert not np.array_equal(remapped[1].notes, first[1].notes)
    # Entries written before names were recorded are still checked by size and time, not all computed again.
    notes_path = Path(cached(paths)["notes_path"][1])
    with np.load(notes_path) as entry:
        legacy = {key: entry[key] for key in entry.files if key != "source_name"}
    np.savez(notes_path, **legacy)
    before = notes_path.stat().st_mtime_ns
    cached(paths)
    assert notes_path.stat().st_mtime_ns == before
    # The audio moved to another folder (times kept, as `cp -a` or `rsync -a` keep them): its entries still hold.
    moved = shutil.copytree(tmp_path / "mine", tmp_path / "moved")
    entries = [Path(p) for p in cached(paths)["notes_path"]]
    times = [p.stat().st_mtime_ns for p in entries]
    cached([moved / p.name for p in paths])
    assert [p.stat().st_mtime_ns for p in entries] == times
    # Files that cannot be decoded or hold no usable audio: each named with why, once the others are cached.
    bad = [tmp_path / "mine" / name for name in ("empty.wav", "junk.wav", "no-samples.wav", "nan.wav")]
    bad[0].write_bytes(b"")
    bad[1].write_bytes(b"not audio at all")
    soundfile.write(bad[2], np.zeros(0, np.float32), SR)
    soundfile.write(bad[3], np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioDecodeError) as raised:
        cached(paths + bad)
    message = str(raised.value)
    assert message.startswith(f"4 of 7 audio files in {tmp_path / 'mine'} could not be used"), message
    for expected in ("empty.wav is empty (0 bytes)", "Could not decode " + str(bad[1]), f"{bad[2]}: The audio is empty (0 samples)",
                     f"{bad[3]}: The audio contains NaN"):  # fmt: skip
        assert expected in message, message


def test_two_runs_caching_one_entry_at_once_both_leave_it_whole(tmp_path):
    import threading

    from mdpiano.caching import write_atomic

    entry = tmp_path / "clip.npy"
    halfway, other_done = threading.Event(), threading.Event()

    def slow_write(file):  # the first writer is overtaken halfway by a second one
        file.write(b"first-half ")
        file.flush()
        halfway.set()
        other_done.wait(10)
        file.write(b"first-rest")

    errors = []

    def first_writer():
        try:
            write_atomic(entry, slow_write)
        except Exception as error:
            errors.append(error)

    first = threading.Thread(target=first_writer)
    first.start()
    halfway.wait(10)
    write_atomic(entry, lambda file: file.write(b"second whole"))
    assert entry.read_bytes() == b"second whole"
    other_done.set()
    first.join()
    assert not errors and entry.read_bytes() == b"first-half first-rest"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npy"]  # no temporary file left behind


def test_clip_ids_too_long_for_a_file_name_get_entries_of_their_own(quadrant_clips, processor, tmp_path):
    """Ids built from a deep path (or given in a CSV's clip_id column) longer than a file name allows stopped the
    caching with `File name too long`; ids that fit keep their entries' names, so existing caches stay valid."""
    path = str(quadrant_clips[0][1])
    clip_ids = ["short", "x" * 300 + "a", "x" * 300 + "b", "\u00e9" * 200]  # the last: 400 bytes of UTF-8
    rows = {"clip_id": clip_ids, "label": [0] * 4, "audio": [path] * 4}
    dataset = Dataset.from_dict(rows).cast_column("audio", Audio())
    cached = cache_dataset(dataset, processor, tmp_path, "long")
    entries = [Path(p) for p in list(cached["notes_path"]) + list(cached["features_path"])]
    assert entries[0].name == "short.npz" and len(set(entries)) == 8
    assert all(len(entry.name.encode()) <= 255 and entry.is_file() for entry in entries)
    assert entries[1].name.startswith("x" * 200) and entries[3].name.startswith("\u00e9" * 100)
    times = [entry.stat().st_mtime_ns for entry in entries]
    again = cache_dataset(dataset, processor, tmp_path, "long")  # found again, not computed again
    assert [Path(p) for p in list(again["notes_path"]) + list(again["features_path"])] == entries
    assert [entry.stat().st_mtime_ns for entry in entries] == times
    assert [(clip.clip_id, clip.path) for clip in load_clips(again)] == [(clip_id, path) for clip_id in clip_ids]


def test_a_new_run_refuses_an_earlier_runs_folder(tmp_path, tiny_config, processor, clips):
    run_training(tiny_config, processor, clips, tmp_path, epochs=1)
    with pytest.raises(FileExistsError, match="holds an earlier run"):
        run_training(tiny_config, processor, clips, tmp_path, epochs=1)


def test_windows_match_the_processor(clips, quadrant_clips, processor):
    clip, (_, _, waveform) = clips[0], quadrant_clips[0]
    batcher = WindowBatcher(processor)
    hop = processor.feature_extractor.hop_length
    start = 43 * hop / SR  # on the frame grid (other starts snap to it)
    from_cache = batcher([(clip, start)])
    assert torch.equal(batcher([(clip, start + 0.4 * hop / SR)])["input_ids"], from_cache["input_ids"])
    window = waveform[43 * hop : 43 * hop + int(6.0 * SR)]
    from_audio = processor(audio=window, sampling_rate=SR, notes=window_notes(clip.notes, start, 6.0), return_tensors="pt")
    assert torch.equal(from_cache["input_ids"], from_audio["input_ids"])
    valid = int(from_audio["feature_attention_mask"].sum())
    assert int(from_cache["feature_attention_mask"].sum()) == valid
    # Away from the window edges, frames of the whole-clip STFT equal the window's own.
    inner = slice(3, valid - 3)
    torch.testing.assert_close(from_cache["input_features"][0, inner], from_audio["input_features"][0, inner], atol=1e-2, rtol=1e-3)


def test_predictions_average_windows(clips, processor, tiny_config):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    batcher = WindowBatcher(processor)
    predictions = predict_clips(model, batcher, clips, stride_s=2.0)
    assert predictions["probabilities"].shape == (4, 4) and predictions["arousal"].shape == (4,)
    np.testing.assert_allclose(predictions["probabilities"].sum(-1), 1, atol=1e-5)
    with torch.no_grad():
        single = model(**batcher([(clips[0], 0.0)])).logits.softmax(-1)[0].numpy()
    np.testing.assert_allclose(predictions["probabilities"][0], single, atol=1e-5)  # 6-s clip: one window
    metrics = quadrant_metrics(predictions, [c.label for c in clips])
    assert set(metrics) >= {"accuracy", "macro_f1", "arousal_accuracy", "valence_accuracy", "arousal_head_accuracy"}


def test_validation_scores_average_the_sets(clips, processor, tiny_config):
    """Each set is scored alone; the criterion is the mean of their figures, whatever their sizes, and the
    confusion matrix pools their clips."""
    from mdpiano.training import validation_scores

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    batcher = WindowBatcher(processor)
    means, per_set = validation_scores(model, batcher, {"all": clips, "first": clips[:1]})
    alone, _ = validation_scores(model, batcher, {"all": clips})
    assert per_set["all"] == alone  # one set: its own figures
    for key in ("accuracy", "macro_f1", "arousal_accuracy", "loss"):
        assert means[key] == pytest.approx((per_set["all"][key] + per_set["first"][key]) / 2)
    assert np.sum(means["confusion_matrix"]) == len(clips) + 1


def run_training(tiny_config, processor, clips, output_dir, epochs, resume=False, seed=0):
    torch.manual_seed(seed)
    processor.feature_extractor.fit_normalization_from_features(c.features for c in clips)
    model = MDPianoForAudioClassification(tiny_config)
    args = TrainingArguments(output_dir=str(output_dir), batch_size=4, learning_rate=1e-3, epochs=epochs, patience=5,
                             seed=seed, resume=resume)  # fmt: skip
    return train(model, processor, clips, clips, args)


def test_train_saves_the_best_model_and_resumes(tmp_path, tiny_config, processor, clips):
    best = run_training(tiny_config, processor, clips, tmp_path, epochs=2)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert best["epoch"] in (1, 2) and 0 <= best["accuracy"] <= 1
    loaded = MDPianoForAudioClassification.from_pretrained(tmp_path / "best")
    assert MDPianoProcessor.from_pretrained(tmp_path / "best").feature_extractor.feature_mean is not None
    assert loaded.config.to_diff_dict()["d_model"] == tiny_config.d_model
    run_training(tiny_config, processor, clips, tmp_path, epochs=3, resume=True)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]


def test_training_fits_the_clips(tmp_path, tiny_config, processor, clips):
    """`train` learns: on a handful of clips the training loss falls epoch after epoch."""
    run_training(tiny_config, processor, clips, tmp_path, epochs=6)
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and losses == sorted(losses, reverse=True) and losses[-1] < 0.9 * losses[0], losses


def test_resuming_a_run_that_stopped_early_trains_no_further(tmp_path, tiny_config, processor, clips, capsys):
    run_training(tiny_config, processor, clips, tmp_path, epochs=1)
    state_path = tmp_path / "checkpoint" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "stale_epochs": 5}))  # as an epoch without improvement at patience 5 leaves it
    best = run_training(tiny_config, processor, clips, tmp_path, epochs=3, resume=True)
    assert "stopped early after epoch 1" in capsys.readouterr().out
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1]
    assert best == state["best"]


def test_clips_too_short_for_the_model_and_fp16_on_a_cpu_are_refused_before_training(tmp_path, tiny_config, processor, clips, monkeypatch):
    """A clip shorter than the model's shortest input stopped training at the batch that drew it, naming no file."""
    import dataclasses

    short = dataclasses.replace(clips[1], clip_id="Q2/too_short", features=clips[1].features[:3], duration=0.05, path=None)
    model = MDPianoForAudioClassification(tiny_config)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), batch_size=4, epochs=1)
    with pytest.raises(ValueError, match=r"1 clip\(s\) are shorter than the model's shortest input \(0\.163 s\): Q2/too_short \(0\.050 s\)"):
        train(model, processor, [*clips, short], clips, args)
    with pytest.raises(ValueError, match=r"Q2/too_short"):  # validation clips too
        train(model, processor, clips, {"validation": [short]}, args)
    with pytest.raises(ValueError, match=r": /audio/too_short\.wav \(0\.050 s\)"):  # named by its file where known
        train(model, processor, clips, {"validation": [dataclasses.replace(short, path="/audio/too_short.wav")]}, args)
    with pytest.raises(ValueError, match="fp16 mixed precision needs a GPU"):
        train(model, processor, clips, clips, dataclasses.replace(args, mixed_precision="fp16"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # as `accelerate launch --mixed_precision fp16` sets it
    with pytest.raises(ValueError, match="fp16 mixed precision needs a GPU"):
        train(model, processor, clips, clips, args)
    assert not (tmp_path / "run").exists()
    # the shortest clip the model takes passes; one frame less does not
    from mdpiano.training import check_clip_lengths

    shortest = tiny_config.min_acoustic_frames
    check_clip_lengths(tiny_config, [[dataclasses.replace(short, features=clips[1].features[:shortest])]])
    with pytest.raises(ValueError, match="shorter than the model's shortest input"):
        check_clip_lengths(tiny_config, [[dataclasses.replace(short, features=clips[1].features[: shortest - 1])]])
    symbolic = MDPianoConfig(**{**tiny_config.to_dict(), "domains": "symbolic"})
    check_clip_lengths(symbolic, [[dataclasses.replace(short, features=None)]])  # reads no features: no minimum


def test_normalisation_leaves_out_digital_silence(clips, tiny_config):
    import dataclasses

    from mdpiano.training import clips_without_notes, fit_feature_normalization

    fe = MDPianoProcessor.from_config(tiny_config).feature_extractor
    silent = dataclasses.replace(clips[0], clip_id="silent", notes=np.zeros((0, 4), np.float32),
                                 features=np.full_like(clips[0].features, clips[0].features.min()))  # fmt: skip
    assert fit_feature_normalization(fe, [*clips, silent]) == ["silent"]
    with_silence = np.array(fe.feature_mean)
    fe.fit_normalization_from_features(clip.features for clip in clips)
    np.testing.assert_allclose(with_silence, fe.feature_mean)
    assert clips_without_notes([*clips, silent]) == ["silent"]
    assert fit_feature_normalization(fe, [silent]) == []  # nothing else to fit on: fitted on it after all


def test_same_seed_same_first_epoch_loss(tmp_path, tiny_config, processor, clips):
    losses = []
    for run in range(2):
        run_training(tiny_config, processor, clips, tmp_path / f"run{run}", epochs=1, seed=3)
        losses.append(json.loads((tmp_path / f"run{run}" / "log.jsonl").read_text())["train_loss"])
    assert losses[0] == losses[1]


def test_window_notes_of_float32_notes_are_never_negative():
    from mdpiano.notes_mdpiano import window_notes

    notes = np.array([[0.74303853, 0.9055782, 63, 68]], dtype=np.float32)
    start = 0.7430385487528345  # float32(onset) == start in float32, below it in float64
    shifted = window_notes(notes, start, 10.0)
    assert (shifted[:, 0] >= 0).all()


def test_length_grouped_batches(clips):
    from accelerate.data_loader import BatchSamplerShard

    from mdpiano.training import LengthGroupedBatches, RandomWindows

    many = clips * 10  # 40 windows
    windows = RandomWindows(many, 3.0, seed=0)
    sampler = LengthGroupedBatches(windows, batch_size=4, seed=0, group_batches=5)
    windows.epoch = 1
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    assert sorted(i for batch in batches for i in batch) == list(range(40))
    # A short batch comes last, where Accelerate's sharding over processes expects it, so no process skips a round.
    odd = RandomWindows(clips * 11 + clips[:1], 3.0, seed=0)  # 45 windows
    odd_sampler = LengthGroupedBatches(odd, batch_size=4, seed=0, group_batches=2)
    for epoch in range(1, 9):
        odd.epoch = epoch
        assert [len(batch) for batch in odd_sampler] == [4] * 11 + [1]
        shards = [BatchSamplerShard(odd_sampler, num_processes=2, process_index=rank) for rank in range(2)]
        assert {i for shard in shards for batch in shard for i in batch} == set(range(45))
    counts = windows.note_counts()
    spread = np.mean([np.ptp(counts[b]) for b in batches])
    assert spread <= np.mean([np.ptp(counts[np.random.default_rng(k).choice(40, 4, replace=False)]) for k in range(50)])
    assert list(sampler) == batches  # reproducible within an epoch
    windows.epoch = 2
    assert list(sampler) != batches


def test_augmented_windows_change_only_their_own_frames(clips, processor):
    from mdpiano.feature_augmentation import FeatureAugmentation
    from mdpiano.training import RandomWindows

    fe = processor.feature_extractor
    windows = RandomWindows(clips, fe.chunk_length_s, seed=0, augment=FeatureAugmentation(fe))
    windows.epoch = 1
    first_epoch = windows[0][0].features
    for index, original in enumerate(clips):
        clip, start = windows[index]
        first = int(round(start * fe.sampling_rate / fe.hop_length))
        changed = np.flatnonzero((clip.features != original.features).any(axis=1))
        assert len(changed) > 0 and first <= changed.min() and changed.max() < first + fe.nb_max_frames
        np.testing.assert_array_equal(clip.notes, original.notes)
        np.testing.assert_array_equal(windows[index][0].features, clip.features)  # same draw within an epoch
    windows.epoch = 2
    assert not np.array_equal(windows[0][0].features, first_epoch)


def test_resumed_arguments_compare_paths_by_what_they_name(tmp_path, monkeypatch):
    """A folder given relative at the start and absolute, with a slash, at the resume is the same folder; another
    folder, or another value of a setting, is refused."""
    from mdpiano.training import check_resumed_arguments

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "arguments.json").write_text(json.dumps({"data": "data", "seed": 0}))
    check_resumed_arguments(tmp_path / "run", {"data": f"{tmp_path / 'data'}/", "seed": 0}, ("data", "seed"), paths=("data",))
    with pytest.raises(ValueError, match="--data 'data' then"):
        check_resumed_arguments(tmp_path / "run", {"data": f"{tmp_path / 'data'}/", "seed": 0}, ("data", "seed"))
    with pytest.raises(ValueError, match="--data 'data' then, 'other' now"):
        check_resumed_arguments(tmp_path / "run", {"data": "other", "seed": 0}, ("data", "seed"), paths=("data",))
    with pytest.raises(ValueError, match="--seed 0 then, 1 now"):
        check_resumed_arguments(tmp_path / "run", {"data": "data", "seed": 1}, ("data", "seed"), paths=("data",))


def test_a_run_interrupted_while_saving_resumes_from_a_whole_checkpoint(tmp_path, tiny_config, processor, clips, monkeypatch):
    """Stopped after an epoch's weights were written but before its state: the resume trains that epoch once more
    from the last whole checkpoint, and the log holds every epoch once."""
    import accelerate

    run_training(tiny_config, processor, clips, tmp_path, epochs=1)
    save_state = accelerate.Accelerator.save_state

    def interrupted(self, *args, **kwargs):
        save_state(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(accelerate.Accelerator, "save_state", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_config, processor, clips, tmp_path, epochs=2, resume=True)
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["epoch"] == 1
    monkeypatch.setattr(accelerate.Accelerator, "save_state", save_state)
    run_training(tiny_config, processor, clips, tmp_path, epochs=2, resume=True)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]
    # Stopped between putting the old checkpoint aside and the new one in place: the old one comes back.
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.previous")
    run_training(tiny_config, processor, clips, tmp_path, epochs=3, resume=True)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert not (tmp_path / "checkpoint.previous").exists() and not (tmp_path / "checkpoint.partial").exists()

"""Masked-token pretraining data: random MIDI windows and their grouping by length."""

import numpy as np
import pytest
import torch
from transformers import DataCollatorForLanguageModeling

from mdpiano import MDPianoConfig, MDPianoProcessor
from mdpiano.pretraining import LengthGroupedWindows, RandomMidiWindows, resumable_checkpoint


@pytest.fixture(scope="module")
def processor():
    return MDPianoProcessor.from_config(MDPianoConfig())


@pytest.fixture(scope="module")
def corpus():
    """Pieces of very different note densities, so that windows differ widely in token count."""
    rng = np.random.default_rng(0)
    pieces = []
    for notes_per_second in (1, 4, 16, 32):
        onsets = np.sort(rng.uniform(0, 30, 30 * notes_per_second))
        pieces.append(np.stack([onsets, onsets + 0.3, rng.integers(21, 109, len(onsets)), rng.integers(30, 110, len(onsets))], 1))
    return pieces


def test_length_grouped_windows_regroup_the_same_windows(processor, corpus):
    batch_size, pool = 4, 8
    plain = iter(RandomMidiWindows(corpus, processor, seed=3, window_s=5.0))
    grouped = iter(LengthGroupedWindows(RandomMidiWindows(corpus, processor, seed=3, window_s=5.0), batch_size, pool))
    drawn = [tuple(next(plain)["input_ids"]) for _ in range(batch_size * pool)]
    regrouped = [tuple(next(grouped)["input_ids"]) for _ in range(batch_size * pool)]
    assert sorted(regrouped) == sorted(drawn)  # the same windows, none lost or repeated
    lengths = [[len(ids) for ids in regrouped[start : start + batch_size]] for start in range(0, len(regrouped), batch_size)]
    ranges = sorted((min(batch), max(batch)) for batch in lengths)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))  # slices of one sorted pool
    assert lengths != sorted(lengths)  # the batches themselves come in random order


def test_length_grouping_cuts_padding_with_dataloader_workers(processor, corpus):
    collator = DataCollatorForLanguageModeling(processor.tokenizer, mlm_probability=0.15)

    def real_token_share(dataset) -> float:
        loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=collator)
        batches = [batch for batch, _ in zip(loader, range(8))]
        return sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].numel() for b in batches)

    windows = RandomMidiWindows(corpus, processor, seed=0, window_s=5.0)
    plain, grouped = real_token_share(windows), real_token_share(LengthGroupedWindows(windows, batch_size=8, pool=16))
    print(f"real-token share: {plain:.2f} plain, {grouped:.2f} grouped")
    assert grouped > 0.8 and grouped > plain + 0.2


def test_length_grouping_rejects_empty_batches(processor, corpus):
    with pytest.raises(ValueError, match="must be at least 1"):
        LengthGroupedWindows(RandomMidiWindows(corpus, processor), batch_size=0)


def test_evaluation_masks_are_drawn_once(processor, corpus, tmp_path):
    """Two evaluations of the same weights give the same loss: the validation windows carry fixed masks."""
    from transformers import Trainer, TrainingArguments

    from mdpiano import MDPianoConfig, MDPianoSymbolicForMaskedLM
    from mdpiano.pretraining import MaskedLMCollator, fixed_windows, masked_evaluation_windows

    windows = fixed_windows(corpus, processor, count=6, seed=1, window_s=5.0)
    masked = masked_evaluation_windows(windows, processor.tokenizer, mlm_probability=0.15, seed=2)
    assert masked == masked_evaluation_windows(windows, processor.tokenizer, mlm_probability=0.15, seed=2)
    for window, item in zip(windows, masked):
        assert len(item["input_ids"]) == len(item["labels"]) == len(window["input_ids"])
        targets = [(label, original) for label, original in zip(item["labels"], window["input_ids"]) if label != -100]
        assert targets and all(label == original for label, original in targets)
    share = sum(label != -100 for item in masked for label in item["labels"]) / sum(len(item["labels"]) for item in masked)
    assert 0.05 < share < 0.3  # about mlm_probability of the tokens

    collator = MaskedLMCollator(processor.tokenizer, mlm_probability=0.15)
    batch = collator(masked[:3])
    length = max(len(item["input_ids"]) for item in masked[:3])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, length)
    shortest = min(range(3), key=lambda i: len(masked[i]["input_ids"]))
    tail = slice(len(masked[shortest]["input_ids"]), None)
    assert (batch["labels"][shortest, tail] == -100).all() and (batch["attention_mask"][shortest, tail] == 0).all()
    assert "labels" in collator([{"input_ids": windows[0]["input_ids"]}])  # training windows are masked afresh

    torch.manual_seed(0)
    config = MDPianoConfig(d_model=32, num_encoder_layers=1, num_attention_heads=2, intermediate_size=64)
    trainer = Trainer(model=MDPianoSymbolicForMaskedLM(config), data_collator=collator, eval_dataset=masked,
                      args=TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[],
                                             dataloader_pin_memory=False))  # fmt: skip
    assert trainer.evaluate()["eval_loss"] == trainer.evaluate()["eval_loss"]


def test_midi_cache_follows_edited_files(tmp_path):
    import os

    import pretty_midi

    from mdpiano.pretraining import load_corpus

    def write(path, pitches):
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(program=0)
        piano.notes = [pretty_midi.Note(velocity=80, pitch=p, start=i * 0.5, end=i * 0.5 + 0.4) for i, p in enumerate(pitches)]
        midi.instruments.append(piano)
        midi.write(str(path))

    path = tmp_path / "piece.mid"
    write(path, [60, 62])
    first, _ = load_corpus([path], tmp_path / "cache")
    assert first[0][:, 2].tolist() == [60, 62]
    assert load_corpus([path], tmp_path / "cache")[0][0][:, 2].tolist() == [60, 62]  # read from the cache
    write(path, [70, 71, 72])
    later = os.stat(path).st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    assert load_corpus([path], tmp_path / "cache")[0][0][:, 2].tolist() == [70, 71, 72]
    # Replaced by an older copy (`cp -p`, `rsync -a`): its entry is newer than the file, and stale all the same.
    write(path, [40, 41])
    earlier = later - 10**10
    os.utime(path, ns=(earlier, earlier))
    assert load_corpus([path], tmp_path / "cache")[0][0][:, 2].tolist() == [40, 41]
    # An entry cut short (a full disk, a copy interrupted) is parsed again, not a crash.
    (entry,) = (tmp_path / "cache").glob("*/*.npz")
    entry.write_bytes(entry.read_bytes()[:40])
    assert load_corpus([path], tmp_path / "cache")[0][0][:, 2].tolist() == [40, 41]


def test_corpus_cache_is_read_again_after_the_midi_reader_changes(tmp_path, monkeypatch):
    """Notes cached by an older reader (say, before the pedal acted across tracks) are not reused by a newer one."""
    import numpy as np
    import pretty_midi

    from mdpiano import pretraining

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.4)]
    midi.instruments.append(piano)
    path = tmp_path / "piece.mid"
    midi.write(str(path))
    pretraining.load_corpus([path], tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("*/*.npz")
    with np.load(entry) as cached:  # what an older reader would have cached, for the same file
        np.savez(entry, **{**cached, "notes": np.array([[0.0, 0.4, 50, 80]], dtype=np.float32)})
    assert pretraining.load_corpus([path], tmp_path / "cache")[0][0][:, 2].tolist() == [50]
    monkeypatch.setattr(pretraining, "MIDI_READER_VERSION", pretraining.MIDI_READER_VERSION + 1)
    assert pretraining.load_corpus([path], tmp_path / "cache")[0][0][:, 2].tolist() == [60]


def test_corpus_read_with_and_without_the_sustain_pedal(tmp_path):
    """The two readings are cached apart: one never answers for the other."""
    import pretty_midi

    from mdpiano.pretraining import load_corpus

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.2)]
    piano.control_changes = [pretty_midi.ControlChange(64, 127, 0.1), pretty_midi.ControlChange(64, 0, 1.5)]
    piano.notes.append(pretty_midi.Note(velocity=80, pitch=64, start=1.8, end=2.0))  # the file lasts past the lift
    midi.instruments.append(piano)
    path = tmp_path / "pedalled.mid"
    midi.write(str(path))
    for _ in range(2):  # parsed, then read from each cache
        held, _ = load_corpus([path], tmp_path / "cache")
        released, _ = load_corpus([path], tmp_path / "cache", sustain_pedal=False)
        assert held[0][0, 1] == pytest.approx(1.5, abs=0.01) and released[0][0, 1] == pytest.approx(0.2, abs=0.01)


def test_resumable_checkpoint_sets_aside_a_second_incomplete_save_of_the_same_step(tmp_path):
    for step in (1, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-2.incomplete").mkdir()  # the first crash while saving step 2
    (tmp_path / "checkpoint-2.incomplete" / "model.safetensors").write_bytes(b"")
    checkpoint, step, set_aside = resumable_checkpoint(tmp_path)
    assert (checkpoint, step) == (tmp_path / "checkpoint-1", 1)
    assert set_aside == [tmp_path / "checkpoint-2.incomplete-2"] and set_aside[0].is_dir()
    assert (tmp_path / "checkpoint-2.incomplete" / "model.safetensors").is_file()

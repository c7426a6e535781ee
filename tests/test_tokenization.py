import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from mdpiano import MDPianoTokenizer, Note, read_midi_notes
from mdpiano.notes_mdpiano import notes_to_array
from mdpiano.tokenization_mdpiano import release_restruck_keys


@pytest.fixture(scope="module")
def tokenizer():
    return MDPianoTokenizer()


def canonical_notes(tokenizer, notes):
    """The notes a piano could play: a key struck again while sounding is released at the new onset."""
    array = notes_to_array(notes)
    grid = np.rint(array[:, :2] / tokenizer.time_resolution_s).astype(np.int64)
    offsets = release_restruck_keys(grid[:, 0], np.maximum(grid[:, 1], grid[:, 0]), array[:, 2].astype(np.int64))
    array[:, 1] = np.where(offsets < grid[:, 1], offsets * tokenizer.time_resolution_s, array[:, 1])
    return array


def assert_round_trip(tokenizer, notes, decoded):
    """Every note comes back within half a time step (onset, offset) and half a velocity bin."""
    original, decoded = canonical_notes(tokenizer, notes), notes_to_array(decoded)
    assert original.shape == decoded.shape
    if len(original) == 0:
        return
    half_step = tokenizer.time_resolution_s / 2 + 1e-9
    half_bin = np.max(np.diff(tokenizer.velocity_values)) / 2
    # Compare note by note after the same canonical order (quantised onset, pitch, quantised offset).
    def canonical(array):
        grid = np.rint(array[:, :2] / tokenizer.time_resolution_s)
        velocity_bin = np.abs(array[:, 3:4] - tokenizer.velocity_values[None, :]).argmin(axis=1)
        return array[np.lexsort((velocity_bin, grid[:, 1], array[:, 2], grid[:, 0]))]

    original, decoded = canonical(original), canonical(decoded)
    np.testing.assert_array_equal(original[:, 2], decoded[:, 2])
    assert np.abs(original[:, 0] - decoded[:, 0]).max() <= half_step
    assert np.abs(original[:, 1] - decoded[:, 1]).max() <= half_step
    assert np.abs(original[:, 3] - decoded[:, 3]).max() <= half_bin


def test_round_trip_on_emopia_midi(tokenizer, emopia_midis):
    files = emopia_midis[:: max(1, len(emopia_midis) // 60)][:60]
    assert len(files) >= 50
    total = 0
    for path in files:
        notes = read_midi_notes(path)
        ids = tokenizer.notes_to_ids(notes)
        assert_round_trip(tokenizer, notes, tokenizer.ids_to_notes(ids))
        total += len(notes)
    print(f"round trip: {len(files)} EMOPIA files, {total} notes")


def test_token_strings_are_readable(tokenizer):
    notes = [Note(0.0, 0.5, 60, 81), Note(0.0, 1.0, 64, 70), Note(1.5, 2.0, 67, 100)]
    assert tokenizer.notes_to_tokens(notes) == [
        "Note-On_60", "Harmonic_2", "Velocity_82",
        "Note-On_64", "Harmonic_2", "Velocity_70",
        "Time-Shift_500", "Note-Off_60",
        "Time-Shift_500", "Note-Off_64",
        "Time-Shift_500", "Note-On_67", "Harmonic_1", "Velocity_98",
        "Time-Shift_500", "Note-Off_67",
    ]  # fmt: skip


def test_harmonic_counts_notes_held_from_earlier(tokenizer):
    # A held bass note, then a chord of three above it: each chord note sounds with 4 notes.
    notes = [Note(0.0, 4.0, 36, 60), Note(1.0, 2.0, 60, 60), Note(1.0, 2.0, 64, 60), Note(1.0, 2.0, 67, 60)]
    tokens = tokenizer.notes_to_tokens(notes)
    harmonics = [t for t in tokens if t.startswith("Harmonic")]
    assert harmonics == ["Harmonic_1", "Harmonic_4", "Harmonic_4", "Harmonic_4"]
    # A note starting exactly when another ends does not count it: the offset comes first.
    assert tokenizer.notes_to_tokens([Note(0, 1, 60, 60), Note(1, 2, 62, 60)])[3:7] == [
        "Time-Shift_1000", "Note-Off_60", "Note-On_62", "Harmonic_1",
    ]  # fmt: skip


def test_harmonic_is_clipped(tokenizer):
    chord = [Note(0.0, 1.0, p, 64) for p in range(40, 40 + tokenizer.max_harmonic + 5)]
    harmonics = {t for t in tokenizer.notes_to_tokens(chord) if t.startswith("Harmonic")}
    assert harmonics == {f"Harmonic_{tokenizer.max_harmonic}"}


def test_long_gaps_use_several_time_shifts(tokenizer):
    tokens = tokenizer.notes_to_tokens([Note(2.35, 2.4, 60, 64)])
    assert tokens[:3] == ["Time-Shift_1000", "Time-Shift_1000", "Time-Shift_350"]
    assert_round_trip(tokenizer, [Note(2.35, 2.4, 60, 64)], tokenizer.ids_to_notes(tokenizer.notes_to_ids([Note(2.35, 2.4, 60, 64)])))


def test_zero_length_and_repeated_notes(tokenizer):
    notes = [
        Note(0.5, 0.5, 60, 64),  # zero length
        Note(0.5, 0.502, 62, 64),  # shorter than the grid
        Note(1.0, 2.0, 65, 64),  # re-struck: the second starts while the first still sounds
        Note(1.5, 2.5, 65, 90),
        Note(5.0, 9.0, 40, 64),  # nested: a short repeat inside a long note of the same key
        Note(6.0, 7.0, 40, 80),
        Note(3.0, 3.5, 70, 30),
        Note(3.5, 4.0, 70, 30),  # the same key again, exactly at the previous offset
    ]
    decoded = tokenizer.ids_to_notes(tokenizer.notes_to_ids(notes))
    assert_round_trip(tokenizer, notes, decoded)
    by_key = {(n.pitch, round(n.onset, 2)): round(n.offset, 2) for n in decoded}
    assert by_key[(65, 1.0)] == 1.5 and by_key[(65, 1.5)] == 2.5  # released at the re-strike
    assert by_key[(40, 5.0)] == 6.0 and by_key[(40, 6.0)] == 7.0


def test_a_chord_with_a_zero_length_note_has_one_harmonic_value(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.notes_to_ids([Note(1.0, 1.0, 60, 64), Note(1.0, 2.0, 64, 64)]).tolist())
    harmonics = [token for token in tokens if token.startswith("Harmonic_")]
    assert harmonics == ["Harmonic_2", "Harmonic_2"]


def test_notes_struck_together_on_one_key_keep_the_longest_whatever_their_order(tokenizer):
    for notes in ([Note(0.0, 1.0, 60, 64), Note(0.0, 0.8, 60, 64)], [Note(0.0, 0.8, 60, 64), Note(0.0, 1.0, 60, 64)]):
        decoded = tokenizer.ids_to_notes(tokenizer.notes_to_ids(notes))
        assert max(round(note.offset, 2) for note in decoded) == 1.0


def test_empty_notes(tokenizer):
    assert tokenizer.notes_to_ids([]).shape == (0,)
    encoded = tokenizer.encode_notes([])
    assert encoded["input_ids"] == [tokenizer.bos_token_id, tokenizer.eos_token_id]
    assert tokenizer.decode_notes(encoded["input_ids"]) == []


def test_special_tokens(tokenizer):
    assert [tokenizer.pad_token, tokenizer.bos_token, tokenizer.cls_token, tokenizer.eos_token, tokenizer.mask_token, tokenizer.unk_token] == [
        "<pad>", "<s>", "<s>", "</s>", "<mask>", "<unk>",
    ]  # fmt: skip
    assert tokenizer.pad_token_id == 0
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id, tokenizer.unk_token_id}) == 5
    assert tokenizer.convert_tokens_to_ids("Not-A-Token") == tokenizer.unk_token_id


def test_encode_batch_pads_and_masks(tokenizer, clip_notes):
    batch = tokenizer.encode_notes([clip_notes[:10], clip_notes[:3], []], padding="longest", return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 3 and ids.shape == mask.shape
    lengths = mask.sum(dim=1).tolist()
    assert lengths[0] > lengths[1] > lengths[2] == 2
    assert (ids[mask == 0] == tokenizer.pad_token_id).all()
    single = tokenizer.encode_notes(clip_notes[:3], return_tensors="pt")
    assert single["input_ids"].shape == (1, lengths[1])
    assert ids[1, : lengths[1]].tolist() == single["input_ids"][0].tolist()


def test_truncation_keeps_the_beginning(tokenizer, clip_notes):
    full = tokenizer.encode_notes(clip_notes, truncation=False)["input_ids"]
    cut = tokenizer.encode_notes(clip_notes, max_length=50)["input_ids"]
    assert len(full) > 50 and len(cut) == 50
    assert cut[:49] == full[:49] and cut[-1] == tokenizer.eos_token_id
    # A cut sequence still decodes: notes left sounding end at the last time reached.
    decoded = tokenizer.decode_notes(cut)
    assert 0 < len(decoded) < len(clip_notes)
    assert all(n.offset >= n.onset for n in decoded)


def test_truncation_warns_only_when_notes_are_left_out(tokenizer, clip_notes):
    import logging as std_logging

    from transformers.testing_utils import CaptureLogger

    from mdpiano import tokenization_mdpiano

    length = len(tokenizer.encode_notes(clip_notes, truncation=False)["input_ids"])
    # the processor's windows do not warn: their limit is the model's
    for max_length, warned, warn in ((length, False, True), (length - 1, True, True), (length - 1, False, False)):
        std_logging.Logger.warning_once.cache_clear()  # each case may warn anew
        with CaptureLogger(tokenization_mdpiano.logger) as captured:
            tokenizer.encode_notes(clip_notes, max_length=max_length, warn_truncation=warn)
        assert ("its later notes, or their ends, are left out" in captured.out) == warned, (max_length, captured.out)


def test_truncation_builds_only_the_kept_tokens(tokenizer, clip_notes, monkeypatch):
    """A gap of years (a MIDI file at one tick a beat and a slow tempo can hold one) is spelled out in one Time-Shift
    a second: a truncated sequence must not build them all first."""
    import tracemalloc

    for max_length in (3, 50, 51, 52, 200):
        full = tokenizer.encode_notes(clip_notes, truncation=False)["input_ids"]
        cut = tokenizer.encode_notes(clip_notes, max_length=max_length)["input_ids"]
        assert cut[:-1] == full[: max_length - 1] and len(cut) == min(max_length, len(full))
    far = [Note(0.0, 1.0, 60, 80), Note(1e7, 1e7 + 1, 62, 80)]  # 116 days later: 1e7 Time-Shift tokens, 80 MB
    tracemalloc.start()
    ids = tokenizer.encode_notes(far, max_length=16)["input_ids"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1e6
    shift = tokenizer.convert_tokens_to_ids(f"Time-Shift_{tokenizer.time_shift_resolution_ms * tokenizer.max_shift_steps}")
    assert len(ids) == 16 and ids[-5:-1] == [shift] * 4


def test_default_truncation_is_model_max_length(clip_notes):
    tokenizer = MDPianoTokenizer(model_max_length=64)
    assert len(tokenizer.encode_notes(clip_notes)["input_ids"]) == 64


def test_encode_midi_equals_encode_notes(tokenizer, clip_midi):
    assert tokenizer.encode_midi(clip_midi)["input_ids"] == tokenizer.encode_notes(read_midi_notes(clip_midi))["input_ids"]
    assert len(tokenizer.encode_midi([clip_midi, clip_midi])["input_ids"]) == 2
    # An encoding decodes as its input_ids do, one file or a batch.
    encoding = tokenizer.encode_midi(clip_midi)
    assert tokenizer.decode_notes(encoding) == tokenizer.decode_notes(encoding["input_ids"])
    batch = tokenizer.encode_midi([clip_midi, clip_midi])
    assert tokenizer.decode_notes(batch) == [tokenizer.decode_notes(encoding["input_ids"])] * 2


def test_text_interface_matches_notes(tokenizer, clip_notes):
    text = " ".join(tokenizer.notes_to_tokens(clip_notes[:5]))
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == tokenizer.notes_to_ids(clip_notes[:5]).tolist()
    assert tokenizer.decode(tokenizer.notes_to_ids(clip_notes[:5])) == text


def test_save_and_load(tmp_path, clip_notes):
    tokenizer = MDPianoTokenizer(time_shift_resolution_ms=20, velocity_bins=16, max_harmonic=8, model_max_length=512)
    tokenizer.save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert vocab["Time-Shift_20"] == tokenizer.convert_tokens_to_ids("Time-Shift_20")
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, MDPianoTokenizer)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.model_max_length == 512 and loaded.time_shift_resolution_ms == 20 and loaded.max_harmonic == 8
    assert loaded.encode_notes(clip_notes)["input_ids"] == tokenizer.encode_notes(clip_notes)["input_ids"]


def test_invalid_notes_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="onset <= offset"):
        tokenizer.notes_to_ids([Note(1.0, 0.5, 60, 64)])
    with pytest.raises(ValueError, match="MIDI range"):
        tokenizer.notes_to_ids([Note(0.0, 0.5, 130, 64)])
    with pytest.raises(ValueError, match="NaN"):
        tokenizer.notes_to_ids([(0.0, float("nan"), 60, 64)])
    with pytest.raises(ValueError, match="shape"):
        tokenizer.notes_to_ids(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"got shape \(1, 3\)"):  # the input as given, not one of its rows
        tokenizer.encode_notes([(0.0, 1.0, 60)])
    with pytest.raises(ValueError, match="whole MIDI note numbers"):
        tokenizer.notes_to_ids([(0.0, 0.5, 60.9, 80)])  # was floored to 60 without a word
    with pytest.raises(ValueError, match=r"one note.*pass a list, \[note\]"):
        tokenizer.encode_notes(Note(0.0, 1.0, 60, 80))
    with pytest.raises(ValueError, match="read a MIDI file with `read_midi_notes"):
        tokenizer.encode_notes("piece.mid")


def test_sequences_of_numpy_or_torch_scalars_decode(tokenizer):
    import torch

    notes = [Note(0.0, 1.0, 60, 78), Note(0.5, 1.5, 64, 78)]
    ids = tokenizer.notes_to_ids(notes)
    for sequence in (list(ids), list(torch.tensor(ids)), ids.tolist()):
        assert tokenizer.decode_notes(sequence) == notes
    assert tokenizer.decode_notes([torch.tensor(ids), torch.tensor(ids)]) == [notes, notes]


def test_unreadable_midi_is_reported(tmp_path, tokenizer):
    from mdpiano import MidiReadError

    bad = tmp_path / "bad.mid"
    bad.write_text("not a midi file")
    with pytest.raises(MidiReadError, match="bad.mid"):
        tokenizer.encode_midi(bad)
    with pytest.raises(FileNotFoundError):
        tokenizer.encode_midi(tmp_path / "missing.mid")

import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mdpiano import AudioDecodeError, load_audio

SR = 22050


@pytest.fixture(scope="module")
def tone():
    t = np.arange(SR) / SR
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_float_mono_at_the_working_rate_is_unchanged(tone):
    np.testing.assert_array_equal(load_audio(tone, SR, SR), tone)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 96000])
def test_any_rate_is_resampled(rate):
    t = np.arange(rate) / rate
    audio = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = load_audio(audio, rate, SR)
    assert out.dtype == np.float32 and abs(len(out) - SR) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SR / len(out) - 440) < 2


@pytest.mark.parametrize("channels", [1, 2])
def test_streamed_blocks_equal_one_resampling_of_the_whole(tmp_path, channels):
    """A file decoded in blocks and resampled chunk by chunk gives exactly soxr's one-shot resampling."""
    import soxr

    from mdpiano.audio_mdpiano import stream_audio

    rate = 44100
    audio = np.random.default_rng(channels).uniform(-0.5, 0.5, (int(3.3 * rate), channels)).astype(np.float32)
    path = tmp_path / "noise.wav"
    soundfile.write(path, audio, rate, subtype="FLOAT")
    stream = stream_audio(str(path), None, SR, block_seconds=0.7)
    assert stream.source_sampling_rate == rate  # the file's own rate, known before any block is read
    blocks = list(stream)
    assert len(blocks) >= 5
    expected = soxr.resample(audio.mean(axis=1), rate, SR, quality="HQ")
    np.testing.assert_array_equal(np.concatenate(blocks), expected)


def test_the_source_rate_of_every_input_form_is_known(tmp_path, tone):
    from mdpiano.audio_mdpiano import source_sampling_rate, stream_audio

    path = tmp_path / "tone.flac"
    soundfile.write(path, tone, SR)
    assert source_sampling_rate(path) == SR
    for audio, rate in (((tone, 16000), None), (tone, 8000), ({"array": tone, "sampling_rate": 11025}, None),
                        (path.read_bytes(), None)):  # fmt: skip
        expected = rate or (SR if isinstance(audio, bytes) else audio[1] if isinstance(audio, tuple) else audio["sampling_rate"])
        assert stream_audio(audio, rate, SR).source_sampling_rate == expected
    with pytest.raises(FileNotFoundError):
        source_sampling_rate(tmp_path / "missing.wav")
    # `datasets`' Audio(sampling_rate=...) decodes through a resampling torchcodec decoder: the file's rate counts
    from datasets import Audio, Dataset

    low = tmp_path / "low.wav"
    soundfile.write(low, tone[:16000], 16000)
    decoder = Dataset.from_dict({"audio": [str(low)]}).cast_column("audio", Audio(sampling_rate=SR))[0]["audio"]
    stream = stream_audio(decoder, None, SR)
    assert stream.source_sampling_rate == 16000
    # an iterator, as the generator it replaced: next() and close() work
    assert next(stream).dtype == np.float32
    stream.close()
    assert list(stream) == []


@pytest.mark.parametrize("dtype, scale, step", [(np.int16, 32767, 2**-15), (np.int32, 2**31 - 1, 2**-31), (np.uint8, 127, 2**-7)])
def test_integer_pcm_is_scaled(tone, dtype, scale, step):
    pcm = np.round(tone * scale + (128 if dtype == np.uint8 else 0)).astype(dtype)
    np.testing.assert_allclose(load_audio(pcm, SR, SR), tone, atol=2 * step + 1e-6)


def test_pcm_full_scale_is_exact():
    from mdpiano import audio_mdpiano

    np.testing.assert_array_equal(audio_mdpiano.mono_float32(np.array([-32768, 0, 16384], np.int16)), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(audio_mdpiano.mono_float32(np.array([0, 128, 192], np.uint8)), [-1.0, 0.0, 0.5])
    stereo = np.array([[-32768, 0], [16384, 16384], [0, 0]], np.int16)  # (samples, channels)
    np.testing.assert_array_equal(audio_mdpiano.mono_float32(stereo), [-0.5, 0.5, 0.0])


def test_stereo_pcm_is_mixed_down_without_float_copies_of_its_channels(tone):
    """Stereo 16-bit PCM takes about one mono float32 array of working memory, not float64 copies of both channels."""
    import tracemalloc

    from mdpiano import audio_mdpiano

    pcm = np.round(np.stack([np.tile(tone, 20)] * 2, axis=1) * 32767).astype(np.int16)  # (samples, 2)
    tracemalloc.start()
    try:
        mono = audio_mdpiano.mono_float32(pcm)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(mono, np.tile(tone, 20), atol=2**-14)
    assert peak < 1.25 * mono.nbytes, (peak, mono.nbytes)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_downmixed(tone, layout, channels):
    stacked = np.stack([tone] * channels)
    out = load_audio(stacked if layout == "channels_first" else stacked.T, SR, SR)
    np.testing.assert_allclose(out, tone, atol=1e-6)


def test_tensor_tuple_and_dict_inputs(tone):
    np.testing.assert_array_equal(load_audio(torch.from_numpy(tone), SR, SR), tone)
    np.testing.assert_allclose(load_audio(torch.from_numpy(tone).bfloat16(), SR, SR), tone, atol=4e-3)
    np.testing.assert_array_equal(load_audio((tone, SR), target_sampling_rate=SR), tone)
    np.testing.assert_array_equal(load_audio({"array": tone, "sampling_rate": SR}, target_sampling_rate=SR), tone)
    np.testing.assert_array_equal(load_audio({"raw": tone, "sampling_rate": SR}, target_sampling_rate=SR), tone)  # pipelines' key
    np.testing.assert_array_equal(load_audio(tuple(tone[:2000].tolist()), SR, SR), tone[:2000])  # samples, as a list is
    with pytest.raises(ValueError, match="A tuple is read as one input"):
        load_audio((tone, tone, SR), target_sampling_rate=SR)
    # Rates read from files or computed often arrive as floats.
    for rate in (float(SR), np.float64(SR)):
        np.testing.assert_array_equal(load_audio((tone, rate), target_sampling_rate=SR), tone)
        np.testing.assert_array_equal(load_audio(tone, rate, SR), tone)
    with pytest.raises(ValueError, match="whole number of Hz, got 22050.5"):
        load_audio(tone, 22050.5, SR)


def test_float_audio_far_outside_unit_range(tone, caplog):
    with caplog.at_level("WARNING"):
        load_audio(tone * 32767, SR, SR)  # 16-bit PCM values cast to float without scaling
    assert "far outside [-1, 1]" in caplog.text
    with pytest.raises(ValueError, match="float audio is expected in"):
        load_audio(tone * 1e17, SR, SR)


def test_files_and_bytes(tmp_path, tone):
    path = tmp_path / "tone.flac"
    soundfile.write(path, np.stack([tone, tone], axis=1), 44100)  # stereo, declared at another rate
    from_path = load_audio(path, target_sampling_rate=SR)
    assert abs(len(from_path) - SR // 2) <= 1
    np.testing.assert_array_equal(load_audio(path.read_bytes(), target_sampling_rate=SR), from_path)
    np.testing.assert_array_equal(load_audio({"path": str(path), "bytes": None}, target_sampling_rate=SR), from_path)


def test_mp3_through_ffmpeg_or_libsndfile(tmp_path, tone):
    path = tmp_path / "tone.mp3"
    soundfile.write(path, tone, SR, format="MP3")
    out = load_audio(path, target_sampling_rate=SR)
    assert abs(len(out) - SR) < SR * 0.1


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda d: d / "missing.wav", FileNotFoundError, "not found"),
        (lambda d: d, IsADirectoryError, "directory"),
        (lambda d: (d / "empty.wav").write_bytes(b"") and d / "empty.wav" or d / "empty.wav", AudioDecodeError, "empty"),
        (lambda d: (d / "text.wav").write_text("hello, not audio") and d / "text.wav", AudioDecodeError, "Could not decode"),
        (lambda d: "https://example.com/take.wav", ValueError, "is a URL: mdpiano reads local audio only"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        load_audio(make(tmp_path), target_sampling_rate=SR)


def test_formats_libsndfile_lacks_stream_through_ffmpeg(tmp_path, monkeypatch, caplog):
    """An m4a (AAC) recording streams through the ffmpeg command block by block, never decoded whole, with the
    samples a whole decoding gives; one cut short gives what precedes the cut, with a warning."""
    import subprocess

    from mdpiano import audio_mdpiano

    example = Path(__file__).resolve().parents[1] / "examples" / "Q1_4dXC1cC7crw_1.mp3"
    path = tmp_path / "take.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(example), "-ac", "2", "-ar", "44100", "-c:a", "aac", "-movflags", "+faststart", str(path)],
                   check=True)  # fmt: skip
    whole = audio_mdpiano.mono_float32(audio_mdpiano._decode_encoded(str(path), "take")[0])
    monkeypatch.setattr(audio_mdpiano, "_decode", lambda *args: pytest.fail("the file was decoded whole"))
    read_blocks, rate = audio_mdpiano._mono_blocks(str(path), None, block_seconds=2.0)
    blocks = list(read_blocks())
    assert rate == 44100 and len(blocks) > 5 and max(len(block) for block in blocks) == 2 * 44100
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        partial = load_audio(str(cut), target_sampling_rate=SR)
    assert 0 < len(partial) < len(load_audio(str(path), target_sampling_rate=SR)) and "ffmpeg reported damage" in caplog.text


def test_other_formats_without_torchcodec_say_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # as where torchcodec is not installed
    path = tmp_path / "take.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    with pytest.raises(AudioDecodeError, match=r"need torchcodec and ffmpeg: pip install 'mdpiano\[audio\]'"):
        load_audio(str(path))


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_truncated_file_gives_what_is_there(tmp_path, tone, suffix, caplog):
    long_tone = np.tile(tone, 20)  # 20 s: FLAC frames past the cut are lost mid-stream, not at the header
    path = tmp_path / f"full.{suffix}"
    soundfile.write(path, long_tone, SR, subtype="PCM_16")
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with caplog.at_level("WARNING"):
        out = load_audio(cut, target_sampling_rate=SR)
    assert SR < len(out) < len(long_tone)
    np.testing.assert_allclose(out, long_tone[: len(out)], atol=1e-3)
    if suffix == "flac":
        assert "decoding stopped after" in caplog.text


@pytest.mark.parametrize("form", ["bytes", "file object", "datasets value"])
def test_encoded_audio_in_memory_streams_as_a_file_does(tmp_path, tone, form, monkeypatch, caplog):
    """Bytes, a file object and a `datasets` {"bytes": ...} value are read as their file is: block by block (never
    decoded whole), a cut one up to the cut, with a warning naming the input; the temporary copy is then removed."""
    from mdpiano import audio_mdpiano

    long_tone = np.tile(tone, 20)
    path = tmp_path / "full.flac"
    soundfile.write(path, long_tone, SR, subtype="PCM_16")
    cut = path.read_bytes()[: path.stat().st_size // 2]
    as_input = {"bytes": lambda data: data, "file object": io.BytesIO,
                "datasets value": lambda data: {"bytes": data, "path": "take.flac"}}[form]  # fmt: skip
    name = {"bytes": "the given bytes", "file object": "the given file object", "datasets value": "take.flac"}[form]
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_dir))
    monkeypatch.setattr(audio_mdpiano, "_decode", lambda *args: pytest.fail("the input was decoded whole"))
    np.testing.assert_array_equal(load_audio(as_input(path.read_bytes()), target_sampling_rate=SR), load_audio(path, target_sampling_rate=SR))
    with caplog.at_level("WARNING"):
        out = load_audio(as_input(cut), target_sampling_rate=SR)
    assert SR < len(out) < len(long_tone)
    np.testing.assert_allclose(out, long_tone[: len(out)], atol=1e-3)
    assert f"{name}: decoding stopped after" in caplog.text
    assert not list(spill_dir.iterdir())


def test_bad_encoded_audio_in_memory_is_a_clear_error_and_leaves_no_file(tmp_path, monkeypatch):
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_dir))
    with pytest.raises(AudioDecodeError, match="No audio in the given bytes: it holds 0 bytes"):
        load_audio(b"")
    with pytest.raises(AudioDecodeError, match=r"Could not decode the given bytes as audio \(soundfile: .*; ffmpeg: .*\)") as error:
        load_audio(b"hello, not audio")
    assert str(spill_dir) not in str(error.value) and ".cpp:" not in str(error.value)  # no temporary path, no decoder source
    with pytest.raises(ValueError, match="open for binary reading"):
        load_audio(io.StringIO("hello"))
    with pytest.raises(ValueError, match="MIDI data, not audio, in the given bytes: save it as a .mid file"):
        load_audio(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0")
    assert not list(spill_dir.iterdir())


@pytest.mark.parametrize("shape", [(3, 2000), (2000, 5)])
def test_an_array_of_several_channels_is_averaged_with_a_warning(shape, caplog):
    """More than two rows (or columns) are more often clips stacked as a batch than channels: said, not silent."""
    with caplog.at_level("WARNING"):
        out = load_audio(np.full(shape, 0.1, np.float32), SR, SR)
    assert len(out) == 2000 and "pass them as a list of 1-D arrays" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_audio(np.full((2, 2000), 0.1, np.float32), SR, SR)  # stereo
    assert "list of 1-D arrays" not in caplog.text


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (np.zeros(0, np.float32), SR, "empty"),
        (np.array([0.1, np.nan], np.float32), SR, "NaN"),
        (np.array([0.1, np.inf], np.float32), SR, "NaN or infinite"),
        (np.zeros(100, np.float32), None, "sampling rate"),
        (np.zeros(100, np.float32), 10, "outside the supported"),
        (np.zeros((2, 3, 4), np.float32), SR, "1-D"),
        (np.zeros((64, 64), np.float32), SR, "channels"),
        (np.array(["a", "b"]), SR, "numbers"),
        # Sample values as Python ints: read as 64-bit PCM they would be silence.
        ([0, 12000, -12000, 3000], SR, "no PCM format holds 64-bit integers"),
        (np.array([0, 12000], np.int64), SR, "np.asarray.samples, np.int16."),
        (None, SR, "Expected a recording: a path, .* got NoneType"),
        (5, None, "Expected a recording: a path, .* got int"),
    ],
)
def test_bad_arrays_are_clear_errors(audio, rate, message):
    with pytest.raises(ValueError, match=message):
        load_audio(audio, rate, SR)


def test_damaged_mp3_that_ends_early_is_reported(tmp_path, caplog):
    """libsndfile stops reading this damaged MP3 after 1.4 s without an error; the shortfall is logged, not hidden."""
    example = Path(__file__).resolve().parents[1] / "examples" / "Q1_4dXC1cC7crw_1.mp3"
    damaged = bytearray(example.read_bytes())
    damaged[5000:25000] = np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.mp3"
    path.write_bytes(damaged)
    with caplog.at_level("WARNING"):
        out = load_audio(path, target_sampling_rate=SR)
    assert len(out) < 5 * SR
    assert "decoding stopped after" in caplog.text and "of the 20.0 s the file announces" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_audio(example, target_sampling_rate=SR)
    assert "decoding stopped" not in caplog.text  # an intact MP3's announced length is met


@pytest.mark.parametrize("as_file", [False, True])
def test_a_quiet_recording_is_raised_to_min_peak(tmp_path, tone, as_file):
    def load(audio):
        if as_file:  # streamed block by block: its peak is read first
            soundfile.write(tmp_path / "quiet.wav", audio, SR, subtype="FLOAT")
            return load_audio(tmp_path / "quiet.wav", target_sampling_rate=SR, min_peak=0.25)
        return load_audio(audio, SR, SR, min_peak=0.25)

    quiet = tone * np.float32(0.02)  # peak 0.01
    np.testing.assert_allclose(load(quiet), tone * np.float32(0.5), rtol=1e-6)  # peak 0.25
    np.testing.assert_array_equal(load(tone), tone)  # at 0.5, louder than the floor: every sample as it was
    np.testing.assert_array_equal(load(np.zeros(SR, np.float32)), np.zeros(SR, np.float32))  # silence stays silent
    faint = tone * np.float32(2e-5)  # -100 dB: raised by 30 dB only
    np.testing.assert_allclose(load(faint), faint * np.float32(10**1.5), rtol=1e-5)
    np.testing.assert_array_equal(load_audio(quiet, SR, SR), quiet)  # without min_peak, the level is kept


def test_audio_below_the_model_rate_warns_once_per_rate(tmp_path, caplog, monkeypatch):
    from mdpiano import audio_mdpiano

    monkeypatch.setattr(audio_mdpiano, "_LOW_RATES_WARNED", set())
    seconds = np.arange(16000) / 16000
    for name in ("a.wav", "b.wav"):
        soundfile.write(tmp_path / name, (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32), 16000)
    with caplog.at_level("WARNING"):
        load_audio(tmp_path / "a.wav")
        load_audio(tmp_path / "b.wav")  # the same rate: not said again
        load_audio(np.zeros(44100, np.float32) + 0.1, sampling_rate=44100)  # above the model's rate: nothing to say
    warnings = [record.getMessage() for record in caplog.records if "below the 22050 Hz the model reads" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"{tmp_path / 'a.wav'}: Audio sampled at 16000 Hz")
    assert "nothing above 8000 Hz" in warnings[0]

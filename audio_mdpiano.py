"""Audio input: every accepted form is decoded, checked, downmixed and resampled here, once."""

import contextlib
import io
import json
import logging
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import weakref

import numpy as np

MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 384_000
# More channels than this in a 2-D array means the array is probably not (channels, samples).
MAX_CHANNELS = 32
# Larger float samples overflow the STFT's float32 power; real audio is within [-1, 1].
MAX_FLOAT_PEAK = 1e6
# The most a quiet recording is raised by `min_peak`: near-silence (dither, a noise floor) is not made into music.
MAX_LEVEL_BOOST_DB = 30.0

logger = logging.getLogger(__name__)
_LOW_RATES_WARNED: set[tuple[float, int]] = set()


class AudioDecodeError(ValueError):
    """An audio file or byte string that exists but cannot be decoded."""


def load_audio(
    audio, sampling_rate: int | None = None, target_sampling_rate: int = 22050, min_peak: float | None = None
) -> np.ndarray:
    """
    Turns one audio input into a mono float32 waveform at `target_sampling_rate` ([`stream_audio`], joined).

    Args:
        audio: one of
            - a path (`str` or `os.PathLike`) to a file soundfile or ffmpeg can read (wav, flac, ogg, mp3, ...);
            - encoded bytes of such a file, or a file object open for binary reading (`open(path, "rb")`,
              `io.BytesIO`), read from where it stands;
            - an array (`np.ndarray`, `torch.Tensor` or list of floats) of shape (samples,), (channels, samples)
              or (samples, channels), float or integer PCM (8 to 32 bits), with `sampling_rate` given;
            - a tuple `(array, sampling_rate)`;
            - a `datasets` Audio value: a dict with `array` (or `raw`) and `sampling_rate` (or `path` / `bytes`), or a
              torchcodec `AudioDecoder`.
        sampling_rate: rate of an array input in Hz (also of a dict `array` without a `sampling_rate` key). Ignored
            for inputs that carry their own rate.
        target_sampling_rate: rate of the returned waveform in Hz.
        min_peak: a recording whose peak sample is below this is raised to it (by at most `MAX_LEVEL_BOOST_DB`;
            silence stays silent), so a quiet recording reaches the levels a model was trained on. `None` keeps
            the level.

    Returns:
        `np.ndarray` of shape (samples,), float32, channels averaged.

    Raises:
        FileNotFoundError: a path that does not exist.
        IsADirectoryError: a path that is a directory.
        AudioDecodeError: a file or bytes that cannot be decoded as audio.
        ValueError: an array without a sampling rate, an empty or non-finite waveform, or an unusable shape or rate.
    """
    return np.concatenate(list(stream_audio(audio, sampling_rate, target_sampling_rate, min_peak=min_peak)))


class AudioStream:
    """
    The blocks of one audio input from [`stream_audio`]: an iterator, as a generator is (`next`, `close`), that also
    says the rate the input was stored at, `source_sampling_rate` (Hz). Audio stored below the target rate holds
    nothing above half its own rate.
    """

    def __init__(self, blocks, source_sampling_rate: float):
        self._blocks = blocks
        self.source_sampling_rate = source_sampling_rate

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return next(self._blocks)

    def close(self) -> None:
        self._blocks.close()


def stream_audio(
    audio,
    sampling_rate: int | None = None,
    target_sampling_rate: int = 22050,
    block_seconds: float = 10.0,
    min_peak: float | None = None,
) -> AudioStream:
    """
    The waveform of one audio input (anything [`load_audio`] accepts) as consecutive mono float32 blocks of
    `block_seconds` at `target_sampling_rate`. Files are decoded block by block (by libsndfile, or by the `ffmpeg`
    command for the formats libsndfile lacks) and resampled with a streaming resampler (soxr, the same filter as a
    one-shot resampling), so a long recording never sits in memory whole. Blocks are short: the pipeline holds a block's buffers while it transcribes, extracts notes and
    classifies windows, so their size adds to a long recording's peak memory. With `min_peak` (see [`load_audio`]),
    a file streamed block by block is read twice: its peak first.

    Returns:
        An [`AudioStream`] of the blocks, which also says the input's own rate (`source_sampling_rate`).

    Raises as [`load_audio`] does: a missing file, an undecodable input or an unusable rate when called; an empty or
    non-finite input before or while its blocks are produced.
    """
    read_blocks, rate = _mono_blocks(audio, sampling_rate, block_seconds)
    _check_rate(rate)
    recorded_rate = _recorded_rate(audio, rate)
    if recorded_rate < target_sampling_rate:
        source = file_input(audio)
        _warn_low_rate(recorded_rate, target_sampling_rate, os.fspath(source) if isinstance(source, (str, os.PathLike)) else None)
    return AudioStream(_resampled_blocks(audio, read_blocks, rate, target_sampling_rate, min_peak), recorded_rate)


def _recorded_rate(audio, rate: float) -> float:
    """The rate `audio`, decoded at `rate`, was stored at: a torchcodec decoder that resamples on the way (`datasets`'
    `Audio(sampling_rate=...)`) gives its file's rate in its metadata; other inputs come at their own rate."""
    stored = getattr(getattr(audio, "metadata", None), "sample_rate", None)
    return min(rate, stored) if isinstance(stored, numbers.Real) and stored > 0 else rate


def _resampled_blocks(audio, read_blocks, rate: float, target_sampling_rate: int, min_peak: float | None):
    """The blocks of [`stream_audio`]: checked, raised to `min_peak` and resampled as they are read."""
    gain = 1.0 if min_peak is None else level_gain(read_blocks(quiet=True), min_peak)
    resampler = None
    if rate != target_sampling_rate:
        import soxr

        resampler = soxr.ResampleStream(rate, target_sampling_rate, 1, dtype="float32", quality="HQ")
    total, warned = 0, False
    for block in read_blocks():
        if not np.isfinite(block).all():
            raise ValueError(
                "The audio contains NaN or infinite samples: replace them (e.g. `np.nan_to_num`) before passing it."
            )
        peak = float(np.abs(block).max(initial=0.0))
        if peak > MAX_FLOAT_PEAK:  # the features' squared magnitudes would overflow float32
            raise ValueError(f"Audio samples reach {peak:.3g}; float audio is expected in [-1, 1]: scale it first.")
        if peak > 2.0 and not warned:
            warned = True
            source = file_input(audio)
            logger.warning(
                "%sAudio samples reach %.3g, far outside [-1, 1]: if this is integer PCM converted to float, divide it "
                "by its full scale (32768 for 16-bit) or pass the integer array itself; loudness shapes the prediction.",
                f"{os.fspath(source)}: " if isinstance(source, (str, os.PathLike)) else "", peak,
            )  # fmt: skip
        total += block.size
        if gain != 1.0:  # audio at or above `min_peak` keeps its samples exactly
            block = block * np.float32(gain)
        out = block if resampler is None else resampler.resample_chunk(block, last=False)
        del block  # not held while the caller works on `out` (blocks of long files are tens of MB)
        if out.size:
            yield np.ascontiguousarray(out, dtype=np.float32)
    if total == 0:
        raise ValueError("The audio is empty (0 samples): pass a recording with at least one sample.")
    if resampler is not None:
        out = resampler.resample_chunk(np.zeros(0, np.float32), last=True)  # the filter's tail
        if out.size:
            yield np.ascontiguousarray(out, dtype=np.float32)


def source_sampling_rate(path) -> float:
    """
    The sampling rate of an audio file, from its header where libsndfile or ffprobe reads one (else the file is
    decoded). Raises as [`load_audio`] does for a file that cannot be used.
    """
    rate = _mono_blocks(path, None, 1.0)[1]
    _check_rate(rate)
    return rate


def _warn_low_rate(rate: float, target_sampling_rate: int, first_path: str | None) -> None:
    # Once per rate and process (a folder of such files would repeat it for every file): the first one is named.
    if (rate, target_sampling_rate) in _LOW_RATES_WARNED:
        return
    _LOW_RATES_WARNED.add((rate, target_sampling_rate))
    logger.warning(
        "%sAudio sampled at %g Hz, below the %g Hz the model reads, holds nothing above %g Hz, which the training "
        "audio did: predictions are less accurate (README: Low sampling rates). Pass recordings at %g Hz or more "
        "where there are some. (Said once for inputs at this rate.)",
        f"{first_path}: " if first_path else "", rate, target_sampling_rate, rate / 2, target_sampling_rate,
    )  # fmt: skip


def level_gain(blocks, min_peak: float) -> float:
    """
    The gain that raises a recording (its mono blocks) whose peak is below `min_peak` to it, at most
    `MAX_LEVEL_BOOST_DB`; 1 for a recording at or above it, for silence, and for NaN samples (an error later).
    """
    peak = max((float(np.abs(block).max(initial=0.0)) for block in blocks), default=0.0)
    if not 0.0 < peak < min_peak:
        return 1.0
    return min(min_peak / peak, 10.0 ** (MAX_LEVEL_BOOST_DB / 20.0))


def file_input(audio):
    """The input itself, or the path of a `datasets` value that holds only a path (`{"path": ...}`): what to read."""
    if isinstance(audio, dict) and audio.get("array") is None and audio.get("bytes") is None and audio.get("path"):
        return audio["path"]
    return audio


def _mono_blocks(audio, sampling_rate, block_seconds):
    """
    (reader, source rate): `reader(quiet=False)` iterates over the mono float32 blocks at the source rate, from the
    start each call (a file is read again; `quiet` leaves out the warnings about a damaged one).
    """
    audio = file_input(audio)
    if (spilled := _spill_encoded(audio)) is not None:
        return _spilled_blocks(*spilled, block_seconds)
    if isinstance(audio, (str, os.PathLike)):
        path = os.fspath(audio)
        _check_file(path)
        stream = _soundfile_blocks(path, block_seconds) or _ffmpeg_blocks(path, block_seconds)
        if stream is not None:
            return stream
    return _array_blocks(*_decode(audio, sampling_rate), block_seconds)


def _array_blocks(waveform, rate, block_seconds):
    """(reader, rate) of a waveform decoded whole ([`_mono_blocks`])."""
    if np.asarray(waveform).size == 0:
        raise ValueError("The audio is empty (0 samples): pass a recording with at least one sample.")
    waveform = mono_float32(waveform)
    size = max(1, int(block_seconds * rate))
    return lambda quiet=False: (waveform[start : start + size] for start in range(0, len(waveform), size)), rate


# Bytes copied at a time from a file object into its temporary file.
_SPILL_CHUNK_BYTES = 1 << 20
_BINARY_FILE_OBJECT = 'An audio file object must be open for binary reading: open(path, "rb"), or pass the path.'


def _spill_encoded(audio) -> tuple[str, str] | None:
    """
    (path, name) of a temporary file holding encoded audio given as bytes, as a file object (read from where it
    stands) or as a `datasets` value with `bytes`, so that it is read as a file is: block by block, and up to the
    damage in a damaged one. None for other inputs. `name` says what the input was, for messages; the caller
    removes the file.
    """
    if isinstance(audio, (bytes, bytearray)):
        chunks, name = [audio], "the given bytes"
    elif isinstance(audio, dict) and audio.get("array") is None and audio.get("bytes") is not None:
        chunks, name = [audio["bytes"]], str(audio.get("path") or "the given bytes")
    elif hasattr(audio, "read") and not hasattr(audio, "get_all_samples"):  # open(), io.BytesIO, tempfile's wrappers
        if isinstance(audio, io.TextIOBase):  # reading it would decode the audio's bytes as text
            raise ValueError(_BINARY_FILE_OBJECT)
        chunks, name = iter(lambda: audio.read(_SPILL_CHUNK_BYTES), b""), str(getattr(audio, "name", "the given file object"))
    else:
        return None
    suffix = os.path.splitext(name)[1]  # the format's usual extension, where the input's name has one
    descriptor, path = tempfile.mkstemp(prefix="mdpiano-", suffix=suffix if suffix[1:].isalnum() else "")
    try:
        with os.fdopen(descriptor, "wb") as spill:
            for chunk in chunks:
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise ValueError(_BINARY_FILE_OBJECT)
                if spill.tell() == 0 and bytes(chunk[:4]) == b"MThd":  # a Standard MIDI File's header
                    raise ValueError(f"MIDI data, not audio, in {name}: save it as a .mid file and pass its path (MIDI input).")
                spill.write(chunk)
            if spill.tell() == 0:
                raise AudioDecodeError(f"No audio in {name}: it holds 0 bytes.")
    except BaseException:
        _remove(path)
        raise
    return path, name


def _spilled_blocks(path: str, name: str, block_seconds: float):
    """(reader, rate) of the temporary file of [`_spill_encoded`], removed once the reader is no longer referenced
    (at once, where it cannot be streamed and is decoded whole)."""
    try:
        stream = _soundfile_blocks(path, block_seconds, name) or _ffmpeg_blocks(path, block_seconds, name)
    except BaseException:
        _remove(path)
        raise
    if stream is None:  # neither libsndfile nor ffprobe opens it: torchcodec decodes it whole, or says why it cannot
        try:
            return _array_blocks(*_decode_encoded(path, name), block_seconds)
        finally:
            _remove(path)
    weakref.finalize(stream[0], _remove, path)
    return stream


def _remove(path: str) -> None:
    """Removes a temporary file of this module's, if it is still there (a temporary folder may have been cleaned)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _soundfile_blocks(path: str, block_seconds: float, name: str | None = None):
    """(block reader, rate) of a file libsndfile can open ([`_mono_blocks`]), or None (the caller then decodes the
    whole file otherwise). `name` stands for the file in warnings and errors (the path by default)."""
    import soundfile

    try:
        with soundfile.SoundFile(path) as file:
            rate = file.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return None

    def blocks(quiet=False):
        with soundfile.SoundFile(path) as file:
            for block in _readable_blocks(file, max(1, int(block_seconds * rate)), path, quiet, name or path):
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                del block  # a stereo block is not held while the caller works on the mono one
                yield mono

    return blocks, rate


def _ffmpeg_blocks(path: str, block_seconds: float, name: str | None = None):
    """
    (block reader, rate) of a file libsndfile cannot read (m4a, aac, wma, ...) through the ffmpeg command, which
    decodes it to 32-bit float PCM at its own rate into a pipe read block by block, so a long recording is never held
    whole; None without ffmpeg and ffprobe, or when ffprobe finds no audio stream (the caller then decodes the file
    whole, or says why it cannot). `name` stands for the file in warnings and errors (the path by default).
    """
    name = name or path
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        return None
    probe = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
                            "-of", "json", path], capture_output=True, text=True)  # fmt: skip
    try:
        stream = json.loads(probe.stdout)["streams"][0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if rate <= 0 or channels <= 0:
        return None
    frame_bytes = 4 * channels

    def blocks(quiet=False):
        command = [ffmpeg, "-v", "error", "-nostdin", "-i", path, "-map", "0:a:0", "-f", "f32le", "-c:a", "pcm_f32le", "-"]
        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a long error log cannot stall the decoder
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
            frames = 0
            try:
                while data := process.stdout.read(max(1, int(block_seconds * rate)) * frame_bytes):
                    usable = len(data) // frame_bytes * frame_bytes  # whole frames (a partial one only at a cut end)
                    block = np.frombuffer(data[:usable], np.float32).reshape(-1, channels)
                    frames += len(block)
                    yield block.mean(axis=1) if channels > 1 else block[:, 0].copy()
            finally:
                process.stdout.close()
                if process.poll() is None:  # the reader stopped early: the rest is not wanted
                    process.kill()
                status = process.wait()
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip().splitlines()
        # A damaged file (a cut download) decodes up to the damage and ffmpeg says so, often with exit status 0;
        # -9 is the kill above.
        if not message and status in (0, -9):
            return
        reason = message[-1] if message else f"exit status {status}"
        if frames == 0:
            raise AudioDecodeError(f"Could not decode {name} as audio (ffmpeg: {reason}).")
        if not quiet:
            logger.warning("%s: ffmpeg reported damage (%s); using the %.1f s it decoded.", name, reason, frames / rate)

    return blocks, rate


# Frames read at a time past a read error: a damaged file keeps all but the last of these before the damage.
_SALVAGE_FRAMES = 4096


def _readable_blocks(file, size: int, path: str, quiet: bool = False, name: str | None = None):
    """
    (frames, channels) blocks of an open SoundFile of `path`. A truncated or corrupt file makes libsndfile fail on
    the block holding the damage and drop all of it: that block is read again in small pieces, and what precedes
    the damage is kept, with a warning (unless `quiet`) naming the file as `name` (the path by default).
    """
    import soundfile

    name = name or path
    position = 0
    try:
        while len(block := file.read(size, dtype="float32", always_2d=True)):
            position += len(block)
            yield block
        # A damaged MP3 can end the reads early without an error: compare with the length its header announces
        # (an estimate for MP3, hence the tolerance).
        if not quiet and file.frames - position > max(0.01 * file.frames, 0.5 * file.samplerate):
            logger.warning("%s: decoding stopped after %.1f s of the %.1f s the file announces; it may be damaged: "
                           "using the audio up to there.", name, position / file.samplerate, file.frames / file.samplerate)  # fmt: skip
        return
    except (soundfile.LibsndfileError, RuntimeError) as error:
        damage = error
    with soundfile.SoundFile(path) as again:
        again.seek(position)
        try:
            while len(piece := again.read(_SALVAGE_FRAMES, dtype="float32", always_2d=True)):
                position += len(piece)
                yield piece
        except (soundfile.LibsndfileError, RuntimeError):
            pass  # the piece holding the damage
    if position == 0:
        raise AudioDecodeError(f"Could not decode {name} as audio ({damage}).")
    if not quiet:
        logger.warning("%s: decoding stopped after %.1f s (%s); using the audio up to there.", name,
                       position / file.samplerate, damage)  # fmt: skip


def is_single_audio(audio) -> bool:
    """Whether `audio` is one input for [`load_audio`] rather than a list of them."""
    if isinstance(audio, (str, bytes, os.PathLike, np.ndarray, dict)) or hasattr(audio, "get_all_samples"):
        return True
    if type(audio).__module__.startswith("torch"):
        return True
    if _is_array_and_rate(audio):
        return True
    if isinstance(audio, (list, tuple)):
        return len(audio) > 0 and isinstance(audio[0], (int, float, np.number))
    return True


def _decode(audio, sampling_rate):
    if isinstance(audio, (str, os.PathLike)):
        return _decode_file(os.fspath(audio))
    if isinstance(audio, dict):
        samples = audio["array"] if audio.get("array") is not None else audio.get("raw")  # `raw`: transformers' pipelines' key
        if samples is not None:
            rate = audio.get("sampling_rate")
            if rate is None and sampling_rate is None:
                raise ValueError("An audio dict with `array` needs its sampling rate: a `sampling_rate` key (in Hz), "
                                 "or `sampling_rate=`.")  # fmt: skip
            return _decode_array(samples, sampling_rate if rate is None else rate)
        if audio.get("path") is not None:
            return _decode_file(audio["path"])
        raise ValueError(f"An audio dict needs `array` and `sampling_rate`, `bytes` or `path`; got keys {list(audio)}.")
    if hasattr(audio, "get_all_samples"):  # torchcodec AudioDecoder, what `datasets` Audio columns return
        samples = audio.get_all_samples()
        return samples.data.numpy(), int(samples.sample_rate)
    if _is_array_and_rate(audio):
        return _decode_array(audio[0], audio[1])
    if isinstance(audio, tuple) and not all(isinstance(value, (numbers.Real, np.number)) for value in audio):  # numbers: samples
        if len(audio) == 2 and isinstance(audio[1], (int, float, np.number)):
            return _decode_array(audio[0], audio[1])  # (array, rate) with a rate that is no whole number: says so
        raise ValueError("A tuple is read as one input, (array, sampling_rate); pass several inputs as a list.")
    if audio is None or isinstance(audio, numbers.Number) or not (hasattr(audio, "__len__") or hasattr(audio, "__array__")):
        raise ValueError(f"Expected a recording: a path, encoded bytes, a file object, or samples with their sampling "
                         f"rate; got {type(audio).__name__}.")  # fmt: skip
    return _decode_array(audio, sampling_rate)


def _is_array_and_rate(audio) -> bool:
    """A tuple `(array, sampling_rate)`, not two samples."""
    return (isinstance(audio, tuple) and len(audio) == 2 and _is_whole_number(audio[1])
            and not isinstance(audio[0], (int, float, np.number)))  # fmt: skip


def _is_whole_number(value) -> bool:
    """An int, or a float with no fractional part (a sampling rate such as 44100.0)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer())


def _decode_array(array, sampling_rate):
    if sampling_rate is None:
        raise ValueError(
            "An audio array needs its sampling rate: pass `sampling_rate=` (in Hz) or a tuple (array, sampling_rate)."
        )
    if not _is_whole_number(sampling_rate):
        raise ValueError(f"The sampling rate must be a whole number of Hz, got {sampling_rate!r}.")
    if type(array).__module__.startswith("torch"):
        tensor = array.detach().cpu()
        array = (tensor.float() if tensor.is_floating_point() else tensor).numpy()  # numpy has no bfloat16
    array = np.asarray(array)
    if array.ndim == 2 and 2 < min(array.shape) <= MAX_CHANNELS:  # rarely channels: more often clips stacked as a batch
        logger.warning("An audio array of shape %s is read as one recording of %d channels, averaged into one; to "
                       "classify several recordings, pass them as a list of 1-D arrays.", array.shape, min(array.shape))  # fmt: skip
    return array, int(sampling_rate)


def _check_file(path):
    if str(path).startswith(("http://", "https://")):
        raise ValueError(f"{path} is a URL: mdpiano reads local audio only. Download the file and pass its path (or "
                         "its bytes).")  # fmt: skip
    if not os.path.exists(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Expected an audio file, got a directory: {path}")
    if os.path.getsize(path) == 0:
        raise AudioDecodeError(f"The audio file {path} is empty (0 bytes).")


def _decode_file(path):
    _check_file(path)
    return _decode_encoded(path, path)


def _decode_encoded(path: str, name: str):
    """Decodes a file whole with libsndfile, falling back to ffmpeg (through torchcodec); `name` stands for it in
    errors."""
    import soundfile

    try:
        waveform, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return waveform.T, int(rate)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as soundfile_error:
        first_error = soundfile_error
    try:  # formats libsndfile lacks (m4a, aac, wma, ...)
        from torchcodec.decoders import AudioDecoder

        samples = AudioDecoder(path).get_all_samples()
        return samples.data.numpy(), int(samples.sample_rate)
    except Exception as ffmpeg_error:
        remedy = (
            "Formats libsndfile lacks (m4a, aac, wma, ...) need torchcodec and ffmpeg: pip install 'mdpiano[audio]'."
            if isinstance(ffmpeg_error, ImportError)
            else "Pass an audio file (wav, flac, mp3, ogg, opus, aiff, m4a, ...), or a waveform array with its sampling rate."
        )
        reasons = f"soundfile: {_decoder_reason(first_error, path)}; ffmpeg: {_decoder_reason(ffmpeg_error, path)}"
        raise AudioDecodeError(f"Could not decode {name} as audio ({reasons}). {remedy}") from ffmpeg_error


def _decoder_reason(error: Exception, path: str) -> str:
    """A decoder's complaint about `path` without the path (the message names the input; for bytes it is a
    temporary copy) and without the decoder's own source locations (torchcodec's `File.cpp:52, `)."""
    text = str(error).replace(f"Error opening {path!r}: ", "").replace(f"Could not open input file: {path} ", "")
    return re.sub(r"\w+, \S+\.cpp:\d+, ", "", text).strip()


def _check_rate(rate):
    if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"Sampling rate {rate} Hz is outside the supported {MIN_SAMPLING_RATE}-{MAX_SAMPLING_RATE} Hz; "
            "check that the rate is in Hz and belongs to this audio."
        )


def mono_float32(waveform) -> np.ndarray:
    """
    Samples as a mono float32 waveform in [-1, 1]: channels averaged ((channels, samples) or (samples, channels), at
    most `MAX_CHANNELS`), integer PCM (8 to 32 bits, signed or unsigned) scaled by its full scale.

    Returns:
        `np.ndarray` of shape (samples,), float32.

    Raises:
        ValueError: samples that are not real numbers, 64-bit integers, or an unusable shape.
    """
    waveform = np.asarray(waveform)
    if waveform.dtype == np.bool_ or not np.issubdtype(waveform.dtype, np.number):
        raise ValueError(f"Audio samples must be numbers, got dtype {waveform.dtype}.")
    if np.issubdtype(waveform.dtype, np.complexfloating):
        raise ValueError("Audio samples must be real, got complex values.")
    pcm_type = waveform.dtype if np.issubdtype(waveform.dtype, np.integer) else None
    if pcm_type is not None and pcm_type.itemsize > 4:  # read as 64-bit PCM, any real recording would be ~1e-14: silence
        raise ValueError(
            f"Audio samples of dtype {waveform.dtype}: no PCM format holds 64-bit integers (a list of Python ints, "
            "or an array made from one, becomes int64). Cast the samples to the PCM type they are (e.g. "
            "`np.asarray(samples, np.int16)` for 16-bit audio), or pass float samples in [-1, 1]."
        )
    # Channels are averaged straight into float32, and PCM scaled after: no float copy of every channel (a 20-minute
    # 16-bit stereo array took five times its size).
    if waveform.ndim == 2:
        channels_first = waveform.shape[0] <= waveform.shape[1]
        if min(waveform.shape) > MAX_CHANNELS:
            raise ValueError(
                f"A 2-D audio array must be (channels, samples) or (samples, channels) with at most {MAX_CHANNELS} "
                f"channels; got shape {waveform.shape}. Pass a batch as a list of 1-D arrays."
            )
        waveform = waveform.mean(axis=0 if channels_first else 1, dtype=np.float32)
    elif waveform.ndim != 1:
        raise ValueError(f"Audio must be 1-D (samples,) or 2-D (channels, samples); got shape {waveform.shape}.")
    waveform = waveform.astype(np.float32, copy=False)
    return waveform if pcm_type is None else _scale_pcm(waveform, pcm_type)


def _scale_pcm(samples: np.ndarray, pcm_type: np.dtype) -> np.ndarray:
    """PCM sample values (as float32, an array of this module's own) scaled in place to [-1, 1]."""
    info = np.iinfo(pcm_type)
    if info.min == 0:  # unsigned PCM (8-bit WAV) is centred on its midpoint
        midpoint = (info.max + 1) / 2
        samples -= midpoint
        samples /= midpoint
    else:
        samples *= 1.0 / -info.min
    return samples


__all__ = [
    "AudioDecodeError",
    "AudioStream",
    "file_input",
    "is_single_audio",
    "level_gain",
    "load_audio",
    "mono_float32",
    "source_sampling_rate",
    "stream_audio",
]

"""Configuration of the mdpiano multi-domain piano emotion model."""

import json
import math
import numbers
from pathlib import Path

from transformers import PreTrainedConfig

from .statistics_fusion import FUSION_FIELDS, check_fusion_settings

QUADRANT_NAMES = {
    "Q1": "happy (high arousal, positive valence)",
    "Q2": "tense (high arousal, negative valence)",
    "Q3": "sad (low arousal, negative valence)",
    "Q4": "calm (low arousal, positive valence)",
}
# Russell's circumplex quadrants as used by EMOPIA: arousal is high for Q1/Q2, valence positive for Q1/Q4.
QUADRANT_AROUSAL = {"Q1": 1, "Q2": 1, "Q3": 0, "Q4": 0}
QUADRANT_VALENCE = {"Q1": 1, "Q2": 0, "Q3": 0, "Q4": 1}

DOMAINS = ("both", "acoustic", "symbolic")
ACOUSTIC_INPUTS = ("mixed", "stft")


def check_mel_settings(sampling_rate: int, n_mels: int, n_mfcc: int, fmin: float, fmax: float | None) -> None:
    """Raises a `ValueError` naming the field when the mel bands or MFCCs cannot be computed with these settings."""
    nyquist = sampling_rate / 2
    if fmin < 0 or not fmin < (nyquist if fmax is None else fmax) <= nyquist:
        raise ValueError(
            f"`fmin` ({fmin}) and `fmax` ({fmax}) must satisfy 0 <= fmin < fmax <= sampling_rate / 2 ({nyquist:g}; "
            "fmax=None means sampling_rate / 2)."
        )
    if not 0 < n_mfcc <= n_mels:
        raise ValueError(f"`n_mfcc` ({n_mfcc}) must be positive and must not exceed `n_mels` ({n_mels}).")


def check_quadrant_bias(bias) -> None:
    """
    Raises:
        ValueError: unless `bias` (`quadrant_logit_bias`) is `None` or one finite number per quadrant (Q1-Q4).
    """
    if bias is None:
        return
    finite = hasattr(bias, "__len__") and not isinstance(bias, (str, bytes)) and all(
        isinstance(b, numbers.Real) and not isinstance(b, bool) and math.isfinite(b) for b in bias
    )
    if not finite or len(bias) != len(QUADRANT_NAMES):
        raise ValueError(f"`quadrant_logit_bias` must be {len(QUADRANT_NAMES)} finite numbers (Q1-Q4) or None, got {bias!r}.")


def _python_value(value):
    """numpy scalars (from a sweep tool, say), also inside lists and dicts (a fusion's weights), as the Python values
    the saved JSON holds; any other value, and a container without numpy scalars, as it is."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, (list, dict)):
        items = list(value.items() if isinstance(value, dict) else enumerate(value))
        converted = [(key, _python_value(item)) for key, item in items]
        if all(new is old for (_, new), (_, old) in zip(converted, items)):
            return value
        return dict(converted) if isinstance(value, dict) else [item for _, item in converted]
    return value


def acoustic_feature_size(acoustic_input: str, n_fft: int, n_mels: int, n_mfcc: int) -> int:
    """Features per frame: the log STFT's bins, or log-mel bands + MFCCs + spectral centroid + RMS."""
    return n_fft // 2 + 1 if acoustic_input == "stft" else n_mels + n_mfcc + 2


class MDPianoConfig(PreTrainedConfig):
    r"""
    Configuration of [`MDPianoForAudioClassification`]: the acoustic features, the acoustic ConvNet, the symbolic
    token vocabulary and Transformer encoder, the cross-domain attention (CDA) fusion and the training losses of
    Zhu et al., "Symbolic & Acoustic: Multi-domain Music Emotion Modeling for Instrumental Music" (ADMA 2023).

    Args:
        sampling_rate (`int`, *optional*, defaults to 22050):
            Working sampling rate in Hz. Audio is resampled once to this rate; 22050 Hz is also the rate of the
            basic-pitch transcriber, so both branches share one waveform.
        n_fft (`int`, *optional*, defaults to 2048):
            FFT size of the acoustic features (samples).
        hop_length (`int`, *optional*, defaults to 512):
            Hop between acoustic frames (samples).
        n_mels (`int`, *optional*, defaults to 128):
            Mel bands of the log-mel part of the mixed feature.
        n_mfcc (`int`, *optional*, defaults to 20):
            MFCC coefficients of the mixed feature.
        fmin (`float`, *optional*, defaults to 27.5):
            Lowest mel frequency in Hz (A0, the lowest piano key).
        fmax (`float`, *optional*):
            Highest mel frequency in Hz; `None` means the Nyquist frequency.
        acoustic_input (`str`, *optional*, defaults to `"mixed"`):
            `"mixed"`: log-mel, MFCC, spectral centroid and RMS energy stacked per frame (the paper's input);
            `"stft"`: the log-magnitude STFT (the paper's Table 4 ablation).
        chunk_length_s (`float`, *optional*, defaults to 30.0):
            Length in seconds of one analysis window. Inputs are padded or truncated to it; longer recordings are
            split into windows by the pipeline.
        conv_channels (`list[int]`, *optional*, defaults to `[64, 128, 256]`):
            Output channels of the acoustic ConvNet blocks (3x3 convolution, normalisation, ReLU, 2x2 max pooling).
        conv_kernel_size (`int`, *optional*, defaults to 3):
            Kernel size of the acoustic convolutions.
        max_symbolic_length (`int`, *optional*, defaults to 2048):
            Maximum number of symbolic tokens per window, special tokens included.
        time_shift_resolution_ms (`int`, *optional*, defaults to 10):
            Time grid of the symbolic tokens in milliseconds.
        max_time_shift_ms (`int`, *optional*, defaults to 1000):
            Longest single `Time-Shift` token; longer gaps use several tokens.
        velocity_bins (`int`, *optional*, defaults to 32):
            Number of `Velocity` tokens: the centres of uniform bins over MIDI velocity 0-127, each velocity
            tokenized as the nearest (one midway between two takes the lower).
        max_harmonic (`int`, *optional*, defaults to 16):
            Largest `Harmonic` value; more simultaneous notes are clipped to it.
        vocab_size (`int`, *optional*):
            Size of the symbolic vocabulary. Derived from the token settings above when not given.
        d_model (`int`, *optional*, defaults to 256):
            Hidden size of the symbolic Transformer and of the fused representation.
        num_encoder_layers (`int`, *optional*, defaults to 4):
            Layers of the symbolic Transformer encoder.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads of the symbolic Transformer encoder.
        intermediate_size (`int`, *optional*, defaults to 1024):
            Feed-forward size of the symbolic Transformer encoder.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout in the encoders and the fusion.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on attention weights.
        cda_num_heads (`int`, *optional*, defaults to 8):
            Heads of each cross-domain attention (acoustic-to-symbolic and symbolic-to-acoustic).
        classifier_dropout (`float`, *optional*, defaults to 0.1):
            Dropout before the classification heads.
        domains (`str`, *optional*, defaults to `"both"`):
            Which domains the model uses: `"both"` (the full model), `"acoustic"` or `"symbolic"` (Table 4 ablations).
        use_auxiliary_losses (`bool`, *optional*, defaults to `True`):
            Add the arousal (acoustic head) and valence (symbolic head) binary cross-entropy losses; `False` is the
            "single loss" ablation.
        arousal_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the arousal loss.
        valence_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the valence loss.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of linear and embedding weights.
        pad_token_id (`int`, *optional*, defaults to 0):
            Id of `<pad>` in the symbolic vocabulary.
        quadrant_logit_bias (`list[float]`, *optional*):
            Offsets added to the log of a recording's quadrant probabilities (and of each window's) before they are
            renormalised and ranked: a decision calibration fitted on held-out validation audio after training
            (`scripts/publish_model.py --calibrate-on`). `None`: the probabilities as the model gives them.
        note_statistics_fusion (`dict`, *optional*):
            A note-statistics classifier whose probabilities a recording's (calibrated) quadrant probabilities are
            fused with, and the network's weight in that fusion (`mdpiano.statistics_fusion.fusion_settings`;
            `scripts/baseline.py --save-fusion`), and optionally its weight for recordings sampled below
            `sampling_rate` (`band_limited_network_weight`; `--band-limited-rate`). Needs the symbolic domain's
            transcription. `None`: no fusion.
        midi_note_statistics_fusion (`dict`, *optional*):
            The same for MIDI input (the symbolic domain reads the file's own notes): a classifier fitted on MIDI
            notes, whose velocities and note counts differ from a transcription's (`scripts/baseline.py
            --train-on midi ... --save-fusion`). `None`: MIDI input is not fused.

    Example:

    ```python
    >>> from mdpiano import MDPianoConfig
    >>> config = MDPianoConfig(domains="acoustic")  # the acoustic-only ablation
    >>> config.id2label[0], config.quadrant_names["Q1"]
    ('Q1', 'happy (high arousal, positive valence)')
    ```
    """

    model_type = "mdpiano"

    def __init__(
        self,
        sampling_rate=22050,
        n_fft=2048,
        hop_length=512,
        n_mels=128,
        n_mfcc=20,
        fmin=27.5,
        fmax=None,
        acoustic_input="mixed",
        chunk_length_s=30.0,
        conv_channels=(64, 128, 256),
        conv_kernel_size=3,
        max_symbolic_length=2048,
        time_shift_resolution_ms=10,
        max_time_shift_ms=1000,
        velocity_bins=32,
        max_harmonic=16,
        vocab_size=None,
        d_model=256,
        num_encoder_layers=4,
        num_attention_heads=8,
        intermediate_size=1024,
        dropout=0.1,
        attention_dropout=0.0,
        cda_num_heads=8,
        classifier_dropout=0.1,
        domains="both",
        use_auxiliary_losses=True,
        arousal_loss_weight=1.0,
        valence_loss_weight=1.0,
        initializer_range=0.02,
        pad_token_id=0,
        quadrant_logit_bias=None,
        note_statistics_fusion=None,
        midi_note_statistics_fusion=None,
        **kwargs,
    ):
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.fmin = fmin
        self.fmax = fmax
        self.acoustic_input = acoustic_input
        self.chunk_length_s = chunk_length_s
        self.conv_channels = list(conv_channels)
        self.conv_kernel_size = conv_kernel_size
        self.max_symbolic_length = max_symbolic_length
        self.time_shift_resolution_ms = time_shift_resolution_ms
        self.max_time_shift_ms = max_time_shift_ms
        self.velocity_bins = velocity_bins
        self.max_harmonic = max_harmonic
        self.d_model = d_model
        self.num_encoder_layers = num_encoder_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.cda_num_heads = cda_num_heads
        self.classifier_dropout = classifier_dropout
        self.domains = domains
        self.use_auxiliary_losses = use_auxiliary_losses
        self.arousal_loss_weight = arousal_loss_weight
        self.valence_loss_weight = valence_loss_weight
        self.initializer_range = initializer_range
        self.pad_token_id = pad_token_id
        self.quadrant_logit_bias = None if quadrant_logit_bias is None else list(quadrant_logit_bias)
        self.note_statistics_fusion = None if note_statistics_fusion is None else dict(note_statistics_fusion)
        self.midi_note_statistics_fusion = None if midi_note_statistics_fusion is None else dict(midi_note_statistics_fusion)
        self._validate()
        self.vocab_size = vocab_size if vocab_size is not None else self.default_vocab_size()

        if not type(self).__module__.startswith("transformers_modules"):
            # Installed, mdpiano serves "audio-classification" with its own pipeline (registered on import); the
            # custom pipeline entry of a Hub-ready folder is for remote code, where it would demand trust_remote_code.
            kwargs.pop("custom_pipelines", None)
        kwargs.setdefault("id2label", {i: q for i, q in enumerate(QUADRANT_NAMES)})
        label2id_given = "label2id" in kwargs
        super().__init__(**kwargs)
        if not label2id_given:  # the inverse of the id2label given, not the default order
            self.label2id = {label: index for index, label in self.id2label.items()}
        self._validate_labels_and_tokens()

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # transformers sets `from_pretrained`'s keyword overrides after `__init__`, past its checks: check them too.
        result = super().from_dict(config_dict, **kwargs)
        (result[0] if isinstance(result, tuple) else result).validate()
        return result

    def validate(self):
        """Checks every field (transformers calls this before saving, `from_dict` after its overrides).

        Raises:
            ValueError: naming the field and what it must be.
        """
        self._validate()
        self._validate_labels_and_tokens()

    def _validate_labels_and_tokens(self):
        if set(self.id2label) != set(range(len(QUADRANT_NAMES))) or sorted(self.id2label.values()) != sorted(QUADRANT_NAMES):
            raise ValueError(f"id2label must map 0-3 to the four quadrants {list(QUADRANT_NAMES)}, got {self.id2label}.")
        if {index: label for label, index in self.label2id.items()} != self.id2label:
            raise ValueError(f"label2id ({self.label2id}) must be the inverse of id2label ({self.id2label}).")
        vocabulary = self.default_vocab_size()
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < vocabulary:
            raise ValueError(f"`vocab_size` must be an integer of at least {vocabulary} (the tokens of these settings), "
                             f"got {self.vocab_size!r}.")  # fmt: skip
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` must be a token id in [0, {self.vocab_size}), got {self.pad_token_id!r}.")

    def _validate(self):
        positive_ints = (
            "sampling_rate", "n_fft", "hop_length", "n_mels", "n_mfcc", "conv_kernel_size", "max_symbolic_length",
            "time_shift_resolution_ms", "max_time_shift_ms", "velocity_bins", "max_harmonic", "d_model",
            "num_encoder_layers", "num_attention_heads", "intermediate_size", "cda_num_heads",
        )  # fmt: skip
        for name, value in list(vars(self).items()):
            plain = _python_value(value)
            if plain is not value:
                setattr(self, name, plain)
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("dropout", "attention_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}.")
        for name in ("arousal_loss_weight", "valence_loss_weight", "initializer_range"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < math.inf:  # NaN fails both comparisons
                raise ValueError(f"`{name}` must be a finite non-negative number, got {value!r}.")
        if not isinstance(self.chunk_length_s, (int, float)) or not 0 < self.chunk_length_s <= 600:
            raise ValueError(f"`chunk_length_s` must be in (0, 600] seconds, got {self.chunk_length_s!r}.")
        if self.hop_length > self.n_fft:
            raise ValueError(f"`hop_length` ({self.hop_length}) must not exceed `n_fft` ({self.n_fft}).")
        check_mel_settings(self.sampling_rate, self.n_mels, self.n_mfcc, self.fmin, self.fmax)
        if self.conv_kernel_size % 2 == 0:
            raise ValueError(
                f"`conv_kernel_size` must be odd (its 'same' padding keeps the frame count), got {self.conv_kernel_size}."
            )
        check_quadrant_bias(self.quadrant_logit_bias)
        for source, field in FUSION_FIELDS.items():
            settings = getattr(self, field)
            if settings is None:
                continue
            if self.domains == "acoustic":
                raise ValueError(f"`{field}` reads the notes of the {source}, which an acoustic-only model does not read.")
            check_fusion_settings(settings, len(QUADRANT_NAMES), field)
        if self.acoustic_input not in ACOUSTIC_INPUTS:
            raise ValueError(f"`acoustic_input` must be one of {ACOUSTIC_INPUTS}, got {self.acoustic_input!r}.")
        if self.domains not in DOMAINS:
            raise ValueError(f"`domains` must be one of {DOMAINS}, got {self.domains!r}.")
        if not isinstance(self.use_auxiliary_losses, bool):
            raise ValueError(f"`use_auxiliary_losses` must be a bool, got {self.use_auxiliary_losses!r}.")
        if not self.conv_channels or any(not isinstance(c, int) or c <= 0 for c in self.conv_channels):
            raise ValueError(f"`conv_channels` must be a non-empty list of positive integers, got {self.conv_channels}.")
        if self.max_time_shift_ms % self.time_shift_resolution_ms:
            raise ValueError(
                f"`max_time_shift_ms` ({self.max_time_shift_ms}) must be a multiple of `time_shift_resolution_ms` "
                f"({self.time_shift_resolution_ms})."
            )
        if self.velocity_bins > 128:
            raise ValueError(f"`velocity_bins` must be at most 128 (MIDI velocities), got {self.velocity_bins}.")
        for heads_name in ("num_attention_heads", "cda_num_heads"):
            if self.d_model % getattr(self, heads_name):
                raise ValueError(
                    f"`d_model` ({self.d_model}) must be divisible by `{heads_name}` ({getattr(self, heads_name)})."
                )
        window_frames = 1 + int(self.chunk_length_s * self.sampling_rate) // self.hop_length
        if self.domains != "symbolic" and window_frames < self.min_acoustic_frames:
            raise ValueError(f"`chunk_length_s` {self.chunk_length_s:g} gives windows of {window_frames} acoustic frames, "
                             f"fewer than the {self.min_acoustic_frames} the ConvNet's {len(self.conv_channels)} poolings "
                             "need: no input could be classified.")  # fmt: skip
        if self.max_symbolic_length < 3:
            raise ValueError(f"`max_symbolic_length` must leave room for <s> and </s>, got {self.max_symbolic_length}.")

    # The attention layers write their weights out whenever they are asked for, under "sdpa" as under "eager", so the
    # config's `output_attentions` need not wait for "eager" (transformers' default rule for sdpa models).
    @property
    def output_attentions(self) -> bool:
        return self._output_attentions

    @output_attentions.setter
    def output_attentions(self, value: bool):
        self._output_attentions = value

    def validate_output_attentions(self):
        """Any attention implementation returns the weights (see `output_attentions`)."""

    @property
    def quadrant_names(self) -> dict:
        """Readable meaning of each quadrant label."""
        return dict(QUADRANT_NAMES)

    @property
    def feature_size(self) -> int:
        """Number of acoustic features per frame (the F of `input_features` (B, T, F))."""
        return acoustic_feature_size(self.acoustic_input, self.n_fft, self.n_mels, self.n_mfcc)

    @property
    def min_acoustic_frames(self) -> int:
        """The fewest real acoustic frames an input may have: each ConvNet block halves the time axis."""
        return 2 ** len(self.conv_channels)

    @property
    def num_frames(self) -> int:
        """Acoustic frames in one analysis window (the T of `input_features` (B, T, F))."""
        return 1 + int(round(self.chunk_length_s * self.sampling_rate)) // self.hop_length

    def default_vocab_size(self) -> int:
        """Vocabulary size of [`MDPianoTokenizer`] built from this configuration's token settings."""
        return len(
            symbolic_vocabulary(
                self.time_shift_resolution_ms, self.max_time_shift_ms, self.velocity_bins, self.max_harmonic
            )
        )


SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>", "unk_token": "<unk>"}


def config_values(config_file=None, settings=()) -> dict:
    """
    [`MDPianoConfig`] values from a JSON file (a recipe's, such as `configs/emopia-cpu.json`, or a saved
    `config.json`) and `KEY=VALUE` settings (values read as JSON, else as text), later ones winning; checked, so a
    script refuses them before any work.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not a JSON object, a setting without `=`, a name `MDPianoConfig` does not define (a
            misspelt one would otherwise leave the default in place without a word), or an invalid value.
    """
    values = {}
    if config_file is not None:
        try:
            values = json.loads(Path(config_file).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"The config file {config_file} is not valid JSON ({error}).") from error
        if not isinstance(values, dict):
            raise ValueError(f"The config file {config_file} must hold a JSON object of MDPianoConfig values, e.g. "
                             '{"d_model": 128}.')  # fmt: skip
    for item in settings:
        key, equals, text = item.partition("=")
        if not (key and equals):
            raise ValueError(f"The setting {item!r} is not KEY=VALUE (e.g. domains=acoustic).")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    # A saved config.json may be given whole: its Hub remote-code entries are no model's settings.
    unknown = sorted(set(values) - set(MDPianoConfig().to_dict()) - {"auto_map", "custom_pipelines"})
    if unknown:
        raise ValueError(f"MDPianoConfig has no {', '.join(unknown)}: check the spelling.")
    MDPianoConfig(**values)
    return values


def velocity_values(velocity_bins: int) -> list[int]:
    """
    Representative MIDI velocity of each of `velocity_bins` uniform bins over 0-127: their centres, rounded half up
    (Python's round-half-to-even merged neighbouring centres at 128 bins, where every centre ends in .5), within the
    velocities a note can have, 1-127.
    """
    width = 128 / velocity_bins
    return sorted({min(127, max(1, math.floor(width * (i + 0.5) + 0.5))) for i in range(velocity_bins)})


def symbolic_vocabulary(
    time_shift_resolution_ms: int, max_time_shift_ms: int, velocity_bins: int, max_harmonic: int
) -> list[str]:
    """
    The refined MIDI-like vocabulary, in id order: special tokens, `Note-On_<pitch>` and `Note-Off_<pitch>` for the
    128 MIDI pitches, `Harmonic_<n>` for n = 1..max_harmonic, `Velocity_<v>` for each velocity bin, and
    `Time-Shift_<ms>` for multiples of the time resolution up to `max_time_shift_ms`.

    Every value a token stands for is written in its string, so a saved `vocab.json` fully describes the
    quantisation.
    """
    tokens = list(SPECIAL_TOKENS.values())
    tokens += [f"Note-On_{p}" for p in range(128)]
    tokens += [f"Note-Off_{p}" for p in range(128)]
    tokens += [f"Harmonic_{n}" for n in range(1, max_harmonic + 1)]
    tokens += [f"Velocity_{v}" for v in velocity_values(velocity_bins)]
    tokens += [
        f"Time-Shift_{ms}" for ms in range(time_shift_resolution_ms, max_time_shift_ms + 1, time_shift_resolution_ms)
    ]
    return tokens


__all__ = ["MDPianoConfig", "check_quadrant_bias", "config_values", "QUADRANT_NAMES", "QUADRANT_AROUSAL", "QUADRANT_VALENCE", "symbolic_vocabulary"]

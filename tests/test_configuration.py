import pytest
from transformers import AutoConfig

from mdpiano import MDPianoConfig, MDPianoTokenizer


def test_defaults_follow_the_paper():
    config = MDPianoConfig()
    assert config.n_mfcc == 20
    assert config.conv_channels == [64, 128, 256]
    assert config.num_encoder_layers == 4
    assert (config.domains, config.acoustic_input, config.use_auxiliary_losses) == ("both", "mixed", True)
    assert config.id2label == {0: "Q1", 1: "Q2", 2: "Q3", 3: "Q4"}
    assert config.label2id == {"Q1": 0, "Q2": 1, "Q3": 2, "Q4": 3}
    assert config.quadrant_names["Q2"].startswith("tense")
    assert config.feature_size == config.n_mels + config.n_mfcc + 2
    assert MDPianoConfig(acoustic_input="stft").feature_size == config.n_fft // 2 + 1


def test_vocab_size_matches_the_tokenizer():
    for kwargs in ({}, {"velocity_bins": 16, "max_harmonic": 8, "time_shift_resolution_ms": 20}):
        config = MDPianoConfig(**kwargs)
        tokenizer = MDPianoTokenizer(
            time_shift_resolution_ms=config.time_shift_resolution_ms,
            max_time_shift_ms=config.max_time_shift_ms,
            velocity_bins=config.velocity_bins,
            max_harmonic=config.max_harmonic,
        )
        assert config.vocab_size == len(tokenizer)


@pytest.mark.parametrize("bins", [1, 3, 32, 100, 127, 128])
def test_velocity_bins_are_distinct_velocities(bins):
    from mdpiano.configuration_mdpiano import velocity_values

    values = velocity_values(bins)
    assert len(values) == min(bins, 127) and 1 <= values[0] and values[-1] <= 127  # 128 bins: velocities 1-127


@pytest.mark.parametrize(
    "field, value",
    [
        ("domains", "audio"),
        ("acoustic_input", "cqt"),
        ("n_mfcc", 0),
        ("hop_length", 4096),
        ("dropout", 1.5),
        ("num_attention_heads", 7),
        ("cda_num_heads", 3),
        ("conv_channels", []),
        ("chunk_length_s", -1),
        ("max_time_shift_ms", 1005),
        ("velocity_bins", 200),
        ("use_auxiliary_losses", "yes"),
        ("arousal_loss_weight", -1.0),
        ("valence_loss_weight", float("nan")),  # `--set valence_loss_weight=NaN` parses; the loss would be NaN
        ("initializer_range", float("inf")),
        ("chunk_length_s", 0.1),  # 5 frames: fewer than the ConvNet's three poolings need
        ("fmax", 20000.0),
        ("fmin", 15000.0),
        ("conv_kernel_size", 4),
        ("max_symbolic_length", 2),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MDPianoConfig(**{field: value})


def test_numpy_numbers_are_taken_as_python_numbers(tmp_path):
    import numpy as np

    config = MDPianoConfig(d_model=np.int64(128), dropout=np.float32(0.25), conv_channels=[np.int64(8), 16, 32],
                           chunk_length_s=np.float64(6.0), fmax=np.float32(8000.0), use_auxiliary_losses=np.bool_(True),
                           quadrant_logit_bias=list(np.zeros(4, np.float32)), pad_token_id=np.int64(0))  # fmt: skip
    assert (config.d_model, config.dropout, config.conv_channels, config.chunk_length_s) == (128, 0.25, [8, 16, 32], 6.0)
    assert type(config.d_model) is int and type(config.dropout) is float and type(config.conv_channels[0]) is int
    config.save_pretrained(tmp_path)  # JSON holds Python numbers only
    assert MDPianoConfig.from_pretrained(tmp_path).d_model == 128


def test_id2label_must_name_the_quadrants():
    with pytest.raises(ValueError, match="id2label"):
        MDPianoConfig(id2label={0: "happy", 1: "sad"})


def test_save_load_round_trip(tmp_path):
    config = MDPianoConfig(domains="symbolic", acoustic_input="stft", use_auxiliary_losses=False, d_model=128)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MDPianoConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()


def test_from_pretrained_overrides_are_checked(tmp_path):
    MDPianoConfig().save_pretrained(tmp_path)
    for override, field in (({"domains": "bogus"}, "domains"), ({"dropout": 1.5}, "dropout"),
                            ({"num_attention_heads": 5}, "num_attention_heads"), ({"quadrant_logit_bias": [1, 2]}, "quadrant_logit_bias"),
                            ({"vocab_size": 100}, "vocab_size")):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            MDPianoConfig.from_pretrained(tmp_path, **override)
    assert MDPianoConfig.from_pretrained(tmp_path, dropout=0.2).dropout == 0.2


def test_label2id_follows_the_id2label_given():
    config = MDPianoConfig(id2label={0: "Q4", 1: "Q3", 2: "Q2", 3: "Q1"})
    assert config.label2id == {"Q4": 0, "Q3": 1, "Q2": 2, "Q1": 3}
    with pytest.raises(ValueError, match="map 0-3"):
        MDPianoConfig(id2label={0: "Q1", 1: "Q2", 2: "Q3", 5: "Q4"})
    with pytest.raises(ValueError, match="inverse of id2label"):
        MDPianoConfig(id2label={0: "Q4", 1: "Q3", 2: "Q2", 3: "Q1"}, label2id={"Q1": 0, "Q2": 1, "Q3": 2, "Q4": 3})
    with pytest.raises(ValueError, match="pad_token_id"):
        MDPianoConfig(pad_token_id=-1)

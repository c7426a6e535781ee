import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from mdpiano import (
    MDPianoConfig,
    MDPianoForAudioClassification,
    MDPianoModel,
    MDPianoProcessor,
    MDPianoSymbolicForMaskedLM,
)
from mdpiano.modeling_mdpiano import masked_mean

ABLATIONS = {
    "full": {},
    "acoustic-only": {"domains": "acoustic"},
    "symbolic-only": {"domains": "symbolic"},
    "stft": {"acoustic_input": "stft", "n_fft": 512},
    "single-loss": {"use_auxiliary_losses": False},
}


def make_config(tiny_config, **overrides):
    return MDPianoConfig(**{**tiny_config.to_diff_dict(), **overrides})


@pytest.fixture(scope="module")
def batch(tiny_config, quadrant_clips):
    """Processor output for the four rendered quadrant clips, with their labels."""
    processor = MDPianoProcessor.from_config(tiny_config)
    inputs = processor(audio=[path for _, path, _ in quadrant_clips], return_tensors="pt")
    inputs["labels"] = torch.tensor([tiny_config.label2id[q] for q, _, _ in quadrant_clips])
    return inputs


def inputs_for(config, batch):
    """The batch, with STFT features when the config asks for them."""
    if config.acoustic_input == "mixed":
        return dict(batch)
    stft = torch.randn(batch["input_features"].shape[0], batch["input_features"].shape[1], config.feature_size)
    return {**batch, "input_features": stft}


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_forward_backward_every_ablation(tiny_config, batch, ablation):
    torch.manual_seed(0)
    config = make_config(tiny_config, **ABLATIONS[ablation])
    model = MDPianoForAudioClassification(config)
    outputs = model(**inputs_for(config, batch))
    assert outputs.logits.shape == (4, 4)
    if config.use_auxiliary_losses:
        assert outputs.arousal_logits.shape == outputs.valence_logits.shape == (4,)
    else:
        assert outputs.arousal_logits is None and outputs.valence_logits is None
    assert outputs.pooled_output.shape == (4, model.mdpiano.fused_size)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_single_domain_models_hold_only_their_branch(tiny_config):
    acoustic = MDPianoModel(make_config(tiny_config, domains="acoustic"))
    symbolic = MDPianoModel(make_config(tiny_config, domains="symbolic"))
    assert acoustic.symbolic_encoder is None and acoustic.cross_attention is None
    assert symbolic.acoustic_encoder is None and symbolic.cross_attention is None


def test_auxiliary_losses_add_to_cross_entropy(tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    outputs = model(**batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    arousal = torch.tensor([1.0, 1.0, 0.0, 0.0])  # Q1 Q2 Q3 Q4
    valence = torch.tensor([1.0, 0.0, 0.0, 1.0])
    expected = (
        torch.nn.functional.cross_entropy(outputs.logits, batch["labels"])
        + tiny_config.arousal_loss_weight * bce(outputs.arousal_logits, arousal)
        + tiny_config.valence_loss_weight * bce(outputs.valence_logits, valence)
    )
    torch.testing.assert_close(outputs.loss, expected)


def test_ignored_labels_are_left_out_of_every_loss(tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    labels = batch["labels"].clone()
    labels[1] = -100
    partial = model(**{**batch, "labels": labels}).loss
    kept = [0, 2, 3]
    alone = model(**{key: value[kept] for key, value in batch.items()}).loss
    torch.testing.assert_close(partial, alone)


def test_auxiliary_targets_ignore_value_and_bad_targets(tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    outputs = model(**batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    arousal = torch.tensor([1.0, -100.0, 0.0, 0.0])  # the second item's arousal unknown: out of the arousal loss only
    valence = torch.tensor([1.0, 0.0, 0.0, 1.0])
    expected = (
        torch.nn.functional.cross_entropy(outputs.logits, batch["labels"])
        + tiny_config.arousal_loss_weight * bce(outputs.arousal_logits[[0, 2, 3]], arousal[[0, 2, 3]])
        + tiny_config.valence_loss_weight * bce(outputs.valence_logits, valence)
    )
    torch.testing.assert_close(model(**batch, arousal_targets=arousal, valence_targets=valence).loss, expected)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    for targets, message in ((torch.tensor([1.0, 1000.0, 0.0, 0.0]), "must lie in"),
                             (torch.tensor([1.0, float("nan"), 0.0, 0.0]), "must lie in"),
                             (torch.ones(3), "the shape of `labels`")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            model(**batch, valence_targets=targets)
    with pytest.raises(ValueError, match="pass `labels` too"):
        model(**inputs, arousal_targets=arousal)
    with pytest.raises(ValueError, match="pass `labels` too"):  # a batch the CPU classifies in slices too
        model(**{key: value.repeat(2, *([1] * (value.dim() - 1))) for key, value in inputs.items()},
              arousal_targets=arousal.repeat(2))  # fmt: skip
    # No item with an arousal target: that term is 0, not the NaN of a mean over nothing.
    unknown = torch.full((4,), -100.0)
    expected = (torch.nn.functional.cross_entropy(outputs.logits, batch["labels"])
                + tiny_config.valence_loss_weight * bce(outputs.valence_logits, valence))  # fmt: skip
    torch.testing.assert_close(model(**batch, arousal_targets=unknown, valence_targets=valence).loss, expected)


def test_trainer_evaluation_finds_the_labels(tiny_config, batch, tmp_path):
    """transformers.Trainer counts every forward argument named like a label; with `labels` alone, a batch must
    still count as labelled, so evaluation reports a loss and calls compute_metrics."""
    import copy

    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(copy.deepcopy(tiny_config))  # the Trainer may set config fields
    rows = [{key: value[i] for key, value in batch.items()} for i in range(len(batch["labels"]))]
    seen = []
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[]),
                      eval_dataset=rows, compute_metrics=lambda prediction: seen.append(prediction) or {"calls": 1.0})  # fmt: skip
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and metrics["eval_calls"] == 1.0 and seen[0].label_ids is not None


def test_masked_lm_embeddings_resize_with_the_vocabulary(tiny_config):
    import copy

    torch.manual_seed(0)
    model = MDPianoSymbolicForMaskedLM(copy.deepcopy(tiny_config))  # resizing updates the model's config
    size = tiny_config.vocab_size + 3
    model.resize_token_embeddings(size, mean_resizing=False)
    assert model.get_input_embeddings().num_embeddings == model.get_output_embeddings().out_features == size
    assert model(torch.tensor([[1, size - 1, 2]])).logits.shape == (1, 3, size) and model.config.vocab_size == size


def test_classifier_embeddings_resize_with_the_vocabulary(tiny_config, batch):
    """Tokens added to the tokenizer before fine-tuning: the classifier's (and the base model's) embeddings follow."""
    import copy

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(copy.deepcopy(tiny_config))
    size = tiny_config.vocab_size + 2
    model.resize_token_embeddings(size, mean_resizing=False)
    assert model.get_input_embeddings() is model.mdpiano.symbolic_encoder.token_embeddings
    assert model.get_input_embeddings().num_embeddings == size and model.config.vocab_size == size
    ids = batch["input_ids"].clone()
    ids[:, 1] = size - 1  # a new token is read
    assert model(**{**batch, "input_ids": ids}).logits.shape == (len(ids), 4)
    acoustic = MDPianoForAudioClassification(MDPianoConfig(**{**tiny_config.to_diff_dict(), "domains": "acoustic"}))
    assert acoustic.get_input_embeddings() is None


def test_loss_falls_when_overfitting_real_clips(tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"overfitting 4 rendered clips: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    with torch.no_grad():
        assert (model(**batch).logits.argmax(-1) == batch["labels"]).all()


def test_padding_is_ignored_in_both_domains(tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    single = {k: v[:1] for k, v in batch.items() if k != "labels"}
    length = int(single["attention_mask"].sum())
    single = {**single, "input_ids": single["input_ids"][:, :length], "attention_mask": single["attention_mask"][:, :length]}
    padded = dict(single)
    padded["input_ids"] = torch.nn.functional.pad(single["input_ids"], (0, 37), value=tiny_config.pad_token_id)
    padded["attention_mask"] = torch.nn.functional.pad(single["attention_mask"], (0, 37))
    with torch.no_grad():
        reference = model(**single).logits
        torch.testing.assert_close(model(**padded).logits, reference, atol=1e-5, rtol=1e-5)
    # Part of the audio frames marked as padding, and garbage in them: the result must equal the truncated input,
    # whether or not the real frames are a multiple of the ConvNet's total pooling (8 frames).
    frames = single["input_features"].shape[1]
    for real in (frames // 2 // 8 * 8, frames // 2 // 8 * 8 + 3):
        garbage = single["input_features"].clone()
        garbage[:, real:] = 1e3
        mask = single["feature_attention_mask"].clone()
        mask[:, real:] = 0
        with torch.no_grad():
            truncated = model(input_features=single["input_features"][:, :real], feature_attention_mask=mask[:, :real],
                              input_ids=single["input_ids"], attention_mask=single["attention_mask"]).logits  # fmt: skip
            masked = model(input_features=garbage, feature_attention_mask=mask,
                           input_ids=single["input_ids"], attention_mask=single["attention_mask"]).logits  # fmt: skip
        torch.testing.assert_close(masked, truncated, atol=1e-5, rtol=1e-5)


def test_training_batch_statistics_leave_out_padded_frames(tiny_config, batch):
    """In training, batch normalisation must not see padded frames: a padded batch gives the logits and running
    statistics of the same batch cut to its real frames."""
    frames = batch["input_features"].shape[1]
    for real in (frames // 2 // 8 * 8, frames // 2 // 8 * 8 + 3):
        mask = batch["feature_attention_mask"].clone()
        mask[:, real:] = 0
        garbage = batch["input_features"].clone()
        garbage[:, real:] = 1e3
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        results = []
        for features, feature_mask in ((batch["input_features"][:, :real], mask[:, :real]), (garbage, mask)):
            torch.manual_seed(0)
            model = MDPianoForAudioClassification(make_config(tiny_config, dropout=0.0)).train()
            logits = model(input_features=features, feature_attention_mask=feature_mask, **inputs).logits
            norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
            assert len(norms) == len(model.config.conv_channels)
            results.append((logits, [torch.cat([norm.running_mean, norm.running_var]) for norm in norms]))
        (truncated, truncated_stats), (padded, padded_stats) = results
        torch.testing.assert_close(padded, truncated, atol=1e-4, rtol=1e-4)
        for got, expected in zip(padded_stats, truncated_stats):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ablation", ["full", "symbolic-only"])
def test_silence_gives_finite_outputs(tiny_config, ablation):
    config = make_config(tiny_config, **ABLATIONS[ablation])
    processor = MDPianoProcessor.from_config(config)
    inputs = processor(audio=np.zeros(22050 * 3, np.float32), sampling_rate=22050, return_tensors="pt")
    assert inputs["input_ids"].shape[1] == 2  # <s> </s>: nothing transcribed
    model = MDPianoForAudioClassification(config).eval()
    with torch.no_grad():
        outputs = model(**inputs)
    assert torch.isfinite(outputs.logits).all() and torch.isfinite(outputs.pooled_output).all()
    # Even a fully masked input stays finite.
    empty = {**inputs, "attention_mask": torch.zeros_like(inputs["attention_mask"])}
    with torch.no_grad():
        assert torch.isfinite(model(**empty).logits).all()


def test_batched_equals_unbatched(tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        together = model(**inputs).logits
        for index in range(4):
            length = int(inputs["attention_mask"][index].sum())
            alone = model(
                input_features=inputs["input_features"][index : index + 1],
                feature_attention_mask=inputs["feature_attention_mask"][index : index + 1],
                input_ids=inputs["input_ids"][index : index + 1, :length],
                attention_mask=inputs["attention_mask"][index : index + 1, :length],
            ).logits
            torch.testing.assert_close(alone[0], together[index], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ablation", ["full", "acoustic-only", "symbolic-only", "single-loss"])
def test_large_cpu_batches_run_in_slices_with_the_same_outputs(monkeypatch, tiny_config, batch, ablation):
    from mdpiano import modeling_mdpiano

    torch.manual_seed(0)
    config = make_config(tiny_config, **ABLATIONS[ablation])
    model = MDPianoForAudioClassification(config).eval()
    inputs = {k: v.repeat(3, *[1] * (v.ndim - 1)) for k, v in batch.items() if k != "labels"}
    # Rows of many token counts, padded on the right as the tokenizer does.
    for row, keep in enumerate(torch.linspace(2, inputs["input_ids"].shape[1], len(inputs["input_ids"])).long()):
        inputs["input_ids"][row, keep:] = config.pad_token_id
        inputs["attention_mask"][row, keep:] = 0
    if config.domains == "acoustic":
        inputs["input_ids"] = inputs["attention_mask"] = None
    calls = []
    monkeypatch.setattr(model.mdpiano, "forward", lambda *a, f=model.mdpiano.forward, **k: calls.append(a) or f(*a, **k))
    with torch.no_grad():
        sliced = model(**inputs)
        assert len(calls) == 3 and all(len(next(t for t in call if t is not None)) == 4 for call in calls)
        monkeypatch.setattr(modeling_mdpiano, "CPU_INFERENCE_BATCH", len(inputs["input_features"]))
        whole = model(**inputs)
    assert len(calls) == 4
    for name in ("logits", "arousal_logits", "valence_logits", "pooled_output"):
        if getattr(whole, name) is None:
            assert getattr(sliced, name) is None
        else:
            torch.testing.assert_close(getattr(sliced, name), getattr(whole, name), atol=1e-5, rtol=1e-5)


def test_reduced_precision_cpu_inference_pads_token_lengths_to_steps(monkeypatch, tiny_config, batch):
    """bfloat16 on CPU meets token lengths in steps of 64 (oneDNN keeps kernels per shape); the padding is masked,
    so in float32 the padded inputs give the same outputs."""
    from mdpiano.modeling_mdpiano import CPU_REDUCED_PRECISION_LENGTH_STEP

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(make_config(tiny_config)).eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    length = int(inputs["attention_mask"].sum(dim=1).max())
    inputs["input_ids"], inputs["attention_mask"] = inputs["input_ids"][:, :length], inputs["attention_mask"][:, :length]
    assert length % CPU_REDUCED_PRECISION_LENGTH_STEP
    padded_ids, padded_mask = model._pad_to_length_step(inputs["input_ids"], inputs["attention_mask"])
    assert padded_ids.shape[1] % CPU_REDUCED_PRECISION_LENGTH_STEP == 0 and padded_mask[:, length:].sum() == 0
    with torch.no_grad():
        plain = model(**inputs)
        padded = model(**{**inputs, "input_ids": padded_ids, "attention_mask": padded_mask})
    for name in ("logits", "arousal_logits", "valence_logits"):
        torch.testing.assert_close(getattr(padded, name), getattr(plain, name), atol=1e-5, rtol=1e-5)

    lengths = []
    model.to(torch.bfloat16)
    monkeypatch.setattr(model.mdpiano, "forward", lambda *a, f=model.mdpiano.forward, **k: lengths.append(a[2].shape[1]) or f(*a, **k))
    with torch.no_grad():
        model(**{**inputs, "input_features": inputs["input_features"].to(torch.bfloat16)})
    assert lengths == [padded_ids.shape[1]]


@pytest.mark.parametrize("in_channels, kernel_size", [(3, 3), (1, 3), (1, 5)])
def test_inference_folds_batch_norm_into_the_convolution(in_channels, kernel_size):
    """Inference (batch norm folded in; one input channel: a product of neighbourhoods) equals training's layers with
    frozen statistics."""
    from mdpiano.modeling_mdpiano import MDPianoConvBlock

    torch.manual_seed(0)
    block = MDPianoConvBlock(in_channels, 8, kernel_size)
    with torch.no_grad():  # trained-looking statistics, not the identity of a fresh layer
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.2, 3.0)
        block.norm.weight.normal_()
        block.norm.bias.normal_()
    hidden_states = torch.randn(5, in_channels, 16, 12)
    with torch.no_grad():
        block.train()
        norm = block.norm.eval()  # the unfused reference: frozen statistics, as at inference
        reference = block.pool(block.activation(norm(block.conv(hidden_states))))
        block.eval()
        output = block(hidden_states)
        torch.testing.assert_close(output, reference, atol=1e-5, rtol=1e-5)
        assert output.is_contiguous(memory_format=torch.channels_last)


def test_attention_implementation_is_sdpa_or_eager_as_asked(tmp_path, tiny_config, batch):
    from unittest import mock

    torch.manual_seed(0)
    MDPianoForAudioClassification(tiny_config).save_pretrained(tmp_path)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = {}
    for implementation, kernel_calls in (("sdpa", True), ("eager", False)):
        model = MDPianoForAudioClassification.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert model.config._attn_implementation == implementation
        sdpa = torch.nn.functional.scaled_dot_product_attention
        with mock.patch("torch.nn.functional.scaled_dot_product_attention", wraps=sdpa) as kernel, torch.no_grad():
            logits[implementation] = model(**inputs).logits
        assert kernel.called == kernel_calls
    torch.testing.assert_close(logits["eager"], logits["sdpa"], atol=1e-5, rtol=1e-5)
    model.set_attn_implementation("sdpa")  # switched on a loaded model too
    with mock.patch("torch.nn.functional.scaled_dot_product_attention", wraps=sdpa) as kernel, torch.no_grad():
        model(**inputs)
    assert kernel.called


def test_save_and_load_give_identical_logits(tmp_path, tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MDPianoForAudioClassification)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
    # The saved folder is Hub-ready: module files, auto_map and the custom pipeline.
    assert (tmp_path / "modeling_mdpiano.py").is_file() and (tmp_path / "pipeline_mdpiano.py").is_file()
    import json

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForAudioClassification"] == "modeling_mdpiano.MDPianoForAudioClassification"
    assert saved["auto_map"]["AutoModel"] == "modeling_mdpiano.MDPianoModel"
    assert saved["custom_pipelines"]["audio-classification"]["impl"] == "pipeline_mdpiano.MDPianoAudioClassificationPipeline"
    # Installed, the package's own pipeline serves the task: the entry is not kept on load.
    assert not hasattr(AutoConfig.from_pretrained(tmp_path), "custom_pipelines")
    assert not hasattr(model.config, "custom_pipelines")


def test_masked_lm_encoder_loads_by_name_into_the_classifier(tmp_path, tiny_config, batch):
    torch.manual_seed(0)
    pretrained = MDPianoSymbolicForMaskedLM(tiny_config)
    ids = batch["input_ids"]
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    masked = ids.clone()
    masked[:, 3] = 3  # <mask>
    outputs = pretrained(masked, batch["attention_mask"], labels=labels)
    assert outputs.logits.shape == (*ids.shape, tiny_config.vocab_size) and torch.isfinite(outputs.loss)
    pretrained.save_pretrained(tmp_path)
    classifier = MDPianoForAudioClassification.from_pretrained(tmp_path)
    for name, tensor in pretrained.mdpiano["symbolic_encoder"].state_dict().items():
        torch.testing.assert_close(classifier.mdpiano.symbolic_encoder.state_dict()[name], tensor, atol=0, rtol=0)
    assert isinstance(AutoModel.from_pretrained(tmp_path), MDPianoModel)


def test_return_dict_false_gives_tuples(monkeypatch, tiny_config, batch):
    from mdpiano import modeling_mdpiano

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(make_config(tiny_config)).eval()
    with torch.no_grad():
        expected = model(**batch)
        as_tuple = model(**batch, return_dict=False)
        # Large CPU batches run in slices: each slice still comes back whole before the outputs are joined.
        monkeypatch.setattr(modeling_mdpiano, "CPU_INFERENCE_BATCH", 2)
        model.config.return_dict = False
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        sliced = model(**inputs)
        base = model.mdpiano(inputs["input_features"], None, inputs["input_ids"], inputs["attention_mask"])
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 5  # loss, logits, arousal, valence, pooled
    for value, reference in zip(as_tuple, expected.to_tuple()):
        torch.testing.assert_close(value, reference)
    assert isinstance(sliced, tuple)
    torch.testing.assert_close(sliced[0], expected.logits, atol=1e-5, rtol=1e-5)
    assert isinstance(base, tuple) and base[0].shape == (4, 2 * tiny_config.d_model)


def test_clear_errors(tiny_config, batch):
    model = MDPianoForAudioClassification(tiny_config).eval()
    with pytest.raises(ValueError, match="needs `input_ids`"):
        model(input_features=batch["input_features"])
    with pytest.raises(ValueError, match="needs `input_features`"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match=r"shape \(batch, frames, 54\)"):
        model(input_features=batch["input_features"][..., :10], input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match="max_symbolic_length.*pipeline, which cuts it into windows"):
        model(input_features=batch["input_features"][:1], input_ids=torch.ones(1, 600, dtype=torch.long))
    with pytest.raises(ValueError, match=r"has 5 acoustic frames \(about .* needs at least 8 .*too short"):
        model(input_features=batch["input_features"][:, :5], input_ids=batch["input_ids"])
    short = torch.zeros_like(batch["feature_attention_mask"])
    short[:, :7] = 1  # padded to the window, but 7 real frames
    with pytest.raises(ValueError, match="has 7 acoustic frames"):
        model(input_features=batch["input_features"], feature_attention_mask=short, input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match="at least one token"):
        model(input_features=batch["input_features"], input_ids=batch["input_ids"][:, :0])
    with pytest.raises(TypeError, match="feature_attention_maks"):  # a misspelt argument is not silently ignored
        model(**batch, feature_attention_maks=batch["feature_attention_mask"])


def test_loaded_model_computes_the_same_loss(tmp_path, tiny_config, batch):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    model.save_pretrained(tmp_path)
    loaded = MDPianoForAudioClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).loss, model(**batch).loss)


def test_attentions_and_hidden_states_on_request(tiny_config, batch):
    torch.manual_seed(0)
    config = make_config(tiny_config)
    model = MDPianoForAudioClassification(config).eval()
    inputs = {k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in batch.items() if k != "labels"}  # 8 rows: no slicing
    with torch.no_grad():
        plain = model(**inputs)
        outputs = model(**inputs, output_attentions=True, output_hidden_states=True)
        base = model.mdpiano(**inputs, output_hidden_states=True)
    # The weights are computed outside the fused kernel: the same outputs.
    torch.testing.assert_close(outputs.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert plain.symbolic_attentions is None and plain.acoustic_encoder_hidden_states is None
    rows, tokens = inputs["input_ids"].shape
    token_mask = inputs["attention_mask"].bool()

    symbolic_states = outputs.symbolic_encoder_hidden_states
    assert len(symbolic_states) == config.num_encoder_layers + 1
    assert all(state.shape == (rows, tokens, config.d_model) for state in symbolic_states)
    torch.testing.assert_close(base.symbolic_pooled_output, masked_mean(symbolic_states[-1], token_mask))
    acoustic_states = outputs.acoustic_encoder_hidden_states
    assert len(acoustic_states) == len(config.conv_channels) + 1
    assert [state.shape[1] for state in acoustic_states[:-1]] == list(config.conv_channels)
    steps = base.acoustic_attention_mask.shape[1]
    assert acoustic_states[-1].shape == (rows, steps, config.d_model) and acoustic_states[-2].shape[2] == steps
    torch.testing.assert_close(base.acoustic_pooled_output, masked_mean(acoustic_states[-1], base.acoustic_attention_mask))

    assert len(outputs.symbolic_attentions) == config.num_encoder_layers
    for weights in outputs.symbolic_attentions:
        assert weights.shape == (rows, config.num_attention_heads, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert (weights.masked_select(~token_mask[:, None, None, :]) == 0).all()
    acoustic_to_symbolic = outputs.acoustic_to_symbolic_attentions
    assert acoustic_to_symbolic.shape == (rows, config.cda_num_heads, steps, tokens)
    assert (acoustic_to_symbolic.masked_select(~token_mask[:, None, None, :]) == 0).all()
    symbolic_to_acoustic = outputs.symbolic_to_acoustic_attentions
    assert symbolic_to_acoustic.shape == (rows, config.cda_num_heads, tokens, steps)
    torch.testing.assert_close(symbolic_to_acoustic.sum(-1), torch.ones(symbolic_to_acoustic.shape[:-1]))

    # The config's defaults, as in transformers (under sdpa too: the weights are written out when asked for); the
    # tuple form keeps every returned field.
    assert model.config._attn_implementation == "sdpa"
    model.config.output_attentions = True
    with torch.no_grad():
        as_tuple = model(**inputs, return_dict=False)
    assert len(as_tuple) == 4 + 3  # logits, arousal, valence, pooled (no labels: no loss), three attentions


@pytest.mark.parametrize("ablation", ["acoustic-only", "symbolic-only"])
def test_single_domain_models_return_their_own_states(tiny_config, batch, ablation):
    config = make_config(tiny_config, **ABLATIONS[ablation])
    model = MDPianoForAudioClassification(config).eval()
    with torch.no_grad():
        outputs = model(**batch, output_attentions=True, output_hidden_states=True)
    assert outputs.acoustic_to_symbolic_attentions is None and outputs.symbolic_to_acoustic_attentions is None
    if config.domains == "acoustic":
        assert outputs.symbolic_attentions is None and outputs.symbolic_encoder_hidden_states is None
        assert len(outputs.acoustic_encoder_hidden_states) == len(config.conv_channels) + 1
    else:
        assert outputs.acoustic_encoder_hidden_states is None
        assert len(outputs.symbolic_attentions) == len(outputs.symbolic_encoder_hidden_states) - 1


def test_masked_lm_returns_attentions_and_hidden_states(tiny_config, batch):
    model = MDPianoSymbolicForMaskedLM(tiny_config).eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        outputs = model(ids, mask, output_attentions=True, output_hidden_states=True)
        plain = model(ids, mask)
    torch.testing.assert_close(outputs.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert len(outputs.hidden_states) == tiny_config.num_encoder_layers + 1
    assert outputs.attentions[0].shape == (len(ids), tiny_config.num_attention_heads, ids.shape[1], ids.shape[1])
    assert plain.hidden_states is None and plain.attentions is None


def test_arousal_reads_the_acoustic_branch_and_valence_the_symbolic(tiny_config, batch):
    """The paper's wiring: the arousal head reads the acoustic encoder, the valence head the symbolic one, so other
    tokens leave the arousal logits as they were, and other audio features the valence logits."""
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(make_config(tiny_config)).eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    other_tokens = {**inputs, "input_ids": inputs["input_ids"].flip(0), "attention_mask": inputs["attention_mask"].flip(0)}
    other_audio = {**inputs, "input_features": inputs["input_features"].flip(0), "feature_attention_mask": inputs["feature_attention_mask"].flip(0)}
    with torch.no_grad():
        reference, tokens_changed, audio_changed = (model(**x) for x in (inputs, other_tokens, other_audio))
    torch.testing.assert_close(tokens_changed.arousal_logits, reference.arousal_logits)
    torch.testing.assert_close(audio_changed.valence_logits, reference.valence_logits)
    assert not torch.allclose(tokens_changed.valence_logits, reference.valence_logits)
    assert not torch.allclose(audio_changed.arousal_logits, reference.arousal_logits)

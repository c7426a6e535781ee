"""The mdpiano model: acoustic ConvNet, symbolic Transformer, bidirectional cross-domain attention (Zhu et al., 2023)."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_VALENCE, MDPianoConfig

# Written into config.json of a Hub-ready folder, so `pipeline("audio-classification", model=<folder>,
# trust_remote_code=True)` runs mdpiano's own pipeline without the package installed.
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_mdpiano.MDPianoAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}

# Windows per forward pass when a larger batch is classified on CPU: there, bigger batches ran slower per window
# (attention over every window padded to the longest token sequence, and activations too large for the allocator to
# reuse without page faults).
CPU_INFERENCE_BATCH = 4
# Token sequences are padded to a multiple of this in reduced-precision CPU inference: oneDNN keeps compiled
# bfloat16/float16 kernels for every input shape it meets, and a long recording's windows bring many lengths.
CPU_REDUCED_PRECISION_LENGTH_STEP = 64
REDUCED_PRECISION = (torch.bfloat16, torch.float16)
IGNORE_INDEX = -100  # a label left out of the loss, as in torch's and transformers' losses


@dataclass
class MDPianoModelOutput(ModelOutput):
    r"""
    Output of [`MDPianoModel`].

    Args:
        pooled_output (`torch.FloatTensor` of shape (batch, fused_size)):
            The fused representation: the masked means of both domains after cross-domain attention, concatenated
            (`fused_size = 2 * d_model`), or the mean of the one domain in a single-domain ablation (`d_model`).
        acoustic_pooled_output (`torch.FloatTensor` of shape (batch, d_model)):
            Masked mean of the acoustic encoder output before fusion (read by the arousal head).
        symbolic_pooled_output (`torch.FloatTensor` of shape (batch, d_model)):
            Masked mean of the symbolic encoder output before fusion (read by the valence head).
        acoustic_hidden_states (`torch.FloatTensor` of shape (batch, acoustic_steps, d_model)):
            Acoustic sequence after fusion; `acoustic_steps` is the frame count divided by 2 per ConvNet block.
        symbolic_hidden_states (`torch.FloatTensor` of shape (batch, tokens, d_model)):
            Symbolic sequence after fusion.
        acoustic_attention_mask (`torch.LongTensor` of shape (batch, acoustic_steps)):
            Valid acoustic steps.
        acoustic_encoder_hidden_states, symbolic_encoder_hidden_states, symbolic_attentions,
        acoustic_to_symbolic_attentions, symbolic_to_acoustic_attentions:
            Returned with `output_hidden_states` / `output_attentions`; see [`MDPianoAudioClassifierOutput`].
    """

    pooled_output: torch.FloatTensor | None = None
    acoustic_pooled_output: torch.FloatTensor | None = None
    symbolic_pooled_output: torch.FloatTensor | None = None
    acoustic_hidden_states: torch.FloatTensor | None = None
    symbolic_hidden_states: torch.FloatTensor | None = None
    acoustic_attention_mask: torch.LongTensor | None = None
    acoustic_encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    symbolic_encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    symbolic_attentions: tuple[torch.FloatTensor, ...] | None = None
    acoustic_to_symbolic_attentions: torch.FloatTensor | None = None
    symbolic_to_acoustic_attentions: torch.FloatTensor | None = None


@dataclass
class MDPianoAudioClassifierOutput(ModelOutput):
    r"""
    Output of [`MDPianoForAudioClassification`].

    Args:
        loss (`torch.FloatTensor` of shape ()):
            Cross-entropy of the quadrant logits, plus the weighted binary cross-entropies of the arousal and valence
            logits when `config.use_auxiliary_losses`; returned when `labels` are given.
        logits (`torch.FloatTensor` of shape (batch, 4)):
            Quadrant logits, in the order of `config.id2label`: the network's own, without the decision calibration
            (`config.quadrant_logit_bias`) that the pipeline applies to its probabilities
            (`mdpiano.apply_quadrant_bias(logits.softmax(-1), config.quadrant_logit_bias)` gives the pipeline's for
            one window of a model without `note_statistics_fusion`; a fusing model, as shipped, also weighs in the
            recording's note statistics).
        arousal_logits (`torch.FloatTensor` of shape (batch,)):
            Logit of high arousal, from the acoustic branch (`None` without auxiliary losses).
        valence_logits (`torch.FloatTensor` of shape (batch,)):
            Logit of positive valence, from the symbolic branch (`None` without auxiliary losses).
        pooled_output (`torch.FloatTensor` of shape (batch, fused_size)):
            The fused representation the quadrant classifier reads.
        acoustic_encoder_hidden_states (`tuple(torch.FloatTensor)`, with `output_hidden_states`):
            The acoustic ConvNet's states before fusion: each block's output, of shape (batch, channels, steps, bins)
            (padded steps zeroed), then the projected sequence, of shape (batch, acoustic_steps, d_model).
        symbolic_encoder_hidden_states (`tuple(torch.FloatTensor)`, with `output_hidden_states`):
            The symbolic encoder's states before fusion, each of shape (batch, tokens, d_model): the embeddings, the
            output of every layer but the last, and the encoder output (the last layer's, after the final layer
            norm): `num_encoder_layers + 1` in all.
        symbolic_attentions (`tuple(torch.FloatTensor)`, with `output_attentions`):
            Self-attention weights of each symbolic encoder layer, of shape (batch, num_attention_heads, tokens,
            tokens); padded keys get 0.
        acoustic_to_symbolic_attentions (`torch.FloatTensor`, with `output_attentions`):
            Cross-domain attention of acoustic steps over tokens, of shape (batch, cda_num_heads, acoustic_steps,
            tokens): which notes each stretch of audio reads.
        symbolic_to_acoustic_attentions (`torch.FloatTensor`, with `output_attentions`):
            Cross-domain attention of tokens over acoustic steps, of shape (batch, cda_num_heads, tokens,
            acoustic_steps).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    arousal_logits: torch.FloatTensor | None = None
    valence_logits: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None
    acoustic_encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    symbolic_encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    symbolic_attentions: tuple[torch.FloatTensor, ...] | None = None
    acoustic_to_symbolic_attentions: torch.FloatTensor | None = None
    symbolic_to_acoustic_attentions: torch.FloatTensor | None = None


@dataclass
class MDPianoMaskedLMOutput(ModelOutput):
    r"""
    Output of [`MDPianoSymbolicForMaskedLM`].

    Args:
        loss (`torch.FloatTensor` of shape ()): cross-entropy over the masked positions (labels other than -100).
        logits (`torch.FloatTensor` of shape (batch, tokens, vocab_size)): token prediction scores.
        hidden_states (`tuple(torch.FloatTensor)`, with `output_hidden_states`): the encoder's states, as
            `symbolic_encoder_hidden_states` of [`MDPianoAudioClassifierOutput`].
        attentions (`tuple(torch.FloatTensor)`, with `output_attentions`): each layer's self-attention weights, of
            shape (batch, num_attention_heads, tokens, tokens).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def check_auxiliary_targets(labels: torch.Tensor | None, **targets: torch.Tensor | None) -> None:
    """Refuses arousal or valence targets without `labels` (their losses are added to the quadrant loss), of another
    shape than `labels`, or outside [0, 1] other than the ignore value -100."""
    for name, values in targets.items():
        if values is None:
            continue
        if labels is None:
            raise ValueError(f"`{name}` are targets of an auxiliary loss, added to the quadrant loss: pass `labels` too.")
        if values.shape != labels.shape:
            raise ValueError(f"`{name}` must have the shape of `labels`, {tuple(labels.shape)}; got {tuple(values.shape)}.")
        known = values[values != IGNORE_INDEX].float()
        if not bool(((known >= 0) & (known <= 1)).all()):
            raise ValueError(f"`{name}` must lie in [0, 1] (1: high arousal / positive valence), or be -100 to leave an "
                             f"item out of that loss; got {values.tolist()}.")  # fmt: skip


def masked_mean(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (batch, length, dim) states where `mask` (batch, length) is 1."""
    weights = mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MDPianoConvBlock(nn.Module):
    """3x3 convolution, batch normalisation, 2x2 max pooling, ReLU: (B, C_in, T, F) -> (B, C_out, T // 2, F // 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def _folded_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolution weight and bias with the (frozen) batch normalisation folded in, channels-last."""
        scale = self.norm.weight.float() * torch.rsqrt(self.norm.running_var.float() + self.norm.eps)
        weight = self.conv.weight.float() * scale[:, None, None, None]
        bias = (self.conv.bias.float() - self.norm.running_mean.float()) * scale + self.norm.bias.float()
        dtype = self.conv.weight.dtype
        return weight.to(dtype).contiguous(memory_format=torch.channels_last), bias.to(dtype)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`frame_mask` (B, T), 1 for real frames: in training, padded frames stay out of the batch statistics."""
        if self.training and frame_mask is not None and not bool(frame_mask.all()):
            hidden_states = self._masked_batch_norm(self.conv(hidden_states), frame_mask)
        elif self.training:
            hidden_states = self.norm(self.conv(hidden_states))
        elif self.conv.in_channels == 1:
            hidden_states = self._single_channel_inference(hidden_states)
        else:
            # One pass over the block's largest activations instead of two.
            weight, bias = self._folded_parameters()
            hidden_states = nn.functional.conv2d(hidden_states, weight, bias, padding=self.conv.padding)
        # Channels-last: on CPU, pooling is several times faster and the next convolution faster too. Pooling before
        # the ReLU gives the same values (ReLU is monotonic) on a quarter of them.
        return self.activation(self.pool(hidden_states.contiguous(memory_format=torch.channels_last)))

    def _masked_batch_norm(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Training-mode batch normalisation whose statistics, running ones included, come from real frames only.
        The statistics are summed in float32; the activations keep their dtype, and no full-size copy is kept."""
        norm = self.norm
        weights = frame_mask[:, None, :, None].to(hidden_states.dtype)
        count = frame_mask.sum().float() * hidden_states.shape[3]
        mean = (hidden_states * weights).sum(dim=(0, 2, 3), dtype=torch.float32) / count
        mean_square = (hidden_states.square() * weights).sum(dim=(0, 2, 3), dtype=torch.float32) / count
        variance = (mean_square - mean.square()).clamp(min=0.0)
        if norm.track_running_stats:
            with torch.no_grad():
                norm.num_batches_tracked += 1
                momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
                norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
                unbiased = variance * count / (count - 1).clamp(min=1)  # as nn.BatchNorm2d keeps it
                norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), momentum)
        scale = norm.weight.float() * torch.rsqrt(variance + norm.eps)
        shift = norm.bias.float() - mean * scale
        dtype = hidden_states.dtype
        return hidden_states * scale.to(dtype)[:, None, None] + shift.to(dtype)[:, None, None]

    def _single_channel_inference(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """
        The first block's convolution (one input channel, batch norm folded in) as one product of each frame's
        k x k neighbourhoods with the kernels: (B, 1, T, F) -> (B, C_out, T, F), channels-last as it is computed.
        oneDNN writes this block's output, the model's largest activation, channels-first, and turning it
        channels-last for pooling cost as much again; a product of (B, T, F, k*k) neighbourhoods is channels-last
        from the start.
        """
        weight, bias = self._folded_parameters()
        (height, width), (pad_height, pad_width) = self.conv.kernel_size, self.conv.padding
        padded = nn.functional.pad(hidden_states[:, 0], (pad_width, pad_width, pad_height, pad_height))
        neighbourhoods = padded.unfold(1, height, 1).unfold(2, width, 1)  # (B, T, F, height, width)
        batch, frames, bins = neighbourhoods.shape[:3]
        neighbourhoods = neighbourhoods.reshape(batch, frames, bins, height * width)
        output = nn.functional.linear(neighbourhoods, weight.reshape(len(weight), -1), bias)
        return output.permute(0, 3, 1, 2)


class MDPianoAcousticEncoder(nn.Module):
    """
    The acoustic ConvNet: (batch, frames, features) -> (batch, frames // 2^blocks, d_model).

    Each block halves time and frequency; the channels x remaining frequencies of each time step are flattened and
    projected to `d_model`. Padded frames are zeroed before every block, and a pooled step is real only when both
    its frames are (unpadded, pooling drops an odd last frame the same way), so the real steps and their values
    never depend on how much padding follows. Every input needs at least 2^blocks real frames.
    """

    def __init__(self, config: MDPianoConfig):
        super().__init__()
        channels = [1, *config.conv_channels]
        self.blocks = nn.ModuleList(
            MDPianoConvBlock(c_in, c_out, config.conv_kernel_size) for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        reduced_features = config.feature_size // 2 ** len(config.conv_channels)
        if reduced_features < 1:
            raise ValueError(
                f"{len(config.conv_channels)} ConvNet blocks leave no frequency bins of {config.feature_size} features."
            )
        self.projection = nn.Linear(channels[-1] * reduced_features, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.min_frames = config.min_acoustic_frames
        self.frame_seconds = config.hop_length / config.sampling_rate

    def forward(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The projected sequence, its mask of real steps, and (with `output_hidden_states`) each block's output
        followed by the projected sequence."""
        real_frames = min(input_features.shape[1], int(attention_mask.sum(dim=1).min()))
        if real_frames < self.min_frames:
            raise ValueError(
                f"An input has {real_frames} acoustic frame{'' if real_frames == 1 else 's'} (about "
                f"{real_frames * self.frame_seconds:.2f} s of audio); the model needs at least {self.min_frames} "
                f"({self.min_frames * self.frame_seconds:.2f} s): the recording is too short to analyse."
            )
        # Features come as float32; a model loaded in another dtype (e.g. bfloat16) takes them in its own.
        hidden_states = input_features.to(self.projection.weight.dtype).unsqueeze(1)
        mask = attention_mask
        block_outputs = []
        for block in self.blocks:
            hidden_states = block(hidden_states * mask[:, None, :, None].to(hidden_states.dtype), mask)
            steps = hidden_states.shape[2]
            mask = mask[:, : 2 * steps].reshape(mask.shape[0], steps, 2).amin(dim=-1)
            if output_hidden_states:
                block_outputs.append(hidden_states * mask[:, None, :, None].to(hidden_states.dtype))
        hidden_states = hidden_states * mask[:, None, :, None].to(hidden_states.dtype)
        batch, channels, steps, bins = hidden_states.shape
        hidden_states = hidden_states.permute(0, 2, 1, 3).reshape(batch, steps, channels * bins)
        hidden_states = self.dropout(self.projection(hidden_states))
        return hidden_states, mask, (*block_outputs, hidden_states) if output_hidden_states else None


class MDPianoAttention(nn.Module):
    """
    Multi-head scaled dot-product attention of `queries` (batch, L_q, d_model) over `keys_values` (batch, L_kv,
    d_model), where `key_mask` (batch, L_kv) is 1 for keys to attend to. Self-attention when both are the same.
    Returns the attended queries (batch, L_q, d_model) and, with `output_attentions`, the weights (batch, heads,
    L_q, L_kv).
    """

    def __init__(self, config: MDPianoConfig, num_heads: int):
        super().__init__()
        self.config = config  # its `_attn_implementation` ("sdpa" or "eager") is read at each call
        d_model, dropout = config.d_model, config.attention_dropout
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.output = nn.Linear(d_model, d_model)

    def forward(
        self, queries: torch.Tensor, keys_values: torch.Tensor, key_mask: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, query_length, d_model = queries.shape
        query = self.query(queries).view(batch, query_length, self.num_heads, self.head_dim).transpose(1, 2)
        key, value = (
            self.key_value(keys_values)
            .view(batch, keys_values.shape[1], 2, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        key_mask = key_mask[:, None, None, :].bool()
        dropout = self.dropout if self.training else 0.0
        weights = None
        # The fused kernel keeps its weights to itself: for them, or as asked ("eager"), the same computation written out.
        if output_attentions or self.config._attn_implementation == "eager":
            scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim)
            weights = scores.masked_fill(~key_mask, float("-inf")).softmax(dim=-1)
            attended = nn.functional.dropout(weights, dropout, self.training) @ value
        else:
            attended = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout)
        return self.output(attended.transpose(1, 2).reshape(batch, query_length, d_model)), weights


class MDPianoEncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer: self-attention and a GELU feed-forward block, each residual."""

    def __init__(self, config: MDPianoConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.d_model)
        self.attention = MDPianoAttention(config, config.num_attention_heads)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.d_model, config.intermediate_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.intermediate_size, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        normed = self.attention_norm(hidden_states)
        attended, weights = self.attention(normed, normed, attention_mask, output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.feed_forward(self.feed_forward_norm(hidden_states))), weights


class MDPianoSymbolicEncoder(nn.Module):
    """
    The symbolic Transformer encoder: token ids (batch, tokens) -> (batch, tokens, d_model), with learned absolute
    positions and pre-norm layers.
    """

    def __init__(self, config: MDPianoConfig):
        super().__init__()
        self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_symbolic_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(MDPianoEncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"{length} symbolic tokens exceed `max_symbolic_length` ({self.position_embeddings.num_embeddings}); "
                "the model reads at most that many. Tokenize with truncation (the processor's default, unless "
                "`truncation=False`), or classify a long recording through the pipeline, which cuts it into windows."
            )
        if input_ids.max() >= self.token_embeddings.num_embeddings or input_ids.min() < 0:
            raise ValueError(f"Token ids must lie in [0, {self.token_embeddings.num_embeddings}); check the tokenizer.")
        positions = torch.arange(length, device=input_ids.device)
        hidden_states = self.dropout(self.token_embeddings(input_ids) + self.position_embeddings(positions))
        all_hidden_states, all_attentions = [], []
        for layer in self.layers:
            all_hidden_states.append(hidden_states)
            hidden_states, weights = layer(hidden_states, attention_mask, output_attentions)
            all_attentions.append(weights)
        hidden_states = self.final_layer_norm(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=(*all_hidden_states, hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


class MDPianoCrossDomainAttention(nn.Module):
    """
    Bidirectional cross-domain attention (the paper's Eq. 1-3): acoustic queries attend to symbolic keys and values,
    symbolic queries to acoustic ones (multi-head scaled dot-product attention), each with a residual connection and
    layer norm. Returns both sequences and, with `output_attentions`, the acoustic-to-symbolic and
    symbolic-to-acoustic weights.
    """

    def __init__(self, config: MDPianoConfig):
        super().__init__()
        self.acoustic_to_symbolic = MDPianoAttention(config, config.cda_num_heads)
        self.symbolic_to_acoustic = MDPianoAttention(config, config.cda_num_heads)
        self.acoustic_norm = nn.LayerNorm(config.d_model)
        self.symbolic_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, acoustic, acoustic_mask, symbolic, symbolic_mask, output_attentions: bool = False):
        attended_symbolic, acoustic_weights = self.acoustic_to_symbolic(acoustic, symbolic, symbolic_mask, output_attentions)
        attended_acoustic, symbolic_weights = self.symbolic_to_acoustic(symbolic, acoustic, acoustic_mask, output_attentions)
        acoustic = self.acoustic_norm(acoustic + self.dropout(attended_symbolic))
        symbolic = self.symbolic_norm(symbolic + self.dropout(attended_acoustic))
        return acoustic, symbolic, acoustic_weights, symbolic_weights


class MDPianoPreTrainedModel(PreTrainedModel):
    config: MDPianoConfig
    config_class = MDPianoConfig
    base_model_prefix = "mdpiano"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    _supports_sdpa = True  # torch's scaled_dot_product_attention, the default; "eager" writes it out
    # The attention layers read `config._attn_implementation` at each call, so `set_attn_implementation` may switch it
    # (transformers infers this only for layers built on its attention interface).
    _can_set_attn_implementation_cached_value = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, reading weights from safetensors only (never a pickle)."""
        from safetensors import SafetensorError

        kwargs.setdefault("use_safetensors", True)
        try:
            return super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            raise OSError(
                f"The weights of {args[0] if args else kwargs.get('pretrained_model_name_or_path')} are not a readable "
                f"safetensors file ({error}): the file is corrupt or truncated; download or save the model again."
            ) from error

    def _token_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """`attention_mask`, or, when it is `None`, 1 wherever `input_ids` is not the pad token."""
        return (input_ids != self.config.pad_token_id).long() if attention_mask is None else attention_mask

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):  # ReLU ConvNet: He initialisation
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def _ensure_one_valid(mask: torch.Tensor) -> torch.Tensor:
    """A fully masked row would make attention and means undefined: keep its first position."""
    empty = mask.sum(dim=1) == 0
    if empty.any():
        mask = mask.clone()
        mask[empty, 0] = 1
    return mask


class MDPianoModel(MDPianoPreTrainedModel):
    """
    Both domain encoders and their cross-domain attention. `config.domains` selects the branches: `"both"` (the full
    model), `"acoustic"` or `"symbolic"` (single-domain ablations, without fusion).
    """

    def __init__(self, config: MDPianoConfig):
        super().__init__(config)
        self.acoustic_encoder = MDPianoAcousticEncoder(config) if config.domains in ("both", "acoustic") else None
        self.symbolic_encoder = MDPianoSymbolicEncoder(config) if config.domains in ("both", "symbolic") else None
        self.cross_attention = MDPianoCrossDomainAttention(config) if config.domains == "both" else None
        self.post_init()

    @property
    def fused_size(self) -> int:
        return 2 * self.config.d_model if self.config.domains == "both" else self.config.d_model

    # The token embeddings, so that `resize_token_embeddings` follows tokens added to the tokenizer; None for a model
    # that reads no tokens (domains="acoustic").
    def get_input_embeddings(self) -> nn.Embedding | None:
        return self.symbolic_encoder.token_embeddings if self.symbolic_encoder is not None else None

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        if self.symbolic_encoder is None:
            raise ValueError("This model reads no tokens (domains='acoustic'): it has no token embeddings to set.")
        self.symbolic_encoder.token_embeddings = embeddings

    @can_return_tuple
    def forward(
        self,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MDPianoModelOutput:
        r"""
        Args:
            input_features (`torch.FloatTensor` of shape (batch, frames, feature_size)):
                Acoustic features from [`MDPianoFeatureExtractor`].
            feature_attention_mask (`torch.LongTensor` of shape (batch, frames)):
                1 for real frames, 0 for padding; all ones when omitted.
            input_ids (`torch.LongTensor` of shape (batch, tokens)):
                Symbolic tokens from [`MDPianoTokenizer`].
            attention_mask (`torch.LongTensor` of shape (batch, tokens)):
                1 for real tokens, 0 for padding; derived from `pad_token_id` when omitted.
            output_attentions (`bool`, *optional*, defaults to `config.output_attentions`):
                Also return the attention weights of the symbolic encoder and of the cross-domain attention.
            output_hidden_states (`bool`, *optional*, defaults to `config.output_hidden_states`):
                Also return the states of every acoustic block and symbolic layer.
            return_dict (`bool`, *optional*, defaults to `config.return_dict`):
                `False` returns a tuple of the outputs that are not `None` instead of the `ModelOutput`.
        """
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        acoustic = acoustic_mask = symbolic = symbolic_mask = None
        acoustic_pooled = symbolic_pooled = acoustic_states = symbolic_outputs = None
        if self.acoustic_encoder is not None:
            if input_features is None:
                raise ValueError(
                    f"This model (domains={self.config.domains!r}) needs `input_features`: pass the audio through "
                    "MDPianoProcessor."
                )
            if input_features.ndim != 3 or input_features.shape[-1] != self.config.feature_size:
                raise ValueError(
                    f"`input_features` must have shape (batch, frames, {self.config.feature_size}) for "
                    f"acoustic_input={self.config.acoustic_input!r}; got {tuple(input_features.shape)}."
                )
            if feature_attention_mask is None:
                feature_attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long, device=input_features.device)
            acoustic, acoustic_mask, acoustic_states = self.acoustic_encoder(
                input_features, feature_attention_mask, output_hidden_states
            )
            acoustic_pooled = masked_mean(acoustic, acoustic_mask)
        if self.symbolic_encoder is not None:
            if input_ids is None:
                raise ValueError(
                    f"This model (domains={self.config.domains!r}) needs `input_ids`: pass the audio (or MIDI) through "
                    "MDPianoProcessor."
                )
            if input_ids.ndim != 2 or input_ids.shape[1] == 0:
                raise ValueError(
                    f"`input_ids` must have shape (batch, tokens) with at least one token (the tokenizer always gives "
                    f"<s> and </s>); got {tuple(input_ids.shape)}."
                )
            symbolic_mask = _ensure_one_valid(self._token_mask(input_ids, attention_mask))
            symbolic_outputs = self.symbolic_encoder(input_ids, symbolic_mask, output_attentions, output_hidden_states)
            symbolic = symbolic_outputs.last_hidden_state
            symbolic_pooled = masked_mean(symbolic, symbolic_mask)

        cross_weights = (None, None)
        if self.cross_attention is not None:
            acoustic, symbolic, *cross_weights = self.cross_attention(
                acoustic, acoustic_mask, symbolic, symbolic_mask, output_attentions
            )
            pooled = torch.cat([masked_mean(acoustic, acoustic_mask), masked_mean(symbolic, symbolic_mask)], dim=-1)
        else:
            pooled = acoustic_pooled if acoustic_pooled is not None else symbolic_pooled
        return MDPianoModelOutput(
            pooled_output=pooled,
            acoustic_pooled_output=acoustic_pooled,
            symbolic_pooled_output=symbolic_pooled,
            acoustic_hidden_states=acoustic,
            symbolic_hidden_states=symbolic,
            acoustic_attention_mask=acoustic_mask,
            acoustic_encoder_hidden_states=acoustic_states,
            symbolic_encoder_hidden_states=symbolic_outputs.hidden_states if symbolic_outputs is not None else None,
            symbolic_attentions=symbolic_outputs.attentions if symbolic_outputs is not None else None,
            acoustic_to_symbolic_attentions=cross_weights[0],
            symbolic_to_acoustic_attentions=cross_weights[1],
        )


class MDPianoForAudioClassification(MDPianoPreTrainedModel):
    """
    [`MDPianoModel`] with the quadrant classifier on the fused representation, an arousal head on the acoustic branch
    and a valence head on the symbolic branch (in a single-domain ablation both heads read the one branch).
    """

    def __init__(self, config: MDPianoConfig):
        super().__init__(config)
        self.mdpiano = MDPianoModel(config)
        fused_size = self.mdpiano.fused_size
        self.classifier = nn.Sequential(
            nn.Dropout(config.classifier_dropout),
            nn.Linear(fused_size, config.d_model),
            nn.ReLU(),
            nn.Dropout(config.classifier_dropout),
            nn.Linear(config.d_model, config.num_labels),
        )
        if config.use_auxiliary_losses:
            self.arousal_head = nn.Sequential(nn.Dropout(config.classifier_dropout), nn.Linear(config.d_model, 1))
            self.valence_head = nn.Sequential(nn.Dropout(config.classifier_dropout), nn.Linear(config.d_model, 1))
        else:
            self.arousal_head = self.valence_head = None
        # Plain lists, not buffers: `from_pretrained` builds models on the meta device and never fills buffers that
        # are not in the checkpoint.
        quadrants = [config.id2label[i] for i in range(config.num_labels)]
        self.label_arousal = [float(QUADRANT_AROUSAL[q]) for q in quadrants]
        self.label_valence = [float(QUADRANT_VALENCE[q]) for q in quadrants]
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding | None:
        return self.mdpiano.get_input_embeddings()

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.mdpiano.set_input_embeddings(embeddings)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        `PreTrainedModel.save_pretrained`; when the class is registered for an Auto class (importing mdpiano does
        it), the folder is Hub-ready: the module files, `auto_map` (this class and, for embeddings, `AutoModel`), and
        the custom pipeline in `config.json`.
        """
        hub_ready = self._auto_class is not None and not hasattr(self.config, "custom_pipelines")
        if hub_ready:
            self.config.custom_pipelines = CUSTOM_PIPELINES
            # `AutoModel` too, for the fused embeddings: transformers maps only the saved class's own Auto class.
            auto_map = getattr(self.config, "auto_map", None) or {}
            self.config.auto_map = {**auto_map, "AutoModel": "modeling_mdpiano.MDPianoModel"}
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if hub_ready:
                del self.config.custom_pipelines
        if hub_ready:
            from transformers.dynamic_module_utils import custom_object_save

            from .pipeline_mdpiano import MDPianoAudioClassificationPipeline

            custom_object_save(MDPianoAudioClassificationPipeline, save_directory)

    @can_return_tuple
    def forward(
        self,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        arousal_targets: torch.FloatTensor | None = None,
        valence_targets: torch.FloatTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MDPianoAudioClassifierOutput:
        r"""
        Args:
            input_features, feature_attention_mask, input_ids, attention_mask, output_attentions, output_hidden_states,
            return_dict: see [`MDPianoModel.forward`].
            labels (`torch.LongTensor` of shape (batch,)):
                Quadrant indices (`config.label2id`); -100 leaves an item out of every loss.
            arousal_targets, valence_targets (`torch.FloatTensor` of shape (batch,)):
                1 for high arousal / positive valence (values in [0, 1]; -100 leaves an item out of that loss); derived
                from `labels` when omitted, and used only with `labels`. (Not named `*_labels`:
                `transformers.Trainer` counts every argument named so as a label, and would find a batch with
                `labels` alone unlabelled.)
        """
        inputs = (input_features, feature_attention_mask, input_ids, attention_mask)
        if any(value is not None and not isinstance(value, torch.Tensor) for value in inputs):
            raise TypeError("The model takes tensors: call the processor with `return_tensors=\"pt\"`.")
        check_auxiliary_targets(labels, arousal_targets=arousal_targets, valence_targets=valence_targets)
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        reference = next((tensor for tensor in inputs if tensor is not None), None)
        # CPU inference reshapes the batch for speed; states and weights are returned as the inputs were shaped.
        cpu_inference = (
            reference is not None
            and reference.device.type == "cpu"
            and not self.training
            and not (output_attentions or output_hidden_states)
        )
        if cpu_inference and len(reference) > CPU_INFERENCE_BATCH and labels is None:
            return self._classify_in_slices(*inputs)
        if cpu_inference and input_ids is not None and self.dtype in REDUCED_PRECISION:
            inputs = (input_features, feature_attention_mask, *self._pad_to_length_step(input_ids, attention_mask))
        outputs = self.mdpiano(
            *inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True
        )
        logits = self.classifier(outputs.pooled_output)
        arousal_logits = valence_logits = None
        if self.arousal_head is not None:
            acoustic = outputs.acoustic_pooled_output
            symbolic = outputs.symbolic_pooled_output
            arousal_logits = self.arousal_head(acoustic if acoustic is not None else symbolic).squeeze(-1)
            valence_logits = self.valence_head(symbolic if symbolic is not None else acoustic).squeeze(-1)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
            if self.arousal_head is not None:
                labelled = labels != IGNORE_INDEX
                quadrants = labels.clamp(min=0)  # ignored items' targets are computed, then left out
                if arousal_targets is None:
                    arousal_targets = torch.tensor(self.label_arousal, device=labels.device)[quadrants]
                if valence_targets is None:
                    valence_targets = torch.tensor(self.label_valence, device=labels.device)[quadrants]

                def bce(logits, targets):
                    kept = labelled & (targets != IGNORE_INDEX)
                    if not bool(kept.any()):  # no item with a target: no term (the mean over none would be NaN)
                        return logits.sum() * 0.0
                    return nn.functional.binary_cross_entropy_with_logits(logits[kept], targets[kept].to(logits.dtype))

                loss = (
                    loss
                    + self.config.arousal_loss_weight * bce(arousal_logits, arousal_targets)
                    + self.config.valence_loss_weight * bce(valence_logits, valence_targets)
                )
        return MDPianoAudioClassifierOutput(
            loss=loss,
            logits=logits,
            arousal_logits=arousal_logits,
            valence_logits=valence_logits,
            pooled_output=outputs.pooled_output,
            acoustic_encoder_hidden_states=outputs.acoustic_encoder_hidden_states,
            symbolic_encoder_hidden_states=outputs.symbolic_encoder_hidden_states,
            symbolic_attentions=outputs.symbolic_attentions,
            acoustic_to_symbolic_attentions=outputs.acoustic_to_symbolic_attentions,
            symbolic_to_acoustic_attentions=outputs.symbolic_to_acoustic_attentions,
        )

    def _pad_to_length_step(self, input_ids, attention_mask):
        """`input_ids` (batch, length) and its mask padded (mask 0) to the next multiple of
        `CPU_REDUCED_PRECISION_LENGTH_STEP`, at most `max_symbolic_length`: the outputs are unchanged."""
        attention_mask = self._token_mask(input_ids, attention_mask)
        length = input_ids.shape[1]
        step = CPU_REDUCED_PRECISION_LENGTH_STEP
        padding = max(0, min(-(-length // step) * step, self.config.max_symbolic_length) - length)
        pad = nn.functional.pad
        return pad(input_ids, (0, padding), value=self.config.pad_token_id), pad(attention_mask, (0, padding), value=0)

    def _classify_in_slices(self, input_features, feature_attention_mask, input_ids, attention_mask):
        """
        Inference on a large CPU batch: windows of similar token counts together, `CPU_INFERENCE_BATCH` at a time,
        each slice's token sequences cut after its last real token. Same outputs as one pass (up to rounding): padding
        is masked everywhere.
        """
        if input_ids is None:
            order = torch.arange(len(input_features))
        else:
            attention_mask = self._token_mask(input_ids, attention_mask)
            positions = torch.arange(1, attention_mask.shape[1] + 1)
            extents = (attention_mask.bool() * positions).amax(dim=1)  # index after each row's last real token
            order = extents.argsort(stable=True)
        slices = []
        for rows in order.split(CPU_INFERENCE_BATCH):
            ids = mask = None
            if input_ids is not None:
                extent = max(1, int(extents[rows].max()))
                ids, mask = input_ids[rows, :extent], attention_mask[rows, :extent]
            features = None if input_features is None else input_features[rows]
            feature_mask = None if feature_attention_mask is None else feature_attention_mask[rows]
            slices.append(self(features, feature_mask, ids, mask, return_dict=True))
        unsort = order.argsort()

        def joined(name):
            parts = [getattr(output, name) for output in slices]
            return None if parts[0] is None else torch.cat(parts)[unsort]

        return MDPianoAudioClassifierOutput(
            logits=joined("logits"),
            arousal_logits=joined("arousal_logits"),
            valence_logits=joined("valence_logits"),
            pooled_output=joined("pooled_output"),
        )


class MDPianoSymbolicForMaskedLM(MDPianoPreTrainedModel):
    """
    The symbolic encoder with a masked-token prediction head, for pretraining on MIDI. Its encoder weights are named
    as in [`MDPianoForAudioClassification`] (`mdpiano.symbolic_encoder.*`), so
    `MDPianoForAudioClassification.from_pretrained(<this model's folder>)` starts from them.
    """

    main_input_name = "input_ids"
    input_modalities = ("text",)  # note tokens

    def __init__(self, config: MDPianoConfig):
        super().__init__(config)
        self.mdpiano = nn.ModuleDict({"symbolic_encoder": MDPianoSymbolicEncoder(config)})
        self.lm_head = nn.Sequential(
            nn.Linear(config.d_model, config.d_model),
            nn.GELU(),
            nn.LayerNorm(config.d_model),
            nn.Linear(config.d_model, config.vocab_size),
        )
        self.post_init()

    # The embeddings and the prediction layer, so that `resize_token_embeddings` follows tokens added to the tokenizer.
    def get_input_embeddings(self) -> nn.Embedding:
        return self.mdpiano["symbolic_encoder"].token_embeddings

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.mdpiano["symbolic_encoder"].token_embeddings = embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head[-1]

    def set_output_embeddings(self, layer: nn.Linear) -> None:
        self.lm_head[-1] = layer

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MDPianoMaskedLMOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape (batch, tokens)): tokens with some replaced by `<mask>`.
            attention_mask (`torch.LongTensor` of shape (batch, tokens)): 1 for real tokens.
            labels (`torch.LongTensor` of shape (batch, tokens)): original ids at masked positions, -100 elsewhere.
            output_attentions, output_hidden_states, return_dict (`bool`, *optional*): see [`MDPianoModel.forward`].
        """
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        attention_mask = _ensure_one_valid(self._token_mask(input_ids, attention_mask))
        encoded = self.mdpiano["symbolic_encoder"](input_ids, attention_mask, output_attentions, output_hidden_states)
        logits = self.lm_head(encoded.last_hidden_state)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        return MDPianoMaskedLMOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )


__all__ = [
    "MDPianoAudioClassifierOutput",
    "MDPianoForAudioClassification",
    "MDPianoMaskedLMOutput",
    "MDPianoModel",
    "MDPianoModelOutput",
    "MDPianoPreTrainedModel",
    "MDPianoSymbolicForMaskedLM",
]

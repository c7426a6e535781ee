"""Training and evaluation of mdpiano on cached clips: windows cut from whole-clip features and transcriptions."""

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .caching import load_entry
from .feature_augmentation import FeatureAugmentation
from .pipeline_mdpiano import apply_quadrant_bias
from .statistics_fusion import fuse_recording, fusion_for_source
from .windowing import notes_in_windows, voting_windows, window_starts

METRICS_DIR = Path(__file__).resolve().parent / "metrics" / "quadrant_metrics"


@dataclass
class Clip:
    """One cached audio clip: its label, whole-clip notes (N, 4) and unnormalised features (frames, F), the audio
    file's own sampling rate (`None`: not known), and the file (`None`: not known, as in a clip archive), which
    messages name."""

    clip_id: str
    label: int
    notes: np.ndarray
    features: np.ndarray | None
    duration: float
    source_sampling_rate: float | None = None
    path: str | None = None


def load_clips(dataset) -> list[Clip]:
    """Clips of a dataset with `clip_id`, `label`, `notes_path` and optionally `features_path`,
    `source_sampling_rate` and `audio` (whose paths name the clips' files) columns (see `caching.cache_dataset`)."""
    def column(name):
        return dataset[name] if name in dataset.column_names else [None] * len(dataset)

    paths = [None] * len(dataset)
    if "audio" in dataset.column_names:  # undecoded: only the paths are read
        from datasets import Audio

        paths = [audio["path"] for audio in dataset.cast_column("audio", Audio(decode=False))["audio"]]
    clips = []
    rows = zip(dataset["clip_id"], dataset["label"], dataset["notes_path"], column("features_path"), column("source_sampling_rate"), paths)
    for clip_id, label, notes_path, features_path, rate, path in rows:
        entry = load_entry(notes_path, features_path)
        clips.append(Clip(clip_id, int(label), entry["notes"], entry.get("features"), entry["duration"], rate, path))
    return clips


class WindowBatcher:
    """Model inputs for windows `(clip, start)` of cached clips (see `MDPianoProcessor.window_inputs`)."""

    def __init__(self, processor, use_acoustic: bool = True):
        self.processor = processor
        self.use_acoustic = use_acoustic
        self.window_s = processor.feature_extractor.chunk_length_s
        self.frames_per_second = processor.feature_extractor.frames_per_second

    def __call__(self, windows: list[tuple[Clip, float]]) -> dict[str, torch.Tensor]:
        return dict(
            self.processor.window_inputs(
                [(clip.features if self.use_acoustic else None, clip.notes, start) for clip, start in windows]
            )
        )


class RandomWindows(torch.utils.data.Dataset):
    """
    One window per clip per epoch, starting at a random time (reproducible from seed, epoch and index); with
    `augment` (a [`FeatureAugmentation`]), the clip's features go through a new random recording chain each time.
    """

    def __init__(self, clips: list[Clip], window_s: float, seed: int, augment=None):
        self.clips, self.window_s, self.seed, self.epoch, self.augment = clips, window_s, seed, 0, augment
        self.onsets = [np.sort(clip.notes[:, 0]) for clip in clips]

    def __len__(self):
        return len(self.clips)

    def start(self, index: int) -> float:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return float(rng.uniform(0.0, max(0.0, self.clips[index].duration - self.window_s)))

    def __getitem__(self, index):
        clip, start = self.clips[index], self.start(index)
        if self.augment is not None and clip.features is not None:
            # Only the window's frames (as the processor cuts them) go through the chain.
            fe = self.augment.feature_extractor
            first = int(round(start * fe.frames_per_second))
            window = slice(first, first + fe.nb_max_frames)
            features = clip.features.copy()
            features[window] = self.augment(clip.features[window], np.random.default_rng([self.seed, self.epoch, index, 2]))
            clip = dataclasses.replace(clip, features=features)
        return clip, start

    def note_counts(self) -> np.ndarray:
        """Notes in each clip's window of this epoch (token lengths grow with them)."""
        starts = [self.start(i) for i in range(len(self))]
        return np.array([np.searchsorted(o, s + self.window_s) - np.searchsorted(o, s) for o, s in zip(self.onsets, starts)])


class LengthGroupedBatches(torch.utils.data.Sampler):
    """
    Batches of windows with similar note counts, so token sequences are padded less: each epoch, shuffle, cut
    into groups of `group_batches` batches, sort each group by note count, split it into batches, shuffle the batches.
    The one short batch, if any, comes last: Accelerate's sharding over processes expects only the last batch to be
    short, and one elsewhere made it skip a round of batches (every process's) without a word.
    """

    def __init__(self, windows: RandomWindows, batch_size: int, seed: int, group_batches: int = 8):
        self.windows, self.batch_size, self.seed, self.group = windows, batch_size, seed, group_batches * batch_size

    def __len__(self):
        return math.ceil(len(self.windows) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.windows.epoch, 1])
        counts = self.windows.note_counts()
        order = rng.permutation(len(self.windows))
        full, short = [], []
        for first in range(0, len(order), self.group):
            group = order[first : first + self.group]
            group = group[np.argsort(counts[group], kind="stable")]
            for i in range(0, len(group), self.batch_size):
                batch = group[i : i + self.batch_size].tolist()
                (full if len(batch) == self.batch_size else short).append(batch)
        for index in rng.permutation(len(full)):
            yield full[index]
        yield from short


def collate_with_labels(batcher: WindowBatcher):
    def collate(items):
        batch = batcher(items)
        batch["labels"] = torch.tensor([clip.label for clip, _ in items])
        return batch

    return collate


@torch.no_grad()
def predict_clips(
    model,
    batcher: WindowBatcher,
    clips: list[Clip],
    stride_s: float | None = None,
    batch_size: int = 32,
    fuse: bool = True,
    symbolic_source: str = "transcription",
):
    """
    Clip-level predictions as the pipeline makes them: windows every `stride_s` (default: one window, the
    pipeline's), window probabilities averaged per clip over the windows with notes (`windowing.voting_windows`;
    then weighted by `config.quadrant_logit_bias`, and, with
    `fuse`, fused with the note statistics of the clip's notes by the config's fusion for notes from
    `symbolic_source`: `note_statistics_fusion` for transcriptions, `midi_note_statistics_fusion` for ground-truth
    MIDI, if set; with its weight for audio sampled below the model's rate for such clips).

    Returns:
        dict of numpy arrays: `probabilities` (clips, 4), and `arousal` / `valence` (clips,) head probabilities when
        the model has auxiliary heads.
    """
    model.eval()
    device = next(model.parameters()).device
    stride_s = stride_s or batcher.window_s
    starts = [window_starts(clip.duration, batcher.window_s, stride_s, batcher.frames_per_second) for clip in clips]
    reads_notes = getattr(model.config, "domains", "both") != "acoustic"
    voting = np.concatenate([
        voting_windows(notes_in_windows(clip.notes, clip_starts, batcher.window_s, batcher.frames_per_second)
                       if reads_notes else [None] * len(clip_starts))
        for clip, clip_starts in zip(clips, starts)
    ])  # fmt: skip
    windows = [(i, s) for i, clip_starts in enumerate(starts) for s in clip_starts]
    plan = [window for window, votes in zip(windows, voting) if votes]  # the others would not count: not run at all
    sums = {"probabilities": np.zeros((len(clips), 4)), "arousal": np.zeros(len(clips)), "valence": np.zeros(len(clips))}
    counts = np.zeros(len(clips))
    for first in range(0, len(plan), batch_size):
        chunk = plan[first : first + batch_size]
        inputs = {k: v.to(device) for k, v in batcher([(clips[i], s) for i, s in chunk]).items()}
        outputs = model(**inputs)
        owners = np.array([i for i, _ in chunk])
        np.add.at(sums["probabilities"], owners, outputs.logits.float().softmax(-1).cpu().numpy())
        if outputs.arousal_logits is not None:
            np.add.at(sums["arousal"], owners, outputs.arousal_logits.float().sigmoid().cpu().numpy())
            np.add.at(sums["valence"], owners, outputs.valence_logits.float().sigmoid().cpu().numpy())
        np.add.at(counts, owners, 1)
    averaged = torch.from_numpy(sums["probabilities"] / counts[:, None])
    results = {"probabilities": apply_quadrant_bias(averaged, getattr(model.config, "quadrant_logit_bias", None)).numpy()}
    fusion = fusion_for_source(model.config, symbolic_source) if fuse else None
    if fusion is not None:
        rate = batcher.processor.sampling_rate
        results["probabilities"] = np.stack([
            fuse_recording(p, clip.notes, fusion, band_limited=(clip.source_sampling_rate or rate) < rate)
            for p, clip in zip(results["probabilities"], clips)
        ])  # fmt: skip
    if getattr(model.config, "use_auxiliary_losses", False):
        results["arousal"] = sums["arousal"] / counts
        results["valence"] = sums["valence"] / counts
    return results


def quadrant_metrics(predictions: dict, labels: list[int]) -> dict:
    """4Q, arousal and valence metrics (the repository's `evaluate` module) of [`predict_clips`] output."""
    import evaluate

    metric = evaluate.load(str(METRICS_DIR))
    kwargs = {}
    if "arousal" in predictions:
        kwargs["arousal_predictions"] = (predictions["arousal"] > 0.5).astype(int).tolist()
        kwargs["valence_predictions"] = (predictions["valence"] > 0.5).astype(int).tolist()
    return metric.compute(predictions=predictions["probabilities"].argmax(-1).tolist(), references=labels, **kwargs)


def device_description() -> str:
    """What training runs on here, for reports: the GPU's name, or the CPU core count."""
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


@dataclass
class TrainingArguments:
    """Optimisation settings; the defaults are the paper's (batch 64, Adam, learning rate 1e-4)."""

    output_dir: str
    batch_size: int = 64
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    epochs: int = 60
    patience: int = 10
    seed: int = 0
    gradient_accumulation_steps: int = 1
    mixed_precision: str | None = None  # "no", "fp16", "bf16"; None: `accelerate launch`'s setting, else "no"
    num_workers: int = 0
    augment_features: bool = False
    band_limit_probability: float = 0.0  # with augment_features: chance of a band-limited chain (FeatureAugmentation)
    resume: bool = False
    log_every: int = 10


def check_output_dir(output_dir, resume: bool) -> None:
    """Refuses a file as the run's folder, and a new run in a folder holding an earlier one (its log or checkpoint)
    unless resuming it."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} is a file: give a folder for the run (it is made if missing).")
    if not resume and ((output_dir / "checkpoint").exists() or (output_dir / "log.jsonl").exists()):
        raise FileExistsError(
            f"{output_dir} holds an earlier run (its log and checkpoint): continue it with `resume` (--resume) or "
            "give another output folder; a new run there would mix both logs and replace its best model."
        )


def check_resumed_arguments(output_dir, current: dict, defining: tuple[str, ...], paths: tuple[str, ...] = ()) -> None:
    """
    Refuses to resume the run in `output_dir` when one of its `defining` arguments differs from what its
    `arguments.json` recorded (a resumed run with other data, model or optimisation settings would silently train
    something else); a run without that file (new, or from an older version) is not checked. Arguments named in
    `paths` are files or folders: spelt otherwise (relative, absolute, a trailing slash) they are the same.
    """
    saved_path = Path(output_dir) / "arguments.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text())

    def same(name: str) -> bool:
        then, now = saved[name], current[name]
        if isinstance(now, list) and [then] == now:  # recorded as one value by older runs (--validation-set)
            return True
        if name in paths and isinstance(then, str) and isinstance(now, str):
            return os.path.realpath(then) == os.path.realpath(now)
        return then == now

    changed = [name for name in defining if name in saved and name in current and not same(name)]
    if changed:
        differences = "; ".join(f"--{name.replace('_', '-')} {saved[name]!r} then, {current[name]!r} now" for name in changed)
        raise ValueError(
            f"{output_dir} was started with other settings ({differences}): resume it with the arguments in "
            f"{saved_path}, or start a new run in another folder."
        )


def validation_scores(model, batcher: WindowBatcher, validation_sets: dict[str, list[Clip]]) -> tuple[dict, dict]:
    """
    The network's clip-level metrics (unfused: a fusion in the config was fitted beside another network) and
    cross-entropy on each validation set, and their means over the sets, the training criterion.

    Returns:
        `(means, per_set)`: `means` holds the mean of every scalar metric and of `loss`, and the confusion matrix
        summed over the sets; `per_set` maps each set's name to its own metrics (without the per-class table) and
        `loss`.
    """
    per_set = {}
    for name, clips in validation_sets.items():
        labels = [clip.label for clip in clips]
        predictions = predict_clips(model, batcher, clips, stride_s=batcher.window_s, fuse=False)
        metrics = {k: v for k, v in quadrant_metrics(predictions, labels).items() if k != "per_class"}
        probabilities = predictions["probabilities"][np.arange(len(labels)), labels]
        per_set[name] = {**metrics, "loss": float(-np.log(np.clip(probabilities, 1e-9, 1)).mean())}
    scores = list(per_set.values())
    means = {key: float(np.mean([score[key] for score in scores])) for key, value in scores[0].items() if isinstance(value, float)}
    means["confusion_matrix"] = np.sum([score["confusion_matrix"] for score in scores], axis=0).tolist()
    return means, per_set


def save_checkpoint(accelerator, checkpoint: Path, state: dict) -> None:
    """
    Saves the training state (weights, optimizer, random states) and `trainer_state.json` into a fresh folder, then
    puts it in place of `checkpoint`: an interruption leaves the previous checkpoint whole, never the weights of one
    epoch beside the state of another (a resume would train an epoch twice).
    """
    staging, previous = checkpoint.with_name(f"{checkpoint.name}.partial"), checkpoint.with_name(f"{checkpoint.name}.previous")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "trainer_state.json").write_text(json.dumps(state, indent=1))
        if checkpoint.exists():
            checkpoint.rename(previous)
        staging.rename(checkpoint)
        shutil.rmtree(previous, ignore_errors=True)
    accelerator.wait_for_everyone()


def restore_checkpoint(checkpoint: Path, log_path: Path) -> None:
    """Before a resume: the previous checkpoint back in place if a run stopped between the two renames of
    [`save_checkpoint`], and the log cut to the epochs that checkpoint holds (an epoch logged but not saved is
    trained again, and logged once)."""
    previous = checkpoint.with_name(f"{checkpoint.name}.previous")
    if not checkpoint.exists() and previous.is_dir():
        previous.rename(checkpoint)
    state_path = checkpoint / "trainer_state.json"
    saved_epoch = json.loads(state_path.read_text())["epoch"] if state_path.is_file() else 0
    if log_path.is_file():
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        log_path.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["epoch"] <= saved_epoch))


def accelerator_available() -> bool:
    """Whether Accelerate finds a GPU (CUDA, XPU or Apple's MPS) to train on."""
    from accelerate.utils import is_xpu_available

    return torch.cuda.is_available() or is_xpu_available() or torch.backends.mps.is_available()


def check_mixed_precision(mixed_precision: str | None) -> None:
    """
    Raises:
        ValueError: for fp16 mixed precision, set or left to `accelerate launch` (its environment variable), on a
            machine without a GPU, where Accelerate would train in float32 while saying fp16.
    """
    if (mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")) == "fp16" and not accelerator_available():
        raise ValueError("fp16 mixed precision needs a GPU: on a CPU, Accelerate would train in float32 while saying "
                         "fp16. Use bf16 (CPU autocast) or no.")  # fmt: skip


def check_clip_lengths(config, clip_sets: list[list[Clip]]) -> None:
    """
    Raises:
        ValueError: naming (by its file, where known) every clip with fewer acoustic frames than the model takes
            (`config.min_acoustic_frames`), which would otherwise stop training at the batch that draws it.
    """
    if config.domains == "symbolic":
        return
    frame_s = config.hop_length / config.sampling_rate  # a clip of n frames lasts (n - 1) hops or more
    short = {clip.path or clip.clip_id: clip.duration for clips in clip_sets for clip in clips
             if len(clip.features) < config.min_acoustic_frames}  # fmt: skip
    if short:
        names = ", ".join(f"{name} ({seconds:.3f} s)" for name, seconds in list(short.items())[:20])
        more = f" and {len(short) - 20} more" if len(short) > 20 else ""
        raise ValueError(f"{len(short)} clip(s) are shorter than the model's shortest input "
                         f"({(config.min_acoustic_frames - 1) * frame_s:.3f} s): {names}{more}. Remove them from the data.")  # fmt: skip


def clips_without_notes(clips: list[Clip]) -> list[str]:
    """Ids of the clips in which the transcriber found no notes (silence, noise, or not a piano): their symbolic
    input is empty, which a user's labelled audio should rarely hold."""
    return [clip.clip_id for clip in clips if len(clip.notes) == 0]


def fit_feature_normalization(feature_extractor, clips: list[Clip]) -> list[str]:
    """
    Fits the feature extractor's standardisation on the clips' features, leaving out clips whose features never
    change (digital silence: every band at the floor would pull the means toward it); returns their ids.
    """
    constant = [clip.clip_id for clip in clips if np.ptp(clip.features, axis=0).max(initial=0) == 0]
    left_out = set(constant) if len(constant) < len(clips) else set()
    feature_extractor.fit_normalization_from_features(clip.features for clip in clips if clip.clip_id not in left_out)
    return sorted(left_out)


def recorded_validation_sets(arguments: dict) -> list[str]:
    """The validation sets named in a run's `arguments.json` (one name, not a list, in runs of older versions)."""
    sets = arguments.get("validation_set", "validation")
    return [sets] if isinstance(sets, str) else list(sets)


def train(
    model, processor, train_clips: list[Clip], validation_clips: list[Clip] | dict[str, list[Clip]], args: TrainingArguments
) -> dict:
    """
    Trains with Accelerate (CPU, one GPU or DDP under `accelerate launch`), one random window per clip per epoch
    (batched by similar note counts; with `augment_features`, through a random recording chain);
    evaluates clip-level 4Q accuracy on the validation clips after each epoch, keeps the best model in
    `<output_dir>/best` (with its processor), stops after `patience` epochs without improvement, and saves the
    training state in `<output_dir>/checkpoint` every epoch so `resume` continues where it stopped.

    `validation_clips` may also name several validation sets (say, the validation split rendered through two
    recording chains): the criterion is then the mean of their 4Q accuracies (ties: the lower mean loss), so no one
    rendering decides which epoch is kept, and each epoch's log holds every set's figures too.

    Returns:
        the best validation metrics (means over the sets), with `epoch`.

    Raises:
        ValueError: naming the clips too short for the model (before anything is trained), or for fp16 on a CPU.
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, set_seed
    from tqdm.auto import tqdm

    validation_sets = validation_clips if isinstance(validation_clips, dict) else {"validation": validation_clips}
    if not validation_sets or not all(validation_sets.values()):
        raise ValueError("No validation clips: give at least one validation set that holds clips.")
    check_clip_lengths(model.config, [train_clips, *validation_sets.values()])
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.resume)
    on_cpu = not accelerator_available()
    check_mixed_precision(args.mixed_precision)
    # Without an accelerator, Accelerate runs DDP over CPU processes (gloo) only when told it is on CPU.
    accelerator = Accelerator(
        cpu=on_cpu, mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, log_path = output_dir / "checkpoint", output_dir / "log.jsonl"
    set_seed(args.seed)
    use_acoustic = model.config.domains in ("both", "acoustic")
    batcher = WindowBatcher(processor, use_acoustic)
    augment = (FeatureAugmentation(processor.feature_extractor, band_limit_probability=args.band_limit_probability)
               if args.augment_features and use_acoustic else None)  # fmt: skip
    windows = RandomWindows(train_clips, batcher.window_s, args.seed, augment)
    loader = torch.utils.data.DataLoader(
        windows,
        batch_sampler=LengthGroupedBatches(windows, args.batch_size, args.seed),
        collate_fn=collate_with_labels(batcher),
        num_workers=args.num_workers,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    state = {"epoch": 0, "best_accuracy": -1.0, "best_loss": math.inf, "best": None, "stale_epochs": 0}
    if args.resume:
        if accelerator.is_main_process:
            restore_checkpoint(checkpoint, log_path)
        accelerator.wait_for_everyone()
    if args.resume and (checkpoint / "trainer_state.json").is_file():
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        accelerator.print(f"resumed after epoch {state['epoch']} (best accuracy {state['best_accuracy']:.3f})")
    elif args.resume:
        accelerator.print(f"nothing to resume in {checkpoint}: starting at epoch 1")
    accelerator.print(f"training on {accelerator.num_processes} process(es), device {accelerator.device}, "
                      f"distributed type {accelerator.distributed_type.value}, mixed precision "
                      f"{accelerator.mixed_precision}, gradient accumulation {accelerator.gradient_accumulation_steps}")
    stopped = state["stale_epochs"] >= args.patience
    if stopped:  # a rerun of a finished run (scripts/ablations.py resumes every run) must not train past its stop
        accelerator.print(f"the run stopped early after epoch {state['epoch']} (no improvement for "
                          f"{state['stale_epochs']} epochs, patience {args.patience}): nothing to train")  # fmt: skip

    last_epoch = state["epoch"] if stopped else args.epochs
    for epoch in range(state["epoch"] + 1, last_epoch + 1):
        windows.epoch = epoch
        model.train()
        started, losses = time.time(), []
        progress = tqdm(loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, leave=False)
        for step, batch in enumerate(progress):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            if step % args.log_every == 0:
                progress.set_postfix(loss=f"{np.mean(losses[-args.log_every:]):.3f}")
        unwrapped = accelerator.unwrap_model(model)
        metrics, per_set = validation_scores(unwrapped, batcher, validation_sets)
        # Under DDP each process validates its own copy, whose batch-norm statistics drift apart: the main process's
        # figures (those of the model it saves) decide for all, so all save, stop and log alike.
        metrics, per_set = broadcast_object_list([metrics, per_set])
        validation_loss = metrics.pop("loss")
        train_loss = accelerator.reduce(torch.tensor(np.mean(losses), device=accelerator.device), "mean").item()
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "validation_loss": validation_loss,
            "validation_accuracy": metrics["accuracy"],
            "validation_macro_f1": metrics["macro_f1"],
            "seconds": round(time.time() - started, 1),
        }
        if len(per_set) > 1:
            record["validation_sets"] = per_set
        improved = (metrics["accuracy"], -validation_loss) > (state["best_accuracy"], -state["best_loss"])
        if improved:
            state.update(best_accuracy=metrics["accuracy"], best_loss=validation_loss, stale_epochs=0,
                         best={**record, **metrics})  # fmt: skip
            if accelerator.is_main_process:
                # Reports that scripts/evaluate.py wrote into an earlier best model's folder describe that model.
                shutil.rmtree(output_dir / "best" / "evaluation", ignore_errors=True)
                unwrapped.save_pretrained(output_dir / "best")
                processor.save_pretrained(output_dir / "best")
        else:
            state["stale_epochs"] += 1
        state["epoch"] = epoch
        accelerator.print(json.dumps({**record, "best": improved}))
        if accelerator.is_main_process:
            with open(log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
        save_checkpoint(accelerator, checkpoint, state)
        if state["stale_epochs"] >= args.patience:
            accelerator.print(f"early stop: no improvement for {args.patience} epochs")
            break
    accelerator.wait_for_everyone()
    return state["best"]


__all__ = ["Clip", "LengthGroupedBatches", "accelerator_available", "check_clip_lengths", "check_mixed_precision", "check_output_dir", "clips_without_notes", "fit_feature_normalization", "device_description", "RandomWindows", "TrainingArguments", "WindowBatcher", "load_clips", "predict_clips", "quadrant_metrics", "recorded_validation_sets", "train", "validation_scores"]

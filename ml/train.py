"""Train a caption decoder on frozen-encoder features.

Example, the recipe of the starter model:

    python -m ml.train \
        --captions-csv ../shared/datasets/flickr8k-900/captions.csv \
        --images ../shared/datasets/flickr8k-900/images \
        --coco-json ../shared/datasets/coco-mini/captions_train2017.json \
        --coco-images ../shared/datasets/coco-mini/train2017 \
        --exclude-every 10 --exclude-offset 0 --val-every 10 --val-offset 5 \
        --output checkpoints/starter.safetensors
"""

import argparse
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from .captioner import default_device
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .data import CaptionedImage, DatasetError, every_nth, read_captions_csv, read_coco_json
from .features import VIEW_NAMES, extract_features
from .generation import SearchSettings
from .metrics import score_captions
from .model import CaptionConfig, CaptionModel
from .scst import CiderD, scst_loss
from .vocab import Vocabulary

logger = logging.getLogger("ml.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--captions-csv", type=Path, help="Flickr8k-style CSV with the header image,caption")
    data.add_argument("--images", type=Path, help="directory of the images named in --captions-csv")
    data.add_argument("--coco-json", type=Path, help="COCO captions JSON, used in addition to the CSV")
    data.add_argument("--coco-images", type=Path, help="directory of the images named in --coco-json")
    data.add_argument("--exclude-every", type=int, default=0,
                      help="hold out every N-th CSV image (sorted by name) from training and "
                           "validation, to be scored later; 0 holds out nothing")
    data.add_argument("--exclude-offset", type=int, default=0,
                      help="position within each group of N of the held-out image")
    data.add_argument("--val-every", type=int, default=0,
                      help="use every N-th remaining CSV image as the validation split for "
                           "the loss curve and for tuning beam size and length penalty; 0 "
                           "disables validation")
    data.add_argument("--val-offset", type=int, default=5,
                      help="position within each group of N of the validation image")
    data.add_argument("--views", type=int, default=6,
                      help=f"augmented views cached per training image, a prefix of {VIEW_NAMES}")
    data.add_argument("--cache-dir", type=Path, default=Path(".cache/features"),
                      help="directory for cached encoder features")
    data.add_argument("--min-count", type=int, default=3,
                      help="minimum occurrences of a word in training captions to enter the vocabulary")
    data.add_argument("--max-words", type=int, default=25,
                      help="training captions are cut to this many words")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="efficientnet_lite0",
                       choices=["efficientnet_lite0", "resnet50"], help="frozen CNN encoder")
    model.add_argument("--backbone-weights",
                       help="local weights file for the backbone (required for resnet50)")
    model.add_argument("--decoder", default="transformer", choices=["transformer", "lstm"],
                       help="decoder architecture")
    model.add_argument("--d-model", type=int, default=256, help="decoder width")
    model.add_argument("--layers", type=int, default=2, help="Transformer decoder layers")
    model.add_argument("--heads", type=int, default=4, help="attention heads per layer")
    model.add_argument("--ffn-dim", type=int, default=1024, help="feed-forward hidden width")
    model.add_argument("--dropout", type=float, default=0.3, help="dropout probability")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=30, help="total epochs over the captions")
    optim.add_argument("--batch-size", type=int, default=64, help="captions per step")
    optim.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate")
    optim.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    optim.add_argument("--warmup-steps", type=int, default=200,
                       help="linear warm-up steps before the cosine decay")
    optim.add_argument("--label-smoothing", type=float, default=0.1,
                       help="label smoothing of the cross-entropy loss")
    optim.add_argument("--word-dropout", type=float, default=0.1,
                       help="probability of replacing an input word with <unk> while training")
    optim.add_argument("--ema-decay", type=float, default=0.998,
                       help="decay of the exponential moving average of the weights that "
                            "is exported (averaging over recent steps); 0 exports the raw weights")
    optim.add_argument("--objective", default="xe", choices=["xe", "scst"],
                       help="xe: cross-entropy on the reference captions; scst: self-critical "
                            "training on the CIDEr-D of sampled captions, to fine-tune a model "
                            "given with --init-from (--batch-size then counts images)")
    optim.add_argument("--scst-samples", type=int, default=5,
                       help="captions sampled per image for self-critical training")
    optim.add_argument("--init-from", type=Path,
                       help="start from the weights, vocabulary and config of this checkpoint "
                            "with a new optimiser (for fine-tuning)")
    optim.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    optim.add_argument("--stop-after", type=int, default=0,
                       help="stop after this many epochs in this run and keep only the "
                            "resumable state (the schedule still spans --epochs); 0 runs to the end")

    output = parser.add_argument_group("output")
    output.add_argument("--output", type=Path, required=True,
                        help="path of the checkpoint to write; the resumable state goes "
                             "beside it as <name>.resume.safetensors")
    output.add_argument("--resume", type=Path,
                        help="resume from a .resume.safetensors file written by an earlier run")
    output.add_argument("--logdir", type=Path, default=Path("runs"),
                        help="TensorBoard log directory")
    output.add_argument("--tune-beam-sizes", default="1,3,5",
                        help="beam sizes tried on the validation split")
    output.add_argument("--tune-length-penalties", default="0,0.3,0.6,1.0",
                        help="length penalties tried on the validation split")
    output.add_argument("--device", help="torch device; default cuda when available, else cpu")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.captions_csv is None) != (args.images is None):
        parser.error("--captions-csv and --images go together")
    if (args.coco_json is None) != (args.coco_images is None):
        parser.error("--coco-json and --coco-images go together")
    if args.captions_csv is None and args.coco_json is None:
        parser.error("give training data: --captions-csv with --images, and/or --coco-json with --coco-images")
    if args.objective == "scst" and args.init_from is None and args.resume is None:
        parser.error("--objective scst fine-tunes a trained model: give --init-from CHECKPOINT")
    if args.init_from and args.resume:
        parser.error("--init-from and --resume exclude each other")
    return args


@dataclass
class Split:
    items: list[CaptionedImage]
    features: torch.Tensor  # (images, views, cells, channels), float16


def load_data(args) -> tuple[list[CaptionedImage], list[CaptionedImage], dict]:
    """Read the caption files and carve out the held-out and validation splits."""
    train, val, sources = [], [], []
    if args.captions_csv:
        items = read_captions_csv(args.captions_csv, args.images)
        held_out = []
        if args.exclude_every:
            held_out, items = every_nth(items, every=args.exclude_every, offset=args.exclude_offset)
        if args.val_every:
            val, items = every_nth(items, every=args.val_every, offset=args.val_offset)
        train += items
        sources.append({"captions_csv": str(args.captions_csv), "images": len(items),
                        "held_out": len(held_out), "validation": len(val),
                        "exclude_every": args.exclude_every, "exclude_offset": args.exclude_offset,
                        "val_every": args.val_every, "val_offset": args.val_offset})
    if args.coco_json:
        items = read_coco_json(args.coco_json, args.coco_images)
        train += items
        sources.append({"coco_json": str(args.coco_json), "images": len(items)})
    return train, val, {"sources": sources}


def encode_captions(items: list[CaptionedImage], vocab: Vocabulary, max_words: int):
    """Return (image index, token ids) pairs for every caption of every image."""
    return [(i, vocab.encode(caption, max_length=max_words))
            for i, item in enumerate(items) for caption in item.captions]


def make_batch(pairs, features: torch.Tensor, vocab: Vocabulary, generator: torch.Generator,
               word_dropout: float):
    image_ids = torch.tensor([i for i, _ in pairs])
    views = torch.randint(features.size(1), (len(pairs),), generator=generator)
    batch_features = features[image_ids, views].float()  # (B, cells, C)
    length = max(len(ids) for _, ids in pairs)
    tokens = torch.full((len(pairs), length), vocab.pad_id, dtype=torch.long)
    for row, (_, ids) in enumerate(pairs):
        tokens[row, :len(ids)] = torch.tensor(ids)
    inputs, targets = tokens[:, :-1].clone(), tokens[:, 1:]
    if word_dropout:
        # Replacing some input words with <unk> makes the decoder rely on the
        # image rather than on the exact previous words.
        drop = torch.rand(inputs.shape, generator=generator) < word_dropout
        drop &= (inputs != vocab.pad_id) & (inputs != vocab.bos_id)
        inputs[drop] = vocab.unk_id
    return batch_features, inputs, targets


def caption_loss(model, features, inputs, targets, vocab, label_smoothing: float):
    logits = model(features, inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=vocab.pad_id,
                           label_smoothing=label_smoothing)


def train_one_epoch(model, optimizer, scheduler, ema, num_examples: int, batch_loss, args,
                    epoch: int, writer, step: int) -> tuple[float, int]:
    """Run one epoch over `num_examples` in a seeded random order.

    `batch_loss(indices, generator)` returns the loss of one batch and a dict
    of numbers to log beside it.
    """
    generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    torch.manual_seed(args.seed * 1000 + epoch)  # dropout masks
    order = torch.randperm(num_examples, generator=generator).tolist()
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    total = 0.0
    progress = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False)
    for batch in progress:
        model.train()
        loss, extra = batch_loss(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        step += 1
        total += loss.item()
        progress.set_postfix(loss=f"{loss.item():.3f}", **{k: f"{v:.3f}" for k, v in extra.items()})
        writer.add_scalar("train/loss", loss.item(), step)
        writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
        for key, value in extra.items():
            writer.add_scalar(f"train/{key}", value, step)
    return total / len(batches), step


def cross_entropy_objective(model, pairs, features, vocab, args, device):
    """Teacher-forced cross-entropy over (image, caption) pairs."""
    def batch_loss(batch, generator):
        batch_features, inputs, targets = make_batch(
            [pairs[i] for i in batch], features, vocab, generator, args.word_dropout)
        loss = caption_loss(model, batch_features.to(device), inputs.to(device),
                            targets.to(device), vocab, args.label_smoothing)
        return loss, {}
    return len(pairs), batch_loss


def self_critical_objective(model, items, features, vocab, args, device):
    """CIDEr-D reward of sampled captions per image (self-critical training)."""
    references = [[vocab.encode(c, max_length=args.max_words)[1:-1] for c in item.captions]
                  for item in items]
    cider = CiderD(references)
    never_ids = (vocab.pad_id, vocab.bos_id, vocab.unk_id)

    def batch_loss(batch, generator):
        views = torch.randint(features.size(1), (len(batch),), generator=generator)
        batch_features = features[torch.tensor(batch), views].float().to(device)
        loss, reward = scst_loss(model, batch_features, batch, cider,
                                 samples=args.scst_samples, max_length=model.config.max_caption_length,
                                 bos_id=vocab.bos_id, eos_id=vocab.eos_id, never_ids=never_ids,
                                 generator=generator)
        return loss, {"reward": reward}
    return len(items), batch_loss


@torch.no_grad()
def validation_loss(model, pairs, features, vocab, args, device) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(0)
    total, count = 0.0, 0
    for start in range(0, len(pairs), 256):
        batch = pairs[start:start + 256]
        batch_features, inputs, targets = make_batch(batch, features[:, :1], vocab, generator, 0.0)
        loss = caption_loss(model, batch_features.to(device), inputs.to(device),
                            targets.to(device), vocab, 0.0)
        total += loss.item() * len(batch)
        count += len(batch)
    return total / count


class WeightAverage:
    """Exponential moving average of the trainable weights (Polyak averaging)."""

    def __init__(self, model, decay: float, state: dict[str, torch.Tensor] | None = None):
        self.decay = decay
        self.weights = state or {k: v.detach().clone().float()
                                 for k, v in model.trainable_state_dict().items()}

    @torch.no_grad()
    def update(self, model) -> None:
        for key, value in model.trainable_state_dict().items():
            if value.dtype.is_floating_point:
                self.weights[key].mul_(self.decay).add_(value.float(), alpha=1 - self.decay)
            else:
                self.weights[key].copy_(value)


def tune_generation(model, val: Split, vocab, args, device) -> dict:
    """Pick beam size and length penalty by CIDEr on the validation split."""
    model.eval()
    references = {item.name: list(item.captions) for item in val.items}
    features = val.features[:, 0].float().to(device)
    results = []
    for beam in [int(b) for b in args.tune_beam_sizes.split(",")]:
        for penalty in [float(p) for p in args.tune_length_penalties.split(",")]:
            settings = SearchSettings(beam, model.config.max_caption_length, penalty, 1,
                                      model.config.no_repeat_ngram_size)
            captions = {}
            for start in range(0, len(val.items), 64):
                candidates = model.generate(
                    features[start:start + 64], settings=settings, bos_id=vocab.bos_id,
                    eos_id=vocab.eos_id, never_ids=(vocab.pad_id, vocab.bos_id, vocab.unk_id))
                for item, best in zip(val.items[start:start + 64], candidates):
                    captions[item.name] = Vocabulary.to_sentence(vocab.decode(best[0].tokens))
            scores = score_captions(captions, references, meteor=False)
            logger.info("Validation beam %d, length penalty %.2f: BLEU-4 %.4f, CIDEr %.4f",
                        beam, penalty, scores["bleu4"], scores["cider"])
            results.append((scores["cider"], beam, penalty, scores))
    cider, beam, penalty, scores = max(results, key=lambda r: r[0])
    logger.info("Chose beam size %d and length penalty %.2f (validation CIDEr %.4f)",
                beam, penalty, cider)
    return {"beam_size": beam, "length_penalty": penalty, "validation_scores": scores}


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {f"state.{index}.{name}": value
               for index, values in state["state"].items() for name, value in values.items()}
    return tensors, state["param_groups"]


def _load_optimizer(optimizer, tensors: dict[str, torch.Tensor], param_groups) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = torch.device(args.device) if args.device else default_device()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    logger.info("Device %s, seed %d", device, args.seed)

    # Data and the frozen-encoder features.
    try:
        train_items, val_items, data_record = load_data(args)
    except DatasetError as exc:
        logger.error("%s", exc)
        return 2
    try:
        resume = load_checkpoint(args.resume) if args.resume else None
        initial = load_checkpoint(args.init_from) if args.init_from else None
    except CheckpointError as exc:
        logger.error("%s", exc)
        return 2
    if initial is not None:
        vocab = initial.vocab
        logger.info("Starting from the weights of %s", args.init_from)
    elif resume is not None:
        if resume.training_state is None:
            logger.error("%s has no training state; resume from a .resume.safetensors file",
                         args.resume)
            return 2
        vocab = resume.vocab
        logger.info("Resuming from %s at epoch %d", args.resume,
                    resume.training_state["epoch"])
    else:
        vocab = Vocabulary.build((c for item in train_items for c in item.captions),
                                 min_count=args.min_count)
    logger.info("Vocabulary of %d words; %d training and %d validation images",
                len(vocab), len(train_items), len(val_items))
    extract = dict(backbone=args.backbone, weights=args.backbone_weights, image_size=224,
                   cache_dir=args.cache_dir, device=device)
    train = Split(train_items, extract_features([i.path for i in train_items],
                                                num_views=args.views, **extract))
    val = Split(val_items, extract_features([i.path for i in val_items], num_views=1, **extract)) \
        if val_items else None

    # Model, optimiser and schedule.
    if resume is not None or initial is not None:
        config = (resume or initial).config
    else:
        config = CaptionConfig(
            vocab_size=len(vocab), backbone=args.backbone, backbone_weights=args.backbone_weights,
            decoder=args.decoder, d_model=args.d_model, num_layers=args.layers,
            num_heads=args.heads, ffn_dim=args.ffn_dim, dropout=args.dropout,
            max_positions=max(40, args.max_words + 2),
        )
    # Seed again here: building the encoder for feature extraction draws random
    # numbers only when the cache is cold, so earlier draws vary between runs.
    torch.manual_seed(args.seed)
    model = CaptionModel(config, with_encoder=False).to(device)
    if initial is not None:
        model.load_trainable_state_dict({k: v.to(device) for k, v in initial.weights.items()})
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "positions" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    if args.objective == "scst":
        num_examples, batch_loss = self_critical_objective(model, train.items, train.features,
                                                           vocab, args, device)
    else:
        pairs = encode_captions(train.items, vocab, args.max_words)
        num_examples, batch_loss = cross_entropy_objective(model, pairs, train.features, vocab,
                                                           args, device)
    steps_per_epoch = math.ceil(num_examples / args.batch_size)
    total_steps = steps_per_epoch * args.epochs

    def lr_factor(step: int) -> float:
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    ema = None
    start_epoch, step, history = 0, 0, []
    if resume is not None:
        model.load_trainable_state_dict({k: v.to(device) for k, v in resume.weights.items()})
        state = resume.training_state
        _load_optimizer(optimizer, resume.optimizer_tensors, state["optimizer_param_groups"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        if args.ema_decay:
            ema_state = {k[len("ema."):]: v.to(device)
                         for k, v in resume.optimizer_tensors.items() if k.startswith("ema.")}
            ema = WeightAverage(model, args.ema_decay, ema_state)
    elif args.ema_decay:
        ema = WeightAverage(model, args.ema_decay)
    logger.info("%d trainable parameters, %d steps per epoch, %d epochs",
                sum(p.numel() for p in model.parameters()), steps_per_epoch, args.epochs)

    # Training.
    writer = SummaryWriter(log_dir=str(args.logdir / args.output.stem))
    val_pairs = encode_captions(val.items, vocab, args.max_words) if val else []
    resume_path = args.output.with_name(args.output.stem + ".resume.safetensors")
    record = {"data": data_record, "seed": args.seed, "objective": args.objective,
              "arguments": _plain_arguments(args)}
    if initial is not None:
        record["initialised_from"] = {"path": str(args.init_from), "record": initial.record}
    started = time.monotonic()
    last_epoch = args.epochs
    if args.stop_after:
        last_epoch = min(args.epochs, start_epoch + args.stop_after)
    for epoch in range(start_epoch, last_epoch):
        train_loss, step = train_one_epoch(model, optimizer, scheduler, ema, num_examples,
                                           batch_loss, args, epoch, writer, step)
        entry = {"epoch": epoch + 1, "train_loss": round(train_loss, 4)}
        if val_pairs:
            entry["val_loss"] = round(validation_loss(model, val_pairs, val.features, vocab,
                                                      args, device), 4)
            writer.add_scalar("val/loss", entry["val_loss"], step)
        history.append(entry)
        logger.info("Epoch %d/%d: %s", epoch + 1, args.epochs, entry)

        tensors, groups = _optimizer_tensors(optimizer)
        if ema is not None:
            tensors.update({f"ema.{k}": v for k, v in ema.weights.items()})
        save_checkpoint(resume_path, Checkpoint(
            config, vocab, record, model.trainable_state_dict(),
            {"epoch": epoch + 1, "step": step, "history": history,
             "optimizer_param_groups": groups, "scheduler": scheduler.state_dict()},
            tensors))
    writer.close()
    if last_epoch < args.epochs:
        logger.info("Stopped after epoch %d of %d; resume with --resume %s",
                    last_epoch, args.epochs, resume_path)
        return 0

    # Export: averaged weights, generation settings tuned on validation.
    if ema is not None:
        model.load_trainable_state_dict(ema.weights)
    record.update(epochs=args.epochs, history=history,
                  train_seconds=round(time.monotonic() - started, 1))
    if val is not None:
        tuned = tune_generation(model, val, vocab, args, device)
        config.beam_size, config.length_penalty = tuned["beam_size"], tuned["length_penalty"]
        record["scores"] = {"validation": tuned["validation_scores"]}
    save_checkpoint(args.output, Checkpoint(config, vocab, record, model.trainable_state_dict()))
    logger.info("Wrote %s", args.output)
    return 0


def _plain_arguments(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


if __name__ == "__main__":
    sys.exit(main())

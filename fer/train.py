"""Train an emotion classifier on FER-2013: `python -m fer.train --model {cnn,vgg} --data PATH`.

Builds the DataModule, the LightningModule and the Trainer from the command line (or a YAML
`--config`), fits, tests the best checkpoint when the data has a test split, and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fer.choices import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    EVAL_BATCH_SIZE,
    OPTIMIZERS,
    PRESETS,
    SCHEDULERS,
    TRAINABLE,
)
from fer.common import (
    IMAGE_SIZE,
    FerError,
    Parser,
    add_debug_flag,
    check_outputs,
    counted,
    default_precision,
    real_path,
    run_cli,
    run_config_path,
    same_data,
    write_text,
)

log = logging.getLogger("fer")


def positive(kind):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value > 0 and math.isfinite(value)):  # nan and inf too
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    check.__name__ = kind.__name__
    return check


def limit(text: str) -> int | float:
    """Lightning's convention: an int counts batches, a float in (0, 1] is a fraction; 0 is none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    if value.is_integer() and "." not in text:
        return int(value)
    if value > 1:
        raise argparse.ArgumentTypeError(
            f"a share of the batches is at most 1.0, got {text} (a count has no decimal point)"
        )
    return value


#: Defaults that depend on --model, filled in where an option was given neither on the command
#: line nor in --config. The CNN's are the first-run recipe: 20 epochs of a 0.7 M-parameter network
#: on random 40x40 crops (a crop costs 0.7 of a whole face), SGD one-cycle peaking at 0.1
#: (docs/training.md has its time and accuracy).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"widths": [32, 64, 128, 160], "crop": 40, "lr": 0.1, "max_epochs": 20},
    "vgg": {"widths": [32, 64, 128, 160], "crop": 0, "lr": 0.05, "max_epochs": 30},
}


def _per_model(option: str) -> str:
    return ", ".join(f"{model} {d[option]}" for model, d in MODEL_DEFAULTS.items())


#: Options newer than some recorded runs: a config (a run's config.yaml, or --config) that does not
#: name one was written before it existed, when it was off.
OFF_WHEN_UNRECORDED: dict[str, Any] = {"crop": 0}


def fill_model_defaults(args: argparse.Namespace, recorded: dict | None = None) -> None:
    """Give each option that depends on --model and was left unset on the command line and in
    --config a value: where a run is resumed or reproduced, the one its options (`recorded`) hold,
    or off for an option newer than them; else the model's default."""
    for option, value in MODEL_DEFAULTS[args.model].items():
        if getattr(args, option) is not None:
            continue
        if recorded is not None:
            mine = recorded.get(option)
            value = mine if mine is not None else OFF_WHEN_UNRECORDED.get(option, value)
        setattr(args, option, list(value) if isinstance(value, list) else value)


def resumed_checkpoint(args: argparse.Namespace) -> Path:
    """The checkpoint --ckpt-path names (`last`: the newest last.ckpt under the root folder)."""
    if args.ckpt_path == "last":
        return find_last_checkpoint(Path(args.default_root_dir or "."))
    return Path(args.ckpt_path)


def resumed_options(args: argparse.Namespace) -> tuple[Path | None, dict | None]:
    """The config.yaml of the run --ckpt-path resumes, and the options it records, if any."""
    if not args.ckpt_path:
        return None, None
    config = run_config_path(resumed_checkpoint(args))
    recorded = read_yaml(config) if config.is_file() else None
    return config, (recorded if isinstance(recorded, dict) else None)


def read_yaml(path: Path) -> Any:
    """A YAML file's content, or a one-line error saying why it has none."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FerError(f"{path} is not a text file (a YAML file of options)") from None
    except yaml.YAMLError as e:
        raise FerError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m fer.train",
        description="Train a FER-2013 emotion classifier with PyTorch Lightning. Runs land in "
        "DEFAULT_ROOT_DIR/lightning_logs/version_N/ (TensorBoard events, config.yaml, metrics.csv, checkpoints/).",
    )
    # path options take ~ as the home folder: the shell does it for a bare word, not for a
    # quoted one or a --config file's value (Lightning's logger would, the checkpoints would not)
    p.add_argument(
        "--config",
        type=os.path.expanduser,
        help="YAML file of options (a run's config.yaml reproduces it); flags override it. One "
        "that does not name crop trains on whole faces, as runs recorded before --crop did",
    )
    _data_options(p.add_argument_group("data"))
    _model_options(p.add_argument_group("model"))
    _optimisation_options(p.add_argument_group("optimisation"))
    _hardware_options(p.add_argument_group("hardware"))
    _run_options(p.add_argument_group("run"))
    add_debug_flag(p)
    return p


def _data_options(g) -> None:
    g.add_argument(
        "--data",
        type=os.path.expanduser,
        help="FER-2013: a Kaggle CSV (fer2013.csv, icml_face_data.csv, train.csv) or a folder with train/ test/ (default: data/fer2013, downloaded from Kaggle with kagglehub when it is not there; a path given here is never downloaded)",
    )
    g.add_argument(
        "--batch-size",
        type=positive(int),
        default=128,
        help=f"faces per training batch (per device with DDP); validation and test take "
        f"{EVAL_BATCH_SIZE} a batch",
    )
    g.add_argument(
        "--augment", default="light", choices=list(PRESETS), help="batched augmentation preset"
    )
    g.add_argument(
        "--balance",
        default="none",
        choices=["none", "loss", "sampler"],
        help="class imbalance: class-weighted loss or class-balanced sampling",
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="val share of train when the data has no PublicTest",
    )
    g.add_argument(
        "--exclude",
        type=os.path.expanduser,
        help="file of sample names to drop from training (from python -m fer.analyze)",
    )
    g.add_argument(
        "--cache-dir",
        type=os.path.expanduser,
        help="where decoded datasets are cached (default ~/.cache/fer or $FER_CACHE)",
    )
    g.add_argument(
        "--strict",
        action="store_true",
        help="fail on unreadable image files instead of skipping them",
    )


def _model_options(g) -> None:
    g.add_argument(
        "--model",
        default="cnn",
        choices=TRAINABLE,
        help="cnn: the custom CNN, trained from scratch; vgg: VGG16 transfer learning",
    )
    g.add_argument(
        "--widths",
        type=int,
        nargs="+",
        help=f"cnn: channels per stage (default: {' '.join(map(str, MODEL_DEFAULTS['cnn']['widths']))})",
    )
    g.add_argument("--depth", type=positive(int), default=2, help="cnn: conv layers per stage")
    g.add_argument(
        "--crop",
        type=int,
        metavar="PIXELS",
        help="cnn: train on random PIXELS x PIXELS crops of the 48x48 faces and look at the centre "
        f"crop at test (0: whole faces; default: {MODEL_DEFAULTS['cnn']['crop']})",
    )
    g.add_argument(
        "--residual",
        action="store_true",
        help="cnn: ResNet-style stages (one residual block each, strided convolutions, no pooling)",
    )
    g.add_argument("--dropout", type=float, default=0.3, help="dropout in the classifier head")
    g.add_argument(
        "--image-size", type=positive(int), default=96, help="vgg: input size faces are upscaled to"
    )
    g.add_argument(
        "--no-pretrained",
        action="store_true",
        help="vgg: random initialisation instead of ImageNet weights",
    )
    g.add_argument(
        "--weights",
        type=os.path.expanduser,
        help="vgg: local VGG16 state dict (.pth or .safetensors) for the backbone",
    )
    g.add_argument(
        "--freeze-epochs", type=int, default=3, help="vgg: epochs with the backbone frozen"
    )
    g.add_argument(
        "--backbone-lr-ratio",
        type=float,
        default=0.1,
        help="vgg: backbone LR as a fraction of the head's, once it is unfrozen (with "
        "--freeze-epochs 0 the backbone trains at the head's LR)",
    )


def _optimisation_options(g) -> None:
    g.add_argument(
        "--max-epochs",
        type=positive(int),
        help="epochs to train; the learning-rate schedule spans them all (a one-cycle run resumed "
        f"keeps its number; a cosine one may be given more) (default: {_per_model('max_epochs')})",
    )
    g.add_argument(
        "--lr",
        type=positive(float),
        help=f"peak learning rate (default: {_per_model('lr')})",
    )
    g.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS))
    g.add_argument("--scheduler", default="onecycle", choices=list(SCHEDULERS))
    g.add_argument(
        "--warmup-epochs",
        type=float,
        default=1.0,
        help="onecycle: epochs up to the peak learning rate; cosine: epochs of linear warm-up",
    )
    g.add_argument(
        "--weight-decay", type=float, default=5e-4, help="L2 penalty (decoupled with AdamW)"
    )
    g.add_argument(
        "--label-smoothing",
        type=float,
        default=0.1,
        help="share of each target spread evenly over the seven classes",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=0,
        help="early stopping patience in epochs on val/acc (0: off)",
    )
    g.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate, checkpoint and export an exponential moving average of the weights "
        "(e.g. 0.999; 0: off)",
    )
    g.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="train on mixup blends of two faces, the share drawn from Beta(ALPHA, ALPHA) "
        "(e.g. 0.2; 0: off)",
    )
    g.add_argument(
        "--teacher",
        type=os.path.expanduser,
        metavar="MODEL",
        help="knowledge distillation: learn also the class probabilities that this trained model "
        "(an export folder such as checkpoints/, a .ckpt, or a run folder) gives each training face",
    )
    g.add_argument(
        "--init",
        type=os.path.expanduser,
        metavar="MODEL",
        help="fine-tune: start from the weights of a trained model (an export folder such as "
        "checkpoints/, a .ckpt, or a run folder) rather than at random; give the same model "
        "options it was trained with (--widths, --crop, ...)",
    )
    g.add_argument(
        "--init-member",
        type=int,
        metavar="N",
        help="with --init of an ensemble (such as the shipped model): start from its member N, "
        "counted from 0",
    )
    g.add_argument(
        "--distill-alpha",
        type=float,
        default=0.7,
        help="with --teacher: weight of the distillation loss (the labels' loss gets 1 - alpha)",
    )
    g.add_argument(
        "--distill-temperature",
        type=positive(float),
        default=2.0,
        help="with --teacher: temperature softening both distributions",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seeds weights, batches and augmentation (and the validation share of data without "
        "PublicTest)",
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms (reproducible, slower)",
    )


def _hardware_options(g) -> None:
    g.add_argument(
        "--precision",
        default="auto",
        help="auto = bf16-mixed on CPUs with bf16 and on GPUs that have it (Ampere and newer), "
        "16-mixed on older GPUs, else 32-true",
    )
    g.add_argument("--accelerator", default="auto", help="Lightning's: cpu, gpu, mps or auto")
    g.add_argument(
        "--devices", default="auto", help="Lightning's: a count, a list such as 0,1, or auto"
    )
    g.add_argument("--strategy", default="auto", help="e.g. ddp for multi-GPU / multi-node")
    g.add_argument("--num-nodes", type=positive(int), default=1)
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory layout")


def _run_options(g) -> None:
    g.add_argument(
        "--limit-train-batches",
        type=limit,
        help="train on this many batches per epoch (50) or this share of them (0.25, at least one)",
    )
    g.add_argument(
        "--limit-val-batches",
        type=limit,
        help=f"validate on this many batches of {EVAL_BATCH_SIZE} faces (2) or this share "
        "(0.25, at least one); 0: no validation",
    )
    g.add_argument(
        "--fast-dev-run",
        action="store_true",
        help="one batch of train and val to check the pipeline (no test, no checkpoints)",
    )
    g.add_argument(
        "--ckpt-path",
        type=os.path.expanduser,
        help="resume from a checkpoint; 'last' finds the newest last.ckpt under the root dir",
    )
    g.add_argument(
        "--default-root-dir",
        type=os.path.expanduser,
        help="runs go to DIR/lightning_logs/version_N (default: the current folder; a run "
        "resumed by --ckpt-path goes on in its own unless a root is given, here or in --config)",
    )
    g.add_argument(
        "--no-test", action="store_true", help="skip testing the best checkpoint after fitting"
    )
    g.add_argument(
        "--json",
        type=os.path.expanduser,
        help="also write the final summary as JSON to this file ('-': to stdout)",
    )


#: --precision: auto (fer.common.default_precision), or one of Lightning's
PRECISIONS = ("auto", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true")
PRECISIONS += ("bf16-true", "64-true", "64", "transformer-engine", "transformer-engine-float16")

#: A run resumed by --ckpt-path takes its recorded options (its config.yaml), and refuses these
#: given again with another value (as flags or in a --config file; recorded as null too): its data
#: and split (another seed or share draws another validation share, holding faces it trained on),
#: the batches its schedule and records were laid out for, and the optimizer and schedule whose
#: states the checkpoint holds (they restore its learning rate, weight decay and backbone's share
#: of the rate). Its weights come from the checkpoint, not from the --init it started from (an
#: --init of another model given to it is refused). A
#: switch it was made with (--no-test, --compile) stays on; --compile, which renames the network's parameters where callbacks keep them (the averaged weights of --ema, the
#: backbone's of vgg), is not added to a run made without it.
RESUME_KEEPS = ("data", "batch_size", "model", "limit_train_batches", "seed", "val_fraction")
RESUME_KEEPS += ("exclude", "optimizer", "scheduler", "compile", "lr", "weight_decay")
RESUME_KEEPS += ("backbone_lr_ratio", "warmup_epochs")
#: and the network its checkpoint holds: another shape would not take its weights, and other
#: crops or faces' size would be recorded for a run that trained otherwise
RESUME_KEEPS += ("widths", "depth", "residual", "crop", "image_size")
#: Where the run goes on is the checkpoint's business (its version folder) and the command line's
#: (--default-root-dir), not the folder the run was first made in.
RESUME_TAKES_FROM_CHECKPOINT = ("init", "init_member", "config", "debug", "default_root_dir")


def config_words(
    parser: argparse.ArgumentParser, cfg: object, path: Path, strict: bool = True
) -> list[str]:
    """A config's options (a mapping, as a run's config.yaml holds them) as command-line words,
    so that they go through the same checks as flags. An option fer.train does not know is refused
    (`strict`), or, in a run recorded by another version of fer, left out."""
    if not isinstance(cfg, dict):
        raise FerError(f"{path} is not a mapping of options")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    if odd := [k for k in cfg if not isinstance(k, str)]:  # YAML reads on, yes, 1 as no names
        raise FerError(f"{path}: keys must be option names, not {odd[0]!r}")
    cfg = {k.replace("-", "_"): v for k, v in cfg.items()}
    unknown = sorted(set(cfg) - set(actions))
    if unknown and strict:
        raise FerError(f"{path}: unknown options {', '.join(unknown)}")
    words: list[str] = []
    for key, value in cfg.items():
        if key in ("config", "debug") or key in unknown or value is None:
            continue
        flag = actions[key].option_strings[-1]
        if actions[key].nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise FerError(f"{path}: {key} must be true or false, got {value!r}")
            words += [flag] if value else []
        else:
            if isinstance(value, list) and actions[key].nargs not in ("+", "*"):
                raise FerError(f"{path}: {key} takes one value, not a list: {value}")
            values = value if isinstance(value, list) else [value]
            words += [flag, *map(str, values)]
    return words


#: A run's recorded options that name files as they were typed (relative to where it started).
RECORDED_PATHS = ("data", "exclude", "teacher", "weights")


def started_in(config: Path, recorded: dict) -> Path | None:
    """The folder a run was started from, as the place of its config.yaml
    (ROOT/lightning_logs/version_N/) and its recorded --default-root-dir (ROOT from there) tell;
    None where they cannot (an absolute root, one that climbs with .., a run folder moved)."""
    root = Path(os.path.normpath(recorded.get("default_root_dir") or "."))
    run = config.resolve().parent
    if root.is_absolute() or ".." in root.parts or run.parent.name != "lightning_logs":
        return None
    top = run.parents[1]  # ROOT
    if root.parts and top.parts[-len(root.parts) :] != root.parts:
        return None
    return top.parents[len(root.parts) - 1] if root.parts else top


def paths_from_where_it_started(config: Path, recorded: dict) -> dict[str, str]:
    """The run's recorded relative paths (RECORDED_PATHS; --data left out: the default folder)
    as found from the folder it started in, where that is not where they lead from here:
    a checkpoint resumed from another folder still reads its own data."""
    from fer.download import DEFAULT_DATA

    base = started_in(config, recorded)
    if base is None:
        return {}
    found = {}
    for option in RECORDED_PATHS:
        value = recorded.get(option) or (str(DEFAULT_DATA) if option == "data" else None)
        if not isinstance(value, str) or Path(value).is_absolute():
            continue
        there = base / value
        if os.path.lexists(there) and real_path(there) != real_path(value):
            found[option] = str(there)
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options from the command line over those of a --config file. The file's values become
    command-line words put before the user's, so both go through the same checks."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = parser.parse_known_args(argv)
    words: list[str] = []  # the --config file's
    cfg: dict | None = None
    if first.config:
        path = Path(first.config)
        if not path.is_file():
            raise FerError(f"config file {path} does not exist")
        cfg = read_yaml(path) or {}
        words += config_words(parser, cfg, path)
    # the run resumed is found as fer.train finds it: --ckpt-path and --default-root-dir from the
    # command line over those of the --config file
    where, recorded = resumed_options(parser.parse_known_args(words + argv)[0])
    if recorded:  # a resumed run goes on with its own options, apart from those given again
        explicit = build_parser()  # what the user gives (flags, --config): None where silent
        explicit.set_defaults(**{a.dest: None for a in explicit._actions if a.dest != "help"})
        given = explicit.parse_args(words + argv)
        for option in RESUME_KEEPS:
            mine, theirs = getattr(given, option), recorded.get(option)
            if option == "limit_train_batches" and theirs is None:
                theirs = 1.0  # all batches, as a share (1, an int, is one batch)
            same = (
                same_data(theirs, mine)  # ./data/x is data/x, also from another folder
                if option in ("data", "exclude") and mine is not None and theirs is not None
                else str(mine) == str(theirs)
            )
            # recorded as null: all batches, no exclusion list (a run without --data took the
            # default folder, which --data may name)
            compared = option in recorded and (theirs is not None or option != "data")
            if mine is not None and compared and not same:
                flag = "--" + option.replace("_", "-")
                made = (
                    f"without {flag}"
                    if theirs is None or theirs is False
                    else f"with {flag} {theirs}"
                )
                raise FerError(
                    f"{flag if mine is True else f'{flag} {mine}'}: the run resumed was made "
                    f"{made} ({where}); resume it as it was, or start a new run from its weights "
                    "with --init"
                )
        kept = {k: v for k, v in recorded.items() if k not in RESUME_TAKES_FROM_CHECKPOINT}
        kept.update(paths_from_where_it_started(where, recorded))
        words = config_words(parser, kept, where, strict=False) + words
    args = parser.parse_args(words + argv)
    fill_model_defaults(args, recorded or cfg)
    validate(args)
    return args


def validate(args: argparse.Namespace) -> None:
    """Checks that argparse's types cannot express, for command-line and config values alike."""
    if not 0 < args.val_fraction < 1:  # nan too
        raise FerError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    if any(w <= 0 for w in args.widths):
        raise FerError("--widths must all be positive")
    if not 0 <= args.crop < IMAGE_SIZE or 0 < args.crop < 8:
        raise FerError(
            f"--crop must be between 8 and {IMAGE_SIZE - 1} pixels (0: no crop), got {args.crop}"
        )
    side = args.crop or IMAGE_SIZE  # each stage of the plain CNN halves the face, rounding down
    if args.model == "cnn" and not args.residual and side >> len(args.widths) < 1:
        most = side.bit_length() - 1
        raise FerError(
            f"--widths: {len(args.widths)} stages halve a {side} px face to nothing; give at "
            f"most {most} widths (or --residual)"
        )
    if not 0 <= args.label_smoothing < 1:
        raise FerError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0 <= args.seed < 2**32:
        raise FerError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.precision not in PRECISIONS:
        raise FerError(f"unknown --precision {args.precision}; choose {', '.join(PRECISIONS)}")
    if not 0 <= args.ema < 1:
        raise FerError(f"--ema must be a decay in [0, 1), got {args.ema}")
    if not (args.mixup >= 0 and math.isfinite(args.mixup)):  # (inf: Beta(inf, inf) is not 0.5)
        raise FerError(f"--mixup must be >= 0 (0: off), got {args.mixup}")
    if args.patience < 0:  # (was: quietly off)
        raise FerError(f"--patience must be >= 0 (0: off), got {args.patience}")
    if not 0 <= args.distill_alpha <= 1:
        raise FerError(f"--distill-alpha must be in [0, 1], got {args.distill_alpha}")
    if args.teacher and not Path(args.teacher).exists():
        raise FerError(f"--teacher {args.teacher} does not exist")
    if args.init and not Path(args.init).exists():
        raise FerError(f"--init {args.init} does not exist")
    if args.init_member is not None and not args.init:
        raise FerError("--init-member picks a member of the --init model; give --init too")
    if args.crop and args.model != "cnn":
        raise FerError("--crop is an option of --model cnn")
    if args.residual and args.model != "cnn":
        raise FerError("--residual is an option of --model cnn")
    if not 0 <= args.dropout < 1:
        raise FerError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.limit_train_batches == 0:
        raise FerError("--limit-train-batches 0 would train nothing; leave it out to train on all")
    if args.limit_val_batches == 0 and args.patience > 0:
        raise FerError("--patience stops on val/acc, which --limit-val-batches 0 never computes")
    if args.limit_val_batches == 0 and args.scheduler == "plateau":
        raise FerError(
            "--scheduler plateau follows val/acc, which --limit-val-batches 0 never computes"
        )
    for option in ("weight_decay", "warmup_epochs", "freeze_epochs", "backbone_lr_ratio"):
        value = getattr(args, option)
        if not (value >= 0 and math.isfinite(value)):  # nan too
            raise FerError(f"--{option.replace('_', '-')} must be >= 0, got {value}")
    # (were tracebacks once the run folder was made: 1e308 overflows the steps or a float32)
    if args.warmup_epochs > args.max_epochs:
        raise FerError(
            f"--warmup-epochs {args.warmup_epochs:g} is longer than the run's --max-epochs "
            f"{args.max_epochs}"
        )
    if args.weight_decay >= 1:
        raise FerError(f"--weight-decay must be below 1 (5e-4 is usual), got {args.weight_decay:g}")
    if args.model == "vgg" and args.image_size < 32:  # VGG16's five poolings halve it to 1 px
        raise FerError(f"--image-size must be at least 32 for --model vgg, got {args.image_size}")


def find_last_checkpoint(root: Path) -> Path:
    found = sorted(
        (root / "lightning_logs").glob("version_*/checkpoints/last*.ckpt"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise FerError(
            f"--ckpt-path last: no last.ckpt under {root / 'lightning_logs'}; pass a checkpoint path"
        )
    return found[-1]


def check_resumable(ckpt: Path, args: argparse.Namespace) -> None:
    """A one-cycle schedule is laid out for the run's length when it starts and is resumed with it:
    resuming for a different number of epochs would fail mid-run, so refuse at once."""
    config = run_config_path(ckpt)
    if args.scheduler != "onecycle" or not config.is_file():
        return
    recorded = read_yaml(config)
    planned = recorded.get("max_epochs") if isinstance(recorded, dict) else None
    if planned is not None and planned != args.max_epochs:
        raise FerError(
            f"{ckpt} belongs to a run planned for {planned} epochs, and its one-cycle schedule "
            f"cannot stretch to {args.max_epochs}: resume with --max-epochs {planned}, or start "
            f"a new run from its weights with --init {shlex.quote(str(ckpt))} --scheduler cosine"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, resolve the run, build data, model, callbacks and trainer, fit, report."""
    args = parse_args(argv)
    check_outputs({"--json": args.json})  # refused now, not after hours of training
    if args.json == "-":  # stdout carries the JSON summary alone: progress bars, tables to stderr
        stdout = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            return run(args, stdout)
    return run(args, sys.stdout)


def run(args: argparse.Namespace, stdout) -> int:
    """Train as `args` say; --json - prints the summary to `stdout`. Returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.model != "vgg" and (args.weights or args.no_pretrained):
        log.info("--weights / --no-pretrained only apply to --model vgg")
    # Heavy imports come after the argument checks, so --help and bad flags answer at once.
    import pytorch_lightning as pl
    import torch

    from fer.data import exclusion_list
    from fer.download import resolve_data
    from fer.models.vgg import backbone_state

    # the files named, and the ImageNet weights (a download), are read before the data is
    # fetched (a download) or decoded
    root, ckpt_path, version = resolve_run(args)
    if args.exclude:
        exclusion_list(args.exclude)
    backbone = None
    if backbone_from_file(args, resuming=bool(ckpt_path)):
        backbone = backbone_state(args.weights)
    args.data = resolve_data(args.data)
    precision = choose_precision(args)
    pl.seed_everything(args.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    # --init's weights are read and checked before the data is decoded and cached
    init = initial_weights(args) if args.init and not ckpt_path else None
    if ckpt_path and args.init and not same_init(args):  # they would be ignored
        raise FerError(
            f"--init {args.init}: a resumed run goes on from its checkpoint's weights, not "
            "another model's; drop --init, or start a new run from it"
        )
    dm = build_data(args)
    module = build_module(args, init=init, backbone=backbone)
    # What reproduces the run; how it was resumed is recorded apart (RunRecord's resumed.log).
    config = {
        k: v for k, v in vars(args).items() if k not in ("config", "debug", "json", "ckpt_path")
    }
    if ckpt_path:  # the weights the run started from, where a replay of its config.yaml starts
        recorded = resumed_options(args)[1] or {}
        config.update({k: recorded.get(k) for k in ("init", "init_member")})
        if args.default_root_dir is None:  # it goes on in its own folder: as it was recorded
            config["default_root_dir"] = recorded.get("default_root_dir")
    config["default_root_dir"] = config["default_root_dir"] or "."
    trainer = build_trainer(
        args,
        root,
        version,
        precision,
        build_callbacks(args, config, ckpt_path, version is not None),
    )
    from fer.callbacks import hangup_stops

    start = time.time()
    try:
        try:
            with hangup_stops(trainer):
                trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        except SystemExit as e:  # how Lightning ends a run stopped by SIGTERM or Ctrl-C
            return stopped_code(trainer, e)
        return report(trainer, dm, module, args, config, time.time() - start, stdout)
    finally:
        leave_process_group()


def leave_process_group() -> None:
    """End this process's part in a DDP run's process group (which Lightning leaves open): a
    gloo group left to the interpreter's exit could abort the process after its run had finished
    ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def stopped_code(trainer, stop: SystemExit) -> int:
    """The exit status of a run that SIGTERM (143: 128 + SIGTERM, as a shell reports a process
    that SIGTERM ended), SIGHUP (129; hangup_stops turns it into SIGTERM) or Ctrl-C (130) stopped:
    Lightning raises SIGTERMException for the first two and SystemExit(1) for the other, once the
    callbacks (CheckpointOnInterrupt) have run. Any other SystemExit goes on."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from fer.callbacks import CheckpointOnInterrupt

    if isinstance(stop, SIGTERMException):
        names = [c.sigterm_from for c in trainer.callbacks if isinstance(c, CheckpointOnInterrupt)]
        return 128 + signal.Signals[names[0] if names else "SIGTERM"]
    if trainer.interrupted:
        return 130
    raise stop


def check_checkpoint(path: Path) -> int:
    """Refuse, before any run folder is made, a --ckpt-path that is no Lightning checkpoint (one
    fer.train wrote: weights, optimizer and loop states); the number of epochs it trained whole
    (where a resume goes on from)."""
    import torch

    if path.is_dir() and (path / "model.json").is_file():
        from fer.inference import read_exported

        spec = read_exported(path)[0]
        members = spec.options.get("members") if spec.arch == "ensemble" else None
        which = f" --init-member N (0 to {len(members) - 1})" if isinstance(members, list) else ""
        raise FerError(
            f"{path} is an exported model, which holds weights but no training state: start a "
            f"new run from them with --init {shlex.quote(str(path))}{which}"
        )
    if path.is_dir():
        raise FerError(
            f"checkpoint {path} is a folder; name a .ckpt file in its checkpoints/ (last.ckpt), "
            "or give the run's root folder as --default-root-dir with --ckpt-path last"
        )
    if not path.is_file():
        raise FerError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:  # a permission refused: one line naming the file (run_cli)
        zipped = f.read(4) == b"PK\x03\x04"  # how torch.save begins its files
    try:  # mapped, not read: the trainer reads it
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # not a zip of tensors, or one holding other objects
        if zipped:  # a torch file that does not read
            why = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
            raise FerError(
                f"checkpoint {path} is damaged (cut short while it was written or copied?): "
                f"{why}; resume from another one"
            ) from e
        ckpt = None
    if not (isinstance(ckpt, dict) and {"state_dict", "loops", "epoch"} <= ckpt.keys()):
        raise FerError(
            f"{path} is not a Lightning checkpoint to resume (fer.train writes them in "
            "lightning_logs/version_N/checkpoints/); to start from a model's weights, use --init"
        )
    try:  # the epochs whose batches all ran: Lightning goes on with the next
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return 0  # (another Lightning's layout: left to Lightning)


def same_init(args: argparse.Namespace) -> bool:
    """Whether --init (and --init-member) given to a resumed run name the model it started from,
    or may (where the model it recorded, typed relative to a folder that cannot be told, is not
    found from here): the same files, or a model of the same key (fer.data.model_key)."""
    from fer.data import model_key
    from fer.inference import resolve_model_path

    config, recorded = resumed_options(args)
    started = (recorded or {}).get("init")
    if not started or (recorded or {}).get("init_member") != args.init_member:
        return False
    base = started_in(config, recorded)
    places = ([base / started] if base is not None else []) + [Path(started)]
    found = [p for p in places if p.exists()]
    if not found:  # named from a folder that cannot be told: the run ignores it anyway
        return True
    if real_path(args.init) in {real_path(p) for p in found}:
        return True

    def key(path: Path) -> str | None:
        try:
            return model_key(resolve_model_path(path))
        except (FerError, OSError):  # no model there (a folder of that name, a run unfinished)
            return None

    given = key(Path(args.init))
    return given is not None and any(key(p) == given for p in found)


def epochs_without_gain(path: str | Path) -> int:
    """The epochs without a better val/acc that a checkpoint's early stopping counted (0 where
    it kept none)."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    states = [v for k, v in ckpt.get("callbacks", {}).items() if k.startswith("EarlyStopping")]
    return max((int(s.get("wait_count", 0)) for s in states), default=0)


def resolve_run(args: argparse.Namespace) -> tuple[Path, str | None, int | None]:
    """(root folder, checkpoint to resume or None, version folder to keep writing into or None).
    A checkpoint in a run's folder (ROOT/lightning_logs/version_N/checkpoints/) goes on there,
    unless --default-root-dir names another root."""
    root = Path(args.default_root_dir or ".")
    ckpt_path, version = args.ckpt_path, None
    if ckpt_path == "last":
        ckpt_path = str(find_last_checkpoint(root))
    if ckpt_path:
        trained = check_checkpoint(Path(ckpt_path))
        finished = (real_path(ckpt_path).parent.parent / "summary.json").is_file()
        # Lightning would end at once, having trained nothing (one stopped before its summary
        # was written, in its last validation say, is resumed to finish it)
        if trained >= args.max_epochs and finished:
            raise FerError(
                f"{ckpt_path} ends a run that trained all its {trained} epochs (--max-epochs "
                f"{args.max_epochs}): nothing is left to train; give a larger --max-epochs to "
                "train on (a one-cycle schedule cannot stretch: start a new run with --init), or "
                "score it with python -m fer.evaluate"
            )
        if trained > args.max_epochs:  # (was Lightning's MisconfigurationException traceback)
            raise FerError(
                f"{ckpt_path} has trained {trained} epochs, more than --max-epochs "
                f"{args.max_epochs}: give --max-epochs {trained} or more to resume it"
            )
        # early stopping ended it: resumed as it was, it would train one more epoch each time
        if finished and args.patience and (wait := epochs_without_gain(ckpt_path)) >= args.patience:
            raise FerError(
                f"{ckpt_path} ends a run that early stopping ended ({wait} epochs without a better "
                f"val/acc, --patience {args.patience}): nothing is left to train; give a larger "
                "--patience (0: off) to train on, or score it with python -m fer.evaluate"
            )
        path = Path(ckpt_path).resolve()
        m = re.fullmatch(r"version_(\d+)", path.parents[1].name) if len(path.parents) > 3 else None
        if m and path.parent.name == "checkpoints" and path.parents[2].name == "lightning_logs":
            if args.default_root_dir is None:
                root = path.parents[3]
            if path.parents[2] == (root / "lightning_logs").resolve():
                version = int(m.group(1))  # keep writing into the interrupted run's folder
        check_resumable(Path(ckpt_path), args)
    return root, ckpt_path, version


def choose_precision(args: argparse.Namespace) -> str:
    precision = default_precision(args.accelerator) if args.precision == "auto" else args.precision
    if args.precision == "auto":
        why = " (this CPU has no native bf16, which would only be emulated)"
        log.info("precision: %s%s", precision, why if precision == "32-true" else "")
    return precision


def local_rank() -> int:
    """This process's rank on its node, as the launcher set it (torchrun and Lightning's own DDP
    launcher: LOCAL_RANK; SLURM: SLURM_LOCALID); 0 for a process started alone."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))


def build_data(args: argparse.Namespace):
    """The DataModule, with the data read and checked before anything is written."""
    from fer.data import FerDataModule

    dm = FerDataModule(
        data=args.data,
        batch_size=args.batch_size,
        augment=args.augment,
        val_fraction=args.val_fraction,
        seed=args.seed,
        balance=args.balance,
        exclude=args.exclude,
        cache_dir=args.cache_dir,
        strict=args.strict,
        channels_last=not args.no_channels_last,
        teacher=args.teacher,
    )
    if local_rank() == 0:  # DDP's other processes on this node read the caches it writes
        dm.prepare_data()
    dm.setup("fit")
    if "val" not in dm.splits and args.limit_val_batches != 0:
        # no PublicTest, and no class with two training faces to hold one out
        raise FerError(
            f"{args.data} gives no validation faces: add PublicTest_ faces to test/ (or "
            "PublicTest rows) or two or more training faces of a class, or train without "
            "validation (--limit-val-batches 0)"
        )
    return dm


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options the network is built with (what model.json records as `options`)."""
    if args.model == "cnn":
        options = {"widths": list(args.widths), "depth": args.depth, "dropout": args.dropout}
        if args.crop:
            options["crop"] = args.crop
        if args.residual:
            options["residual"] = True
        return options
    return {"image_size": args.image_size, "dropout": args.dropout}


def backbone_from_file(args: argparse.Namespace, resuming: bool) -> bool:
    """Whether the run reads ImageNet weights into VGG16's backbone (--weights, or torchvision's):
    not from --init's weights, nor where a resumed checkpoint holds them."""
    return args.model == "vgg" and not (args.no_pretrained or args.init or resuming)


def build_module(
    args: argparse.Namespace, init: dict | None = None, backbone: tuple[dict, str] | None = None
):
    """The LightningModule; `init`: a state dict to start from (initial_weights); `backbone`:
    VGG16's ImageNet features and their source (fer.models.vgg.backbone_state)."""
    import torch

    from fer.models.vgg import load_backbone_weights
    from fer.module import FerModule

    options = model_options(args)
    module = FerModule(
        model=args.model,
        model_options=options,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        class_weighted_loss=args.balance == "loss",
        channels_last=not args.no_channels_last,
        distill_alpha=args.distill_alpha if args.teacher else 0.0,
        distill_temperature=args.distill_temperature,
        mixup=args.mixup,
    )
    if init is not None:
        module.model.load_state_dict(init, strict=True)  # initial_weights checked it fits
        log.info("initial weights: %s", args.init)
    elif backbone is not None:
        log.info("backbone weights: %s", load_backbone_weights(module.model, read=backbone))
    if args.compile:
        module.model = torch.compile(module.model)
    return module


def initial_weights(args: argparse.Namespace) -> dict:
    """The state dict --init names (of its ensemble's --init-member), checked to fit the network
    the options build, refusing one of another shape or view of the face."""
    from fer.common import EMOTIONS
    from fer.inference import ModelSpec, read_weights, resolve_model_path, torch_model

    path, member = args.init, args.init_member
    spec, state, source = read_weights(resolve_model_path(Path(path)))
    if spec.arch == "ensemble":
        members = spec.options["members"]
        if member is None or not 0 <= member < len(members):
            raise FerError(
                f"--init {path} is an ensemble of {len(members)} networks: choose one with "
                f"--init-member 0 to {len(members) - 1}"
            )
        prefix = f"members.{member}."
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        spec_arch = members[member].get("arch")
        spec_options = members[member].get("options", {})
        what = f"{path} member {member}"
    elif member is not None:
        raise FerError(
            f"--init-member picks a member of an ensemble; {path} is a single {spec.arch}"
        )
    else:
        spec_arch, spec_options, what = spec.arch, spec.options, str(path)
    if spec.classes != list(EMOTIONS):
        raise FerError(f"--init {what} classifies {spec.classes}, not FER-2013's {list(EMOTIONS)}")

    def shape(o: dict[str, Any]) -> dict[str, Any]:  # what the weights mean (dropout is not kept)
        return {k: v for k, v in o.items() if k != "dropout" and v not in (0, False, None)}

    options = model_options(args)
    if spec_arch != args.model or shape(spec_options) != shape(options):
        raise FerError(
            f"--init {what} is a {spec_arch} with {shape(spec_options)}, not the {args.model} "
            f"with {shape(options)} asked for: give its options"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16 exports
    torch_model(ModelSpec(args.model, options), state, f"--init {what} ({source})")  # it fits
    return state


def build_callbacks(
    args: argparse.Namespace, config: dict[str, Any], ckpt_path: str | None, in_place: bool
):
    """The run's callbacks; `in_place`: it goes on in the version folder of `ckpt_path`."""
    from pytorch_lightning.callbacks import LearningRateMonitor, TQDMProgressBar

    from fer.callbacks import (
        AtLeastOneBatch,
        AveragedWeights,
        BackboneFreeze,
        CheckpointOnInterrupt,
        ConfusionMatrixLogger,
        EpochSeed,
        PredictionGridLogger,
        RunCheckpoint,
        RunEarlyStopping,
        RunRecord,
        StopOnDivergence,
    )

    validating = args.limit_val_batches != 0  # 0: no validation, so no best checkpoint
    callbacks: list = [
        StopOnDivergence(),
        # last.ckpt after every epoch, improved or not: what --ckpt-path last resumes from
        RunCheckpoint(
            monitor=None,
            save_top_k=1,
            filename="last",
            enable_version_counter=False,
            in_place=in_place,
        ),
        LearningRateMonitor(logging_interval="epoch"),
        ConfusionMatrixLogger(),
        PredictionGridLogger(),
        RunRecord(config, resumed_from=ckpt_path),
        CheckpointOnInterrupt(),
        EpochSeed(args.seed),
        AtLeastOneBatch(),
        TQDMProgressBar(refresh_rate=10),
    ]
    if validating:  # the best epoch on val/acc, first: it is the trainer's checkpoint_callback
        callbacks.insert(
            0,
            RunCheckpoint(
                monitor="val/acc",
                mode="max",
                save_top_k=1,
                filename="epoch{epoch:03d}-acc{val/acc:.4f}",
                auto_insert_metric_name=False,
                in_place=in_place,
            ),
        )
    if args.ema:
        # Validation, the checkpoints' state_dict and so every export see the averaged weights.
        callbacks.append(AveragedWeights(decay=args.ema))
    if args.patience > 0:
        callbacks.append(RunEarlyStopping(monitor="val/acc", mode="max", patience=args.patience))
    if args.model == "vgg" and args.freeze_epochs > 0:
        callbacks.append(BackboneFreeze(args.freeze_epochs, args.backbone_lr_ratio))
    return callbacks


def build_trainer(
    args: argparse.Namespace, root: Path, version: int | None, precision: str, callbacks
):
    from pytorch_lightning.loggers import TensorBoardLogger
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    logger = TensorBoardLogger(
        root, name="lightning_logs", version=version, default_hp_metric=False
    )
    try:
        return _trainer(args, root, precision, callbacks, logger)
    except (MisconfigurationException, ValueError, TypeError, ImportError) as e:
        # what Lightning says of an accelerator, a strategy, devices or a precision it cannot
        # have here (ImportError: one whose package is not installed, as transformer-engine's)
        raise FerError(
            f"Lightning cannot run here as asked (--accelerator {args.accelerator}, --devices "
            f"{args.devices}, --strategy {args.strategy}, --precision {precision}): "
            f"{str(e).splitlines()[0]}"
        ) from e


def _trainer(args: argparse.Namespace, root: Path, precision: str, callbacks, logger):
    import pytorch_lightning as pl

    from fer.callbacks import AtomicCheckpointIO

    return pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        precision=precision,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        fast_dev_run=args.fast_dev_run,
        default_root_dir=root,
        logger=logger,
        callbacks=callbacks,
        deterministic=args.deterministic,
        use_distributed_sampler=False,  # our BatchSampler shards by rank
        log_every_n_steps=10,
        enable_model_summary=True,
        plugins=[AtomicCheckpointIO()],
    )


def report(
    trainer,
    dm,
    module,
    args: argparse.Namespace,
    config: dict[str, Any],
    fit_seconds: float,
    stdout=None,
) -> int:
    """Test the best checkpoint (when there is a test split), log hyper-parameters, write and print
    the summary; returns the exit status. A test stopped by SIGTERM, SIGHUP or Ctrl-C leaves the
    finished run its summary, without test figures (and the status says how it was stopped)."""
    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
    summary: dict[str, Any] = {
        "model": args.model,
        "data": str(args.data),
        "log_dir": trainer.log_dir,  # every rank asks: it is a collective under DDP
        "best_checkpoint": best or None,
        "best_val_acc": round(float(ckpt_cb.best_model_score), 4)
        if ckpt_cb and ckpt_cb.best_model_score is not None
        else None,
        "epochs": trainer.current_epoch,
        "precision": str(trainer.precision),  # what the Trainer ran with
        "fit_seconds": round(fit_seconds, 1),
    }
    m = re.search(r"epoch(\d+)", Path(best).name) if best else None
    summary["best_epoch"] = int(m.group(1)) if m else None
    code = 0
    if dm.has_test() and not args.no_test and not args.fast_dev_run:
        from fer.callbacks import hangup_stops

        try:
            with hangup_stops(trainer):
                results = trainer.test(module, datamodule=dm, ckpt_path=best or None, verbose=False)
        except SystemExit as e:
            code = stopped_code(trainer, e)
            summary["test_interrupted"] = True
        else:
            summary["test_acc"] = round(float(results[0]["test/acc"]), 4)
            summary["test_f1"] = round(float(results[0]["test/f1"]), 4)
    if trainer.is_global_zero:
        if not args.fast_dev_run:
            trainer.logger.log_hyperparams(
                {
                    k: (str(v) if isinstance(v, (list, dict)) or v is None else v)
                    for k, v in config.items()
                },
                {
                    "hp/best_val_acc": summary["best_val_acc"] or 0.0,
                    **({"hp/test_acc": summary["test_acc"]} if "test_acc" in summary else {}),
                },
            )
            # logged after the trainer closed its event file, into a new one, closed now: left
            # open, a daemon thread wrote it after the run returned, or not at all where the
            # process ended first
            trainer.logger.experiment.close()
        if args.json and args.json != "-":
            write_text(args.json, json.dumps(summary, indent=2))
        if summary["log_dir"]:  # after --json's file: it marks the run finished (resolve_run)
            write_text(Path(summary["log_dir"]) / "summary.json", json.dumps(summary, indent=2))
        if args.json == "-":
            print(json.dumps(summary, indent=2), file=stdout or sys.stdout)
        print(_summary_text(summary), file=sys.stderr if args.json == "-" else sys.stdout)
        if code:
            why = "Ctrl-C" if code == 130 else signal.Signals(code - 128).name
            print(
                f"interrupted ({why}) while testing the best checkpoint, after training finished; "
                f"test it with {evaluate_command(summary, 'test')}",
                file=sys.stderr,
            )
    return code


def _devices(text: str):
    if isinstance(text, int) or text == "auto":
        return text
    if re.fullmatch(r"\d+", str(text)):
        return int(text)
    if re.fullmatch(r"[\d,]+", str(text)):
        return [int(t) for t in str(text).split(",") if t]
    return text


def _summary_text(s: dict[str, Any]) -> str:
    lines = [
        f"\nfinished {s['model']} in {s['fit_seconds']:.0f} s ({counted(s['epochs'], 'epoch')})"
    ]
    if s.get("best_val_acc") is not None:
        lines.append(f"  best val/acc  {s['best_val_acc']:.4f} at epoch {s['best_epoch']}")
    if "test_acc" in s:
        lines.append(f"  test/acc      {s['test_acc']:.4f}  (macro-F1 {s['test_f1']:.4f})")
    elif s.get("test_interrupted"):
        lines.append("  test/acc      none: the test was interrupted")
    if not s["log_dir"]:  # --fast-dev-run: Lightning's trial of the loops, which keeps nothing
        lines.append("  run folder    none: a --fast-dev-run keeps no run")
        return "\n".join(lines)
    lines.append(f"  checkpoint    {s['best_checkpoint']}")
    logs = shlex.quote(str(Path(s["log_dir"]).parent))
    lines.append(f"  run folder    {s['log_dir']}  (tensorboard --logdir {logs})")
    lines.append(f"  evaluate      {evaluate_command(s, 'val')}")
    return "\n".join(lines)


def evaluate_command(s: dict[str, Any], split: str) -> str:
    """The fer.evaluate command for a run's best checkpoint (its run folder stands for it) on the
    data it trained on, its paths quoted for a shell."""
    ckpt, data = shlex.quote(str(s["log_dir"])), shlex.quote(s["data"])
    return f"python -m fer.evaluate --ckpt {ckpt} --data {data} --split {split}"


if __name__ == "__main__":
    run_cli(main)

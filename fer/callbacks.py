"""Reusable callbacks: confusion matrices in TensorBoard, backbone fine-tuning, run records."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
import yaml
from pytorch_lightning.callbacks import (
    BaseFinetuning,
    EarlyStopping,
    EMAWeightAveraging,
    ModelCheckpoint,
)
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.trainer.states import RunningStage, TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fer.common import EMOTIONS, RUN_CONFIG, FerError, atomic_path, preprocess, write_text
from fer.figures import confusion_figure, face_grid


def run_dir(trainer: pl.Trainer) -> Path | None:
    """The run's version folder. (Not trainer.log_dir: that broadcasts, and would hang DDP when
    only rank zero asks.)"""
    logger = trainer.logger
    return Path(logger.log_dir) if logger is not None and getattr(logger, "log_dir", None) else None


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that, resumed in the run's own folder (`in_place`), keeps its
    record of the best epochs however that folder's path was written: Lightning restores it only
    where the path it recorded is the same string as today's, so a run made under a relative
    root (./lightning_logs/..., the default), resumed from another folder or moved, forgot its
    best score and took the next epoch as the best, its file written beside the old best's. The
    recorded paths are read in the folder today's path names. Its state goes by Lightning's name,
    so checkpoints written with and without it resume each other."""

    def __init__(self, *args: Any, in_place: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.in_place = in_place

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"ModelCheckpoint{kwargs!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if self.in_place and old and self.dirpath and old != self.dirpath:

            def moved(path: Any) -> Any:
                if not path:
                    return path
                rest = os.path.relpath(path, old)
                return path if rest.startswith("..") else os.path.join(self.dirpath, rest)

            state_dict = dict(state_dict, dirpath=self.dirpath)
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                if key in state_dict:
                    state_dict[key] = moved(state_dict[key])
            if "best_k_models" in state_dict:
                state_dict["best_k_models"] = {
                    moved(k): v for k, v in state_dict["best_k_models"].items()
                }
        super().load_state_dict(state_dict)


class RunEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping that keeps, resumed, the patience it was given (the run's
    --patience, which config.yaml records): Lightning's takes the checkpoint's. Its count of
    epochs without improvement and best score are the checkpoint's. Its state goes by Lightning's
    name."""

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"EarlyStopping{kwargs!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


class ConfusionMatrixLogger(pl.Callback):
    """Logs a labelled confusion-matrix figure to TensorBoard after every validation epoch and test,
    and keeps the latest counts as `confusion_<stage>.json` in the run folder."""

    def _log(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        cm = pl_module.confusion.get(stage)
        if cm is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if stage == "test":  # the epoch of the weights tested: the checkpoint's (the best one),
            # else the last trained (the loop's count has passed it when fitting ends)
            loaded = getattr(pl_module, "loaded_epoch", None)
            epoch = loaded if trainer.ckpt_path and loaded is not None else max(epoch - 1, 0)
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_figure"):
                acc = cm.diag().sum().item() / max(cm.sum().item(), 1)
                title = f"{stage} epoch {epoch}: acc {acc:.3f} on {int(cm.sum())} faces"
                logger.experiment.add_figure(
                    f"{stage}/confusion_matrix", confusion_figure(cm, title), global_step=epoch
                )
        if run_dir(trainer):
            record = {
                "stage": stage,
                "epoch": epoch,
                "classes": list(EMOTIONS),
                "matrix": cm.tolist(),
            }
            write_text(run_dir(trainer) / f"confusion_{stage}.json", json.dumps(record))

    def on_validation_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "test")


class PredictionGridLogger(pl.Callback):
    """Logs a grid of validation faces with their true and predicted emotions (green right, red wrong)
    to TensorBoard after every validation epoch; the same faces every time."""

    def __init__(self, n: int = 32):
        self.n = n

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # at the epoch's end, not the validation's: the network val/acc scored is still in place
        # (with --ema the average, which EMAWeightAveraging, a later callback, then swaps out)
        dm = getattr(trainer, "datamodule", None)
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or dm is None
            or "val" not in getattr(dm, "splits", {})
        ):
            return
        val = dm.splits["val"]
        pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[: self.n]
        faces, labels = val.images[pick], val.labels[pick]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            x = preprocess(faces).to(pl_module.device, pl_module.dtype)  # *-true: bf16, fp16, fp64
            probs = pl_module(x).float().softmax(1).cpu()
        pl_module.train(was_training)
        pred = probs.argmax(1)
        captions = [
            f"{EMOTIONS[t]} -> {EMOTIONS[p]}\n{probs[i, p]:.2f}"
            for i, (t, p) in enumerate(zip(labels, pred))
        ]
        colors = ["green" if t == p else "red" for t, p in zip(labels, pred)]
        fig = face_grid(
            faces.numpy(),
            captions,
            cols=8,
            title=f"val epoch {trainer.current_epoch}: true -> predicted",
            colors=colors,
        )
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_figure"):
                logger.experiment.add_figure(
                    "val/predictions", fig, global_step=trainer.current_epoch
                )


class BackboneFreeze(BaseFinetuning):
    """Trains the head alone for `unfreeze_at_epoch` epochs, then the backbone too at `lr_ratio`
    times the head's learning rate. The new parameter group joins the LR schedule, so one-cycle
    and cosine schedules drive both groups."""

    def __init__(self, unfreeze_at_epoch: int = 3, lr_ratio: float = 0.1):
        super().__init__()
        self.unfreeze_at_epoch, self.lr_ratio = unfreeze_at_epoch, lr_ratio

    def freeze_before_training(self, pl_module) -> None:
        if self.unfreeze_at_epoch > 0:
            self.freeze(pl_module.backbone, train_bn=False)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        if self.unfreeze_at_epoch == 0 or epoch < self.unfreeze_at_epoch:
            return
        if len(optimizer.param_groups) == 1:  # the unfreeze epoch: the backbone joins
            head = optimizer.param_groups[0]
            self.unfreeze_and_add_param_group(
                pl_module.backbone, optimizer, lr=head["lr"] * self.lr_ratio
            )
            group = optimizer.param_groups[-1]
            for key in ("initial_lr", "max_lr", "min_lr"):
                if key in head:
                    group[key] = head[key] * self.lr_ratio
            for key, value in head.items():
                group.setdefault(key, value)
            for config in pl_module.trainer.lr_scheduler_configs:
                self._cover_every_group(config.scheduler, len(optimizer.param_groups))

    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)  # gives a resumed run its param groups back
        for optimizer in trainer.optimizers:
            if len(optimizer.param_groups) > 1:
                # resumed after the unfreeze epoch: setup froze the backbone again, and the
                # checkpoint restores the schedule's base_lrs but not its lambdas
                self.make_trainable(pl_module.backbone)
                for config in trainer.lr_scheduler_configs:
                    self._cover_every_group(config.scheduler, len(optimizer.param_groups))

    def on_after_backward(self, trainer, pl_module) -> None:
        """Under DDP, the backbone's gradients averaged over the ranks, as DDP averages the head's.
        DDP registers the parameters that need gradients when it wraps the model, after this
        callback froze the backbone (also on a resumed run): it never syncs the backbone's, and
        each rank's backbone would drift on its own once unfrozen (Lightning issue #20340).
        Gradients DDP did average are the same on every rank: averaging them again keeps them.
        One exchange a step, of all of them laid end to end (26 tensors for VGG16's backbone)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        grads = [
            p.grad
            for p in pl_module.backbone.parameters()
            if p.requires_grad and p.grad is not None
        ]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(dist.get_world_size())
        for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(mean.view_as(g))

    def _cover_every_group(self, sched, groups: int) -> None:
        """Give the schedule an entry for the backbone's group: a fresh one on the unfreeze epoch,
        and again on resume, where the checkpoint restores base_lrs but not the lambdas."""
        if hasattr(sched, "base_lrs") and len(sched.base_lrs) < groups:
            sched.base_lrs.append(sched.base_lrs[0] * self.lr_ratio)
        if hasattr(sched, "lr_lambdas") and len(sched.lr_lambdas) < groups:
            sched.lr_lambdas.append(sched.lr_lambdas[0])
        if hasattr(sched, "min_lrs") and len(sched.min_lrs) < groups:
            sched.min_lrs.append(sched.min_lrs[0])


class StopOnDivergence(pl.Callback):
    """Ends the run with a one-line error when an epoch's mean training loss is not a number (nan
    or inf): the weights diverged, and every epoch after would go on from them while the run
    ended as a success. Checked at the end of the epoch (no synchronisation a step), before
    last.ckpt is saved over the last sound weights."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss_epoch")
        if loss is not None and not math.isfinite(float(loss)):
            raise FerError(
                f"training diverged in epoch {trainer.current_epoch}: its mean loss is "
                f"{float(loss)}; lower --lr (or --warmup-epochs more), and start again from "
                "the last sound checkpoint or from scratch"
            )


class RunRecord(pl.Callback):
    """Writes the run's configuration (config.yaml) and one row per epoch (metrics.csv) into its
    version folder, so every run says what it was and how it went; removes the summary.json of an
    earlier part of a resumed run."""

    def __init__(self, config: dict[str, Any], resumed_from: str | None = None):
        self.config, self.resumed_from = config, resumed_from
        self._recorded = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and not self.resumed_from:
            self._record(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # a resumed run, at its first batch (also mid-epoch, where no epoch starts): once its
        # checkpoint's state is restored and found to fit (FerModule.on_train_start); one refused
        # or failing before leaves the run as it was
        if self.resumed_from and not self._recorded:
            self._record(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        # a run resumed with no training batch left (stopped in its last validation)
        if self.resumed_from and not self._recorded:
            self._record(trainer)

    def _record(self, trainer) -> None:
        self._recorded = True
        if not (trainer.is_global_zero and run_dir(trainer)):
            return
        # A finished run resumed for more epochs is unfinished again: its folder stands for no
        # best checkpoint until fer.train writes the new summary.json at the end.
        (run_dir(trainer) / "summary.json").unlink(missing_ok=True)
        write_text(run_dir(trainer) / RUN_CONFIG, yaml.safe_dump(self.config, sort_keys=False))
        if self.resumed_from:  # how the run was continued, apart from what reproduces it
            log = run_dir(trainer) / "resumed.log"
            before = log.read_text() if log.is_file() else ""
            when = time.strftime("%Y-%m-%d %H:%M:%S")
            write_text(log, before + f"{when} resumed from {self.resumed_from}\n")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not run_dir(trainer):
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for k, v in sorted(trainer.callback_metrics.items()):
            if "/" in k and not k.endswith("_step"):
                row[k.removesuffix("_epoch")] = round(float(v), 6)
        path = run_dir(trainer) / "metrics.csv"
        rows = []
        if path.is_file():
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)


class EpochSeed(pl.Callback):
    """Reseeds every RNG at each epoch start from (seed, epoch), so a run resumed from an epoch-end
    checkpoint draws the same augmentations and dropout masks as one that never stopped."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed = self.seed * 1000 + trainer.current_epoch + 997 * trainer.global_rank
        pl.seed_everything(seed % 2**32, verbose=False)  # numpy's range; below it, as it is


class AtLeastOneBatch(pl.Callback):
    """A share of the training or validation batches (--limit-*-batches 0.1) is at least one batch.
    Lightning rounds the share of each process's batches down and refuses one that comes to none
    (FER-2013's 3,589 validation faces are 8 batches of 512), so such a share becomes one batch.
    Set up once DDP has started: the batches counted are this process's."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None:
            return
        for kind in ("train", "val"):
            share = getattr(trainer, f"limit_{kind}_batches")
            if isinstance(share, float) and 0 < share < 1:
                batches = len(getattr(dm, f"{kind}_dataloader")())
                if int(batches * share) == 0:
                    setattr(trainer, f"limit_{kind}_batches", 1)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary name and renamed: a crash never leaves a truncated .ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class CheckpointOnInterrupt(pl.Callback):
    """Ctrl-C, or SIGTERM (kill, timeout, docker stop, cluster schedulers; Lightning turns it into
    SIGTERMException), or SIGHUP (the terminal closed: `hangup_stops` makes it a SIGTERM), during
    training saves `last.ckpt`, so `--ckpt-path last` resumes the run.
    After training (the test of the best checkpoint) there is nothing to resume: the last.ckpt of
    the last epoch stays as it is. Stopped while an epoch is validated, the checkpoint says its
    validation was under way (`_validate_again`), so the resumed run validates it whole."""

    #: the signal a SIGTERMException came from: SIGHUP where `hangup_stops` sent it
    sigterm_from = "SIGTERM"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        stops = (KeyboardInterrupt, SIGTERMException)
        if (
            not isinstance(exception, stops)
            or trainer.checkpoint_callback is None
            or trainer.state.fn != TrainerFn.FITTING
        ):
            return
        dirpath = trainer.checkpoint_callback.dirpath
        if dirpath:
            if trainer.state.stage == RunningStage.VALIDATING:
                _validate_again(trainer.fit_loop.epoch_loop.val_loop.batch_progress)
            for callback in trainer.callbacks:  # the network's own weights, not the average
                if isinstance(callback, AveragedWeights):  # validation swapped in
                    callback.swap_back(pl_module)
            path = Path(os.path.abspath(dirpath)) / "last.ckpt"  # said whole: any folder
            trainer.save_checkpoint(path)
            quoted = shlex.quote(str(path))
            if trainer.is_global_zero:
                why = self.sigterm_from if isinstance(exception, SIGTERMException) else "Ctrl-C"
                # its path: from any folder it goes on in its run (--ckpt-path last finds it
                # from the run's root folder only)
                print(f"\ninterrupted ({why}): saved {path}; resume with --ckpt-path {quoted}")


@contextlib.contextmanager
def hangup_stops(trainer: pl.Trainer):
    """Inside, SIGHUP (the terminal of a run not started with `nohup` closed) stops training as
    SIGTERM does, through Lightning's own handler: `last.ckpt` saved, the exit status 129
    (`stopped_code`). Without it SIGHUP ended the process at once, losing the epoch under way.
    What the run still prints to its terminal, or to a pipe (`| tee log`, whose reader the closed
    terminal ended too), goes nowhere from then on, for the rest of the process (every write there
    would fail, ending the run before its checkpoint or its status); a file still gets it. Before
    Lightning has its SIGTERM handler (data being prepared) or with none (`--strategy
    ddp_spawn`'s main process), SIGHUP ends the process as it did. A run started ignoring SIGHUP
    (`nohup`) goes on ignoring it; off the main thread, nothing changes."""
    hup = getattr(signal, "SIGHUP", None)
    if hup is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(hup)
    if before is signal.SIG_IGN:
        yield
        return
    # asked now: a terminal hung up may no longer say it is one
    gone = [fd for fd in (1, 2) if _terminal_or_pipe(fd)]

    def hang_up(signum, frame) -> None:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.signal(hup, signal.SIG_DFL if before is None else before)
            os.kill(os.getpid(), hup)  # no one to stop training: SIGHUP's own way
            return
        if gone:
            null = os.open(os.devnull, os.O_WRONLY)
            for fd in gone:
                os.dup2(null, fd)
            os.close(null)
        for callback in trainer.callbacks:
            if isinstance(callback, CheckpointOnInterrupt):
                callback.sigterm_from = "SIGHUP"
        os.kill(os.getpid(), signal.SIGTERM)  # to Lightning's handler

    signal.signal(hup, hang_up)
    try:
        yield
    finally:
        signal.signal(hup, signal.SIG_DFL if before is None else before)


def _terminal_or_pipe(fd: int) -> bool:
    try:
        return os.isatty(fd) or stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:  # closed
        return False


def _validate_again(progress) -> None:
    """Set a validation loop's batch counts as Lightning leaves them when stopped inside the
    epoch's first batch, the one state from which a resumed run validates the epoch again, whole.
    Stopped after its last batch (while its figures are drawn, say) or before its first, they
    read as a validation done or not due, and the resumed run went on to the next epoch: the
    epoch's val/acc was never seen, so its checkpoint could not be the best and metrics.csv got a
    row without figures. Stopped inside a later batch, Lightning's resume runs as many batches as
    were left, from the first: figures of a part of the faces."""
    # the epochs before's (at most the total: stopped before the loop reset, `current` is still
    # the last validation's)
    earlier = max(progress.total.completed - progress.current.completed, 0)
    progress.total.ready = progress.total.started = earlier + 1
    progress.total.processed = progress.total.completed = earlier
    progress.current.ready = progress.current.started = 1
    progress.current.processed = progress.current.completed = 0


class AveragedWeights(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging, whose checkpoints hold the averaged weights as their
    state_dict (what val/acc scored and the export ships) and the raw ones apart, for a resume.
    Outside fitting (the test of the best checkpoint), the checkpoint's state_dict is the network:
    Lightning's callback, still holding fit's average then, would load the raw weights over it."""

    #: whether the averaged weights are in the network (validation swaps them in and out)
    swapped = False

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self.swapped = self._average_model is not None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        self.swapped = False

    def swap_back(self, pl_module) -> None:
        """The network's own weights back in it, where validation had swapped the averaged ones
        in: a checkpoint saved by a stop during validation (CheckpointOnInterrupt) would hold
        them the other way round, and the resumed run train on from the average."""
        if self.swapped:
            self._swap_models(pl_module)
            self.swapped = False

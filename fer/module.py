"""The LightningModule: any registered model, its loss, metrics, optimizer and schedule."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)

from fer.choices import OPTIMIZERS, SCHEDULERS
from fer.common import EMOTIONS, NUM_CLASSES, FerError
from fer.models import build_model


class FerModule(pl.LightningModule):
    """Classifies 48x48 faces into the seven FER-2013 emotions.

    Logs `train/loss_step`, `train/loss_epoch`, `train/acc`, `val/loss`, `val/acc`, `val/f1`,
    `val/recall_<emotion>` and the same under `test/`. The confusion matrix of the last val/test epoch is kept in
    `self.confusion[stage]` for callbacks to draw. The checkpoint holds every argument here, so
    `FerModule.load_from_checkpoint(path)` rebuilds the model with nothing else.
    """

    def __init__(
        self,
        model: str = "cnn",
        model_options: dict[str, Any] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.05,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        scheduler: str = "onecycle",
        warmup_epochs: float = 1.0,
        label_smoothing: float = 0.0,
        class_weighted_loss: bool = False,
        channels_last: bool = True,
        distill_alpha: float = 0.0,
        distill_temperature: float = 2.0,
        mixup: float = 0.0,
    ):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise FerError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise FerError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
        self.save_hyperparameters()
        self.model = build_model(model, num_classes=NUM_CLASSES, **(model_options or {}))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # A real tensor from the start (filled in setup): a buffer that appears later would be
        # missing from copies made before it, such as the weight average of --ema.
        self.register_buffer("class_weight", torch.ones(NUM_CLASSES), persistent=False)
        kw = {"num_classes": NUM_CLASSES}
        self.train_acc = MulticlassAccuracy(average="micro", **kw)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(average="micro", **kw))
            setattr(self, f"{stage}_f1", MulticlassF1Score(average="macro", **kw))
            setattr(self, f"{stage}_recall", MulticlassRecall(average="none", **kw))
            setattr(self, f"{stage}_cm", MulticlassConfusionMatrix(**kw))
        self.confusion: dict[str, torch.Tensor] = {}

    @property
    def backbone(self) -> nn.Module:
        """The pretrained part of a transfer-learning model (for the fine-tuning callback)."""
        if not hasattr(self.model, "backbone"):
            raise AttributeError(f"model {self.hparams.model!r} has no backbone")
        return self.model.backbone

    #: What torch.compile's wrapper (fer.train --compile) adds to the network's parameter names.
    COMPILED = "model._orig_mod."

    @staticmethod
    def _renamed(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
        return {new + k[len(old) :] if k.startswith(old) else k: v for k, v in state.items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the plain network's names, so that load_from_checkpoint rebuilds it from them
        checkpoint["state_dict"] = self._renamed(checkpoint["state_dict"], self.COMPILED, "model.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the epoch whose weights these are: a test of the best checkpoint names it
        self.loaded_epoch = checkpoint.get("epoch")
        # names for this network as it is: compiled (a resumed --compile run) or plain (also a
        # checkpoint saved with the wrapper's names, as they were before on_save_checkpoint)
        state = self._renamed(checkpoint["state_dict"], self.COMPILED, "model.")
        if hasattr(self.model, "_orig_mod"):
            state = self._renamed(state, "model.", self.COMPILED)
        checkpoint["state_dict"] = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and self.hparams.class_weighted_loss and dm is not None:
            counts = dm.class_counts.float().clamp(min=1)
            self.class_weight.copy_(counts.sum() / (NUM_CLASSES * counts))

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, train: bool) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(),
            y,
            # in float32, as the logits: a *-true precision casts the buffer with the network
            weight=self.class_weight.float()
            if train and self.hparams.class_weighted_loss
            else None,
            label_smoothing=self.hparams.label_smoothing if train else 0.0,
        )

    def _distill_loss(self, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Hinton et al.'s knowledge distillation: T^2 KL(teacher_T || student_T), where _T is the
        distribution softened by the temperature T; `teacher` holds log-probabilities."""
        t = self.hparams.distill_temperature
        return F.kl_div(
            F.log_softmax(logits.float() / t, 1),
            F.log_softmax(teacher.float() / t, 1),
            log_target=True,
            reduction="batchmean",
        ) * (t * t)

    def _train_loss(self, logits: torch.Tensor, y: torch.Tensor, teacher: list) -> torch.Tensor:
        loss = self._loss(logits, y, train=True)
        if teacher:  # the data module passes a teacher's targets along with the labels
            alpha = self.hparams.distill_alpha
            loss = (1 - alpha) * loss + alpha * self._distill_loss(logits, teacher[0])
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, *teacher = batch
        if self.hparams.mixup > 0:
            # mixup (Zhang et al., 2018): each face blended with another of the batch, in a share
            # lam ~ Beta(a, a) for the whole batch; the loss blends both faces' targets alike.
            a = torch.tensor(self.hparams.mixup, dtype=torch.float32)  # bf16-true sets the
            lam = float(torch.distributions.Beta(a, a).sample())  # default dtype: no Beta there
            perm = torch.randperm(len(y), device=y.device)
            logits = self(lam * x + (1 - lam) * x[perm])
            loss = lam * self._train_loss(logits, y, teacher) + (1 - lam) * self._train_loss(
                logits, y[perm], [t[perm] for t in teacher]
            )
            y = y if lam >= 0.5 else y[perm]  # train/acc counts the larger share's label
        else:
            logits = self(x)
            loss = self._train_loss(logits, y, teacher)
        self.train_acc(logits, y)
        # the names Lightning gives a value logged on_step and on_epoch; the epoch's mean covers
        # every rank's faces under DDP, as train/acc does, and a step's value (rank 0's) costs
        # no exchange between the ranks
        self.log("train/loss_step", loss, prog_bar=True)
        self.log(
            "train/loss_epoch",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(y),
        )
        self.log(
            "train/acc",
            self.train_acc,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
        )
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        preds = logits.argmax(1)
        self.log(
            f"{stage}/loss",
            self._loss(logits, y, train=False),
            on_epoch=True,
            sync_dist=True,
            batch_size=len(y),
        )
        for name in ("acc", "f1", "recall", "cm"):
            getattr(self, f"{stage}_{name}").update(preds, y)

    def _eval_epoch_end(self, stage: str) -> None:
        # compute() gathers every rank's counts, so these cover the whole split under DDP.
        # (sync_dist on equal values is a no-op average; it only tells Lightning they are global)
        self.log(
            f"{stage}/acc", getattr(self, f"{stage}_acc").compute(), prog_bar=True, sync_dist=True
        )
        self.log(f"{stage}/f1", getattr(self, f"{stage}_f1").compute(), sync_dist=True)
        self.confusion[stage] = getattr(self, f"{stage}_cm").compute().cpu()
        present = self.confusion[stage].sum(1) > 0  # an emotion without faces here has no recall
        for name, r, here in zip(EMOTIONS, getattr(self, f"{stage}_recall").compute(), present):
            if here:
                self.log(f"{stage}/recall_{name}", r, sync_dist=True)
        for name in ("acc", "f1", "recall", "cm"):
            getattr(self, f"{stage}_{name}").reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).float().softmax(1)

    def on_train_start(self) -> None:
        """Schedules restored from a checkpoint (restored by now, unlike at fit start): a cosine
        one sets the learning rates of its own curve, which may be longer than the old run's;
        a one-cycle one must span the run's steps as they are now: resumed with epochs of another
        number of batches (an --exclude list that grew, other devices) it would fail midway
        ('Tried to step N times') or end unfinished."""
        steps = int(self.trainer.estimated_stepping_batches)
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                # the cosine curve is made anew for the run's length, and a resumed run may be
                # longer: the learning rates restored with the optimizer are the old curve's (0
                # where it ended), so the first step takes the new curve's own (at any other
                # time they are the same)
                step = sched.last_epoch
                for group, base, curve in zip(
                    sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas
                ):
                    group["lr"] = base * curve(step)
            if (
                isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
                and sched.total_steps != steps
            ):
                raise FerError(
                    f"the run resumed has a one-cycle schedule laid out for {sched.total_steps} "
                    f"steps, and its epochs as they are now would take {steps} (its data, "
                    "--exclude list or devices changed): resume it as it was, or start a new run "
                    "from its weights with --init"
                )

    def configure_optimizers(self):
        hp = self.hparams
        # Frozen parameters (a backbone before fine-tuning) join later, through the callback.
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, nesterov=True, weight_decay=hp.weight_decay
            )
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=0.5, patience=3
            )
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": "val/acc", "interval": "epoch"},
            }
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        steps_per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        warmup = min(int(hp.warmup_epochs * steps_per_epoch), total // 2)
        if total < 3:  # too short a run for any schedule (fast_dev_run, smoke tests)
            return opt
        if hp.scheduler == "onecycle":
            pct_start = min(
                max(warmup / total, 1.5 / total), 1 - 1.5 / total
            )  # both phases >= 1 step
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=hp.lr,
                total_steps=total,
                pct_start=pct_start,
                cycle_momentum=hp.optimizer == "sgd",
                div_factor=25,
                final_div_factor=1e3,
            )
        else:

            def cosine(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (
                    1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1.0))
                )

            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

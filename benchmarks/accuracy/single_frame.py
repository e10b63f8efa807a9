"""The single-frame baseline of the ablations: a 2-D CNN that sees one frame per window.

It takes the same clips as C3D, ``(B, 3, T, S, S)``, and looks only at clip frame T // 2
(frame s + L/2 of the window, its middle), so it trains on the same samples, crops and
schedule, and slots into the same detection pipeline. What it cannot see is motion; the gap
between it and C3D shows how much of the synthetic benchmark needs motion to solve.
"""

from __future__ import annotations

import torch
from torch import nn

from scnn.config import TrainConfig
from scnn.dataset import ClipDataset
from scnn.distributed import DrawPositions
from scnn.loss import overlap_loss
from scnn.stages import Stage, TrainingData, stage_samples

CHANNELS = (16, 32, 64, 128)  # per 3x3 conv block, each followed by 2x2 max pooling
HIDDEN = 256  # units of the fully connected layer before the output


class SingleFrameNet(nn.Module):
    """Conv-BN-ReLU-pool blocks, global average pooling, one hidden layer, ``num_outputs``
    logits. Input: clips ``(batch, channel, time, height, width)``."""

    def __init__(self, num_outputs: int, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for channels in CHANNELS:
            layers += [
                nn.Conv2d(previous, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(previous, HIDDEN),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(HIDDEN, num_outputs),
        )

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        middle = clips[:, :, clips.shape[2] // 2].contiguous()
        return self.head(self.features(middle))


def train_single_frame(
    stage: Stage, config: TrainConfig, data: TrainingData, progress: bool = False
) -> SingleFrameNet:
    """Train a :class:`SingleFrameNet` for ``stage`` as scnn.train.train trains C3D: the same
    samples and clip draws (seed), batch, steps, loss (λ, α) and step decay. The optimiser is
    AdamW at ``config.lr`` for every layer, which is what configs/synthetic_cpu.toml gives
    C3D (``fc8_lr_mult = 1``); CPU only. Returned in eval mode."""
    torch.manual_seed(config.seed)
    model = SingleFrameNet(stage.num_outputs(len(data.classes)), config.model.dropout)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer,
        step_size=max(1, round(config.steps * stage.lr_decay_every)),
        gamma=stage.lr_decay,
    )
    positions = DrawPositions(0, config.steps, config.batch_size)
    loader = torch.utils.data.DataLoader(
        ClipDataset(
            stage_samples(stage, config, data, train=True),
            data.cache,
            config.clip.convention(),
            train=True,
            seed=config.seed,
            mirror=config.clip.mirror,
        ),
        batch_size=positions.rank_batch,
        sampler=positions,
        collate_fn=ClipDataset.collate,
        num_workers=config.workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    lam = config.overlap_lambda if stage.overlap else 0.0
    model.train()
    for step, (clips, labels, ious) in enumerate(loader, start=1):
        loss = overlap_loss(model(clips), labels, ious, lam=lam, alpha=config.overlap_alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress and step % config.log_every == 0:
            print(f"single-frame {stage.name}: step {step}/{config.steps} loss {loss.item():.4f}")
    return model.eval()

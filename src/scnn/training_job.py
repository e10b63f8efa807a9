"""``scnn train``'s job: the config saved, the videos decoded once, the chosen stages trained
in order (train.py trains each; boundary_training.py the boundary stages a config with
``boundaries = true`` adds), and the model directory assembled once the networks detection
needs are trained.

A job writes, under its output folder::

    config.json                   the resolved config
    frame_cache/                  the decoded videos (unless another cache folder is given)
    <stage>/...                   each stage's checkpoint, weights, metrics, log (train.py)
    model/                        the model directory for ``scnn detect`` (modelfile.py)
"""

from __future__ import annotations

from pathlib import Path

from scnn import distributed
from scnn.boundary_clips import BoundaryClips
from scnn.boundary_training import (
    BOUNDARIES,
    BOUNDARY_CLIPS,
    BOUNDARY_STAGES,
    boundary_stages,
    train_boundaries,
    train_boundary_clips,
)
from scnn.config import TrainConfig, config_dict, write_run_config
from scnn.distributed import SINGLE, World
from scnn.errors import ScnnError
from scnn.model import network_for_weights
from scnn.modelfile import LoadedModel, load_state, save_model, training_prior
from scnn.pretrained import (
    check_follows_weights,
    copy_proposal,
    started_from,
    trained_stages,
    training_convention,
)
from scnn.stages import LOCALIZATION, PROPOSAL, STAGES, TrainingData, prepare_data
from scnn.train import METRICS, WEIGHTS, read_metrics, train, training_device

MODEL_DIR = "model"


def model_stages(config: TrainConfig) -> tuple[str, ...]:
    """The stages whose networks the model directory holds."""
    return (PROPOSAL.name, LOCALIZATION.name, *boundary_stages(config))


def model_ready(out_dir: str | Path, config: TrainConfig) -> bool:
    """Whether every stage of :func:`model_stages` has finished in ``out_dir``."""
    return all((Path(out_dir) / name / WEIGHTS).is_file() for name in model_stages(config))


def write_model_dir(out_dir: str | Path, config: TrainConfig, data: TrainingData) -> Path:
    """Assemble ``out_dir/model`` from the trained proposal and localization networks (and
    boundary networks, when the config has them), the window-length prior of the training
    instances, the config, every stage's metrics and the input convention the networks learnt
    on (pretrained.training_convention)."""
    out_dir = Path(out_dir)
    outputs = {PROPOSAL.name: 2, LOCALIZATION.name: len(data.classes) + 1}
    networks = {}
    for name in model_stages(config):
        network = network_for_weights(outputs.get(name, 2), config.model, config.clip)
        weights = out_dir / name / WEIGHTS
        if not weights.is_file():
            raise ScnnError(f"the {name} stage is not trained yet", weights)
        load_state(network, weights)
        networks[name] = network.eval()
    names = [stage.name for stage in STAGES] + list(BOUNDARY_STAGES)
    trained = [name for name in names if (out_dir / name / METRICS).is_file()]
    metrics = {name: read_metrics(out_dir / name) for name in trained}
    clips = networks.get(BOUNDARY_CLIPS)
    model = LoadedModel(
        proposal=networks[PROPOSAL.name],
        localization=networks[LOCALIZATION.name],
        classes=data.classes,
        prior=training_prior(data.train_gt, config.windows),
        windows=config.windows,
        convention=training_convention(config),
        clip=config.clip,
        options=config.model,
        proposal_threshold=config.proposal_threshold,
        use_prior=config.use_prior,
        config={**config_dict(config), "started_from": started_from(config, data.classes)},
        metrics=metrics,
        vote_iou=config.vote_iou or None,
        boundaries=networks.get(BOUNDARIES),
        boundary_clips=None if clips is None else BoundaryClips(clips),
    )
    model_dir = out_dir / MODEL_DIR
    save_model(model_dir, model)
    return model_dir


def train_model(
    config: TrainConfig,
    annotations: str | Path,
    videos_dir: str | Path,
    out_dir: str | Path,
    *,
    stage: str = "all",
    val_annotations: str | Path | None = None,
    trimmed_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    world: World = SINGLE,
) -> Path | None:
    """``scnn train``: save the config, decode the videos once, train the chosen stages in
    order (``stage``: one stage's name, or "all": every stage, or from an scnn model
    directory those of ``config.finetune_stages``, the model's proposal network copied when
    left out), and assemble ``out_dir/model`` once both networks detection needs are
    trained. Returns the model directory, or None before then. A config with ``boundaries``
    trains the boundary stages after localization (``stage`` "all", or either by its name),
    in one process (rank 0, while the others wait).

    ``world``: this process among several started by torchrun (distributed.world_from_env);
    they share ``out_dir`` and join one process group for the run. On each machine local
    rank 0 decodes the videos into the frame cache while the other ranks wait."""
    out_dir = Path(out_dir)
    if stage in BOUNDARY_STAGES and stage not in boundary_stages(config):
        wanted = "boundaries = true" + (", boundary_steps ≥ 1" if stage == BOUNDARIES else "")
        raise ScnnError(f"--stage {stage}: the config does not train it ({wanted})")
    device = training_device(config, world)
    trained = trained_stages(config)  # checked before any video is decoded, as the input is
    check_follows_weights(config)
    training_convention(config)
    with distributed.process_group(world, distributed.backend_for(device)):
        write_run_config(out_dir, config, resume=resume, world=world)
        with distributed.local_rank_first(world):
            data = prepare_data(
                config,
                annotations,
                videos_dir,
                cache_dir or out_dir / "frame_cache",
                val_annotations=val_annotations,
                trimmed_dir=trimmed_dir,
                progress=progress and world.local_rank == 0,
            )
        if PROPOSAL not in trained and world.is_main:
            copy_proposal(config, out_dir / PROPOSAL.name / WEIGHTS)
        for each in STAGES:
            if stage == each.name or (stage == "all" and each in trained):
                train(
                    each,
                    config,
                    data,
                    out_dir,
                    resume=resume,
                    progress=progress,
                    world=world,
                    device=device,
                )
        if config.boundaries and world.is_main:
            for name, train_stage in (
                (BOUNDARIES, train_boundaries),
                (BOUNDARY_CLIPS, train_boundary_clips),
            ):
                if name in boundary_stages(config) and stage in ("all", name):
                    train_stage(
                        config, data, out_dir, resume=resume, progress=progress, device=device
                    )
        distributed.barrier(world)
        if not model_ready(out_dir, config):
            return None
        if world.is_main:
            write_model_dir(out_dir, config, data)
        distributed.barrier(world)
    return out_dir / MODEL_DIR

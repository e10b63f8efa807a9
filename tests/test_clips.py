import numpy as np
import pytest
import torch

from scnn.clips import (
    C3D_MEAN_RGB,
    ClipConfig,
    InputConvention,
    assemble_clips,
    batch_input_array,
    gather_clips,
    normalize_clips,
    sample_frame_indices,
)

RAW = InputConvention(mean=0.0)  # no normalisation: output pixels = input values


def _coded_frames(num_frames: int, first_frame: int = 1, width: int = 171, height: int = 128):
    """Frames whose pixel (y, x) of frame number f holds (f, x, y) in its R, G, B channels."""
    frame = np.arange(first_frame, first_frame + num_frames)[:, None, None]
    x = np.arange(width)[None, None, :]
    y = np.arange(height)[None, :, None]
    shape = (num_frames, height, width)
    return np.stack(
        [np.broadcast_to(frame, shape), np.broadcast_to(x, shape), np.broadcast_to(y, shape)],
        axis=-1,
    ).astype(np.uint8)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (16, list(range(5, 21))),
        (32, list(range(5, 37, 2))),
        (64, list(range(5, 69, 4))),
        (128, list(range(5, 133, 8))),
        (256, list(range(5, 261, 16))),
        (512, list(range(5, 517, 32))),
    ],
)
def test_sample_frame_indices_for_each_length(length, expected):
    indices = sample_frame_indices(5, length)
    assert indices.tolist() == expected
    assert indices[-1] == 5 + 15 * length // 16
    assert indices[-1] <= 5 + length - 1


def test_gather_then_normalize_in_bf16_is_the_float32_clip_rounded_once():
    """The Detector queues uint8 clips and normalises each batch in the network's dtype."""
    frames = _coded_frames(80)
    config = InputConvention(std=(58.0, 57.0, 57.0))
    gathered = gather_clips(frames, np.array([1, 17]), np.array([16, 64]), config, train=False)
    assert gathered.dtype == torch.uint8 and gathered.shape == (2, 16, 112, 112, 3)
    assert gathered[1, :, 0, 0, 0].tolist() == list(range(17, 81, 4))
    as_float = assemble_clips(frames, np.array([1, 17]), np.array([16, 64]), config, train=False)
    assert torch.equal(normalize_clips(gathered, config), as_float)
    as_bf16 = normalize_clips(gathered, config, torch.bfloat16)
    assert as_bf16.dtype == torch.bfloat16
    assert as_bf16.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(as_bf16, as_float.to(torch.bfloat16))
    assert as_bf16[0, 0, 3, 0, 0].item() == pytest.approx((4 - C3D_MEAN_RGB[0]) / 58.0, rel=4e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bgr", [False, True])
def test_normalising_into_a_kept_array_gives_the_same_values(dtype, bgr):
    convention = InputConvention(
        crop_size=24, mean=(101.4, 97.7, 90.3), std=(58.0, 57.0, 57.0), bgr=bgr
    )
    shape = (3, 16, 24, 24, 3)
    clips = torch.from_numpy(np.random.default_rng(4).integers(0, 256, shape, np.uint8))
    kept = batch_input_array(4, convention, dtype).fill_(torch.nan)  # room for a larger batch
    normalised = normalize_clips(clips, convention, dtype, out=kept)
    assert torch.equal(normalised, normalize_clips(clips, convention, dtype))
    assert normalised.is_contiguous(memory_format=torch.channels_last_3d)
    assert kept[:3].isfinite().all() and kept[3].isnan().all()  # written there, no further
    if not bgr:  # the batch is a view of the kept array, not a copy
        assert normalised.untyped_storage().data_ptr() == kept.untyped_storage().data_ptr()


def test_sample_frame_indices_short_clip_repeats_frames():
    assert sample_frame_indices(1, 8).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8]
    assert sample_frame_indices(1, 20).tolist()[:4] == [1, 2, 3, 4]  # floor(k·20/16)+1


def test_centre_crop_samples_the_right_frames_and_pixels():
    frames = _coded_frames(80)
    clips = assemble_clips(frames, np.array([1, 17]), np.array([16, 64]), RAW, train=False)
    assert clips.shape == (2, 3, 16, 112, 112) and clips.dtype == torch.float32
    assert clips.is_contiguous(memory_format=torch.channels_last_3d)
    # Channel 0 = frame number, constant over the crop.
    assert clips[0, 0, :, 0, 0].tolist() == list(range(1, 17))
    assert clips[1, 0, :, 0, 0].tolist() == list(range(17, 81, 4))
    assert (clips[:, 0] == clips[:, 0, :, :1, :1]).all()
    # Centre crop of 171×128: columns 29..140, rows 8..119, not mirrored.
    assert clips[0, 1, 0, 0, :].tolist() == list(range(29, 141))
    assert clips[0, 2, 0, :, 0].tolist() == list(range(8, 120))


def test_first_frame_offsets_a_streaming_buffer():
    frames = _coded_frames(40, first_frame=101)  # frames 101..140
    clips = assemble_clips(
        frames, np.array([117]), np.array([16]), RAW, train=False, first_frame=101
    )
    assert clips[0, 0, :, 0, 0].tolist() == list(range(117, 133))
    with pytest.raises(ValueError, match="buffer holds 101..140"):
        assemble_clips(frames, np.array([130]), np.array([16]), RAW, train=False, first_frame=101)


def test_training_crops_are_random_windows_of_the_frame_and_mirror_sometimes():
    frames = _coded_frames(16)
    rng = np.random.default_rng(0)
    starts, lengths = np.ones(64, np.int64), np.full(64, 16)
    clips = assemble_clips(frames, starts, lengths, RAW, train=True, rng=rng, mirror=True)
    cols = clips[:, 1, 0, 0, :]  # x of the crop's first row, left to right
    rows = clips[:, 2, 0, :, 0]
    steps = cols[:, 1:] - cols[:, :-1]
    mirrored = (steps == -1).all(dim=1)
    assert ((steps == 1).all(dim=1) | mirrored).all()
    assert 10 < int(mirrored.sum()) < 54  # about half of 64
    left = torch.where(mirrored, cols[:, -1], cols[:, 0])
    assert left.min() >= 0 and left.max() <= 171 - 112 and len(set(left.tolist())) > 10
    assert (rows[:, 1:] - rows[:, :-1] == 1).all()
    assert rows[:, 0].min() >= 0 and rows[:, 0].max() <= 128 - 112
    # One crop per clip: every frame of a clip uses the same pixels.
    assert (clips[:, 1:] == clips[:, 1:, :1]).all()
    # Same generator state, same clips.
    again = assemble_clips(
        frames, starts, lengths, RAW, train=True, rng=np.random.default_rng(0), mirror=True
    )
    assert torch.equal(clips, again)


def test_mirror_off_keeps_left_to_right():
    frames = _coded_frames(16)
    clips = assemble_clips(
        frames,
        np.ones(64, np.int64),
        np.full(64, 16),
        RAW,
        train=True,
        rng=np.random.default_rng(0),
        mirror=False,
    )
    cols = clips[:, 1, 0, 0, :]
    assert (cols[:, 1:] - cols[:, :-1] == 1).all()


def test_normalisation_values():
    frames = np.full((16, 128, 171, 3), 200, dtype=np.uint8)
    frames[..., 1] = 100
    frames[..., 2] = 0
    config = ClipConfig(mean_rgb=(100.0, 50.0, 10.0), std_rgb=(50.0, 25.0, 5.0)).convention()
    clips = assemble_clips(frames, np.array([1]), np.array([16]), config, train=False)
    assert clips[0, :, 0, 0, 0].tolist() == [2.0, 2.0, -2.0]
    default = assemble_clips(frames, np.array([1]), np.array([16]), InputConvention(), train=False)
    expected = torch.tensor([200.0, 100.0, 0.0]) - torch.tensor(C3D_MEAN_RGB)
    torch.testing.assert_close(default[0, :, 3, 5, 7], expected)
    bgr = InputConvention(bgr=True)
    bgr = assemble_clips(frames, np.array([1]), np.array([16]), bgr, train=False)
    torch.testing.assert_close(bgr[0, :, 3, 5, 7], expected.flip(0))
    value = InputConvention(mean=128.0, bgr=True)  # Res3D's convention: the mean is one value
    value = assemble_clips(frames, np.array([1]), np.array([16]), value, train=False)
    assert value[0, :, 3, 5, 7].tolist() == [-128.0, -28.0, 72.0]


def test_small_cpu_geometry():
    config = InputConvention(frame_size=(64, 64), crop_size=56)
    frames = _coded_frames(32, width=64, height=64)
    clips = assemble_clips(frames, np.array([1]), np.array([32]), config, train=False)
    assert clips.shape == (1, 3, 16, 56, 56)
    assert clips[0, 1, 0, 0, 0] == 4 - C3D_MEAN_RGB[1]  # (64 − 56) // 2


def test_wrong_frame_size_and_missing_rng_are_refused():
    frames = _coded_frames(16, width=160, height=120)
    with pytest.raises(ValueError, match="160×120"):
        assemble_clips(frames, np.array([1]), np.array([16]), RAW, train=False)
    with pytest.raises(ValueError, match="random generator"):
        assemble_clips(_coded_frames(16), np.array([1]), np.array([16]), RAW, train=True)
    with pytest.raises(ValueError, match="does not fit"):
        ClipConfig(crop_size=130)
    with pytest.raises(ValueError, match=r"mean cube has shape \(16, 32, 32, 3\)"):
        InputConvention(frame_size=(40, 32), crop_size=24, mean=torch.zeros(16, 32, 32, 3))


def test_a_constant_mean_cube_is_the_per_channel_mean():
    config = ClipConfig(frame_size=(40, 32), crop_size=24, std_rgb=(58.0, 57.0, 57.0), bgr=True)
    clips = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 16, 24, 24, 3)))
    clips = clips.to(torch.uint8)
    cube = torch.tensor(config.mean_rgb).expand(16, 32, 40, 3)
    per_channel = normalize_clips(clips, config.convention())
    assert torch.equal(normalize_clips(clips, config.convention(cube)), per_channel)
    per_clip = cube[:, :24, :24].expand(2, 16, 24, 24, 3)  # one crop per clip, as in training
    assert torch.equal(
        normalize_clips(clips, config.convention(cube), mean_crops=per_clip), per_channel
    )


def test_the_convention_comes_back_from_its_description():
    """model.json's record: a value, per-channel values, or a cube named by its file."""
    cube = torch.rand(16, 32, 40, 3)
    for convention in (
        InputConvention(frame_size=(40, 32), crop_size=24, mean=128.0, bgr=True),
        InputConvention(mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0)),
        InputConvention(frame_size=(40, 32), crop_size=24, mean=cube, bgr=True),
    ):
        description = convention.describe("mean_cube.safetensors")
        back = InputConvention.from_description(description, cube)
        assert back.describe("mean_cube.safetensors") == description
        assert torch.equal(back.centre_mean, convention.centre_mean)

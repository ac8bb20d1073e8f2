"""The Haar band basis of the tiny world's unshuffle (finextract/backbones/haar.py)."""
import numpy as np
import torch
import torch.nn.functional as F

from conftest import emoji_like_images, make_tiny_backbone
from finextract.backbones import haar
from finextract.backbones.tiny import TinyPixelBackbone, load_tiny
from finextract.backbones.base import images_to_tensor

SCALES = [0.9, 4.0, 4.0, 10.0]


def test_bands_are_an_exact_inverse_pair_and_a_checkerboard_is_the_diagonal_band():
    images = images_to_tensor(emoji_like_images(3))
    unshuffled = F.pixel_unshuffle(images, 2)
    bands = haar.to_bands(unshuffled, SCALES)
    assert torch.allclose(haar.from_bands(bands, SCALES), unshuffled, atol=1e-5)
    checker = torch.tensor((-1.0) ** np.add.outer(np.arange(32), np.arange(32)), dtype=torch.float32)
    bands = haar.to_bands(F.pixel_unshuffle(checker.expand(1, 3, 32, 32), 2), [1, 1, 1, 1])
    per_band = bands.reshape(1, 3, 4, 16, 16).abs().mean(dim=(0, 1, 3, 4))
    assert per_band.argmax() == 3 and per_band[:3].max() < 1e-6  # only the diagonal band


def test_unit_variance_scales_give_every_band_unit_variance():
    unshuffled = F.pixel_unshuffle(images_to_tensor(emoji_like_images(8)), 2)
    scales = haar.unit_variance_scales(unshuffled)
    bands = haar.to_bands(unshuffled, scales).reshape(8, 3, 4, 16, 16).transpose(1, 2).reshape(8, 4, -1)
    stds = bands.transpose(0, 1).reshape(4, -1).std(dim=1)
    assert torch.allclose(stds, torch.ones(4), atol=2e-3) and scales[3] > scales[0]


def test_converted_unet_computes_the_same_prediction_in_bands(tmp_path):
    backbone = make_tiny_backbone()
    unet = backbone.unet
    latents = torch.randn(2, 12, 16, 16)
    t = torch.tensor([10, 500])
    states = torch.randn(2, 16, 384)
    with torch.no_grad():
        before = unet(latents, t, encoder_hidden_states=states).sample
        haar.convert_unet_to_bands(unet, SCALES)
        after = unet(haar.to_bands(latents, SCALES), t, encoder_hidden_states=states).sample
    assert torch.allclose(haar.from_bands(after, SCALES), before, atol=1e-4)
    # the scales travel with the saved model, and images still round-trip through its latents
    banded = TinyPixelBackbone(unet, backbone.scheduler_config, resolution=32, band_scales=SCALES)
    banded.save(tmp_path / "m")
    loaded = load_tiny(tmp_path / "m")
    assert loaded.band_scales == SCALES
    images = images_to_tensor(emoji_like_images(2))
    assert torch.allclose(loaded.to_images(loaded.to_latents(images)), images, atol=1e-5)

"""A Haar band basis for the tiny world's 2×2 pixel-unshuffle, each band scaled to unit variance.

The unshuffle hands the UNet the four pixels of every 2×2 block as four channels of equal variance,
but the information in them is not equal: in the orthonormal Haar basis of a block (mean, horizontal,
vertical and diagonal difference) the corpus's diagonal band has about a tenth of the mean band's
standard deviation. Under one noise schedule for all channels that band is drowned in noise long
before the rest, the model learns to predict it poorly, and the error comes back as the 2×2
checkerboard of the samples (resources/base/MODEL_CARD.md). Scaling every band to unit variance gives
each the same signal-to-noise ratio at every timestep; the transform is linear and exactly invertible,
so nothing else in the workflow changes.
"""
from __future__ import annotations

import torch

# rows: mean, horizontal difference, vertical difference, diagonal; columns: the block's pixels in
# pixel_unshuffle's order (0,0), (0,1), (1,0), (1,1). Orthonormal and symmetric: its own inverse.
HAAR_2X2 = 0.5 * torch.tensor([[1.0, 1.0, 1.0, 1.0],
                               [1.0, -1.0, 1.0, -1.0],
                               [1.0, 1.0, -1.0, -1.0],
                               [1.0, -1.0, -1.0, 1.0]])
BAND_NAMES = ("mean", "horizontal", "vertical", "diagonal")


def band_matrix(scales: tuple[float, ...] | list[float], colours: int = 3) -> torch.Tensor:
    """The 12×12 map from unshuffled channels (colour-major, as pixel_unshuffle orders them) to scaled bands."""
    block = torch.diag(torch.tensor(scales, dtype=torch.float32)) @ HAAR_2X2
    return torch.block_diag(*[block] * colours)


def to_bands(unshuffled: torch.Tensor, scales) -> torch.Tensor:
    matrix = band_matrix(scales).to(unshuffled)
    return torch.einsum("ij,bjhw->bihw", matrix, unshuffled)


def from_bands(bands: torch.Tensor, scales) -> torch.Tensor:
    inverse = torch.linalg.inv(band_matrix(scales).double()).to(bands)
    return torch.einsum("ij,bjhw->bihw", inverse, bands)


def unit_variance_scales(unshuffled: torch.Tensor) -> list[float]:
    """Per band, 1 / its standard deviation over a dataset (all colours pooled)."""
    bands = to_bands(unshuffled, [1.0] * 4)
    per_band = bands.reshape(bands.shape[0], 3, 4, -1).transpose(0, 2).reshape(4, -1)
    return [round(float(1.0 / per_band[b].std()), 4) for b in range(4)]


@torch.no_grad()
def convert_unet_to_bands(unet: torch.nn.Module, scales) -> None:
    """Rewrite ``conv_in`` and ``conv_out`` in place so that, fed bands, the UNet computes what it computed
    on unshuffled channels and returns its prediction in bands: a warm start for training in the new basis
    (the noise then differs — unit variance per band — so training must still adapt)."""
    matrix = band_matrix(scales).to(unet.conv_in.weight)
    inverse = torch.linalg.inv(matrix.double()).to(matrix)
    unet.conv_in.weight.copy_(torch.einsum("oikl,ij->ojkl", unet.conv_in.weight, inverse))
    unet.conv_out.weight.copy_(torch.einsum("ij,jokl->iokl", matrix, unet.conv_out.weight))
    unet.conv_out.bias.copy_(matrix @ unet.conv_out.bias)

"""The sampler against an exact denoiser: with one training image x0, the optimal prediction is
known in closed form, so DDIM must land on x0. Catches timestep, schedule and v/ε mix-ups."""
import numpy as np
import pytest
import torch

from conftest import emoji_like_images, make_tiny_backbone
from finextract.attack.model_pair import SingleModel
from finextract.attack.sampling import sample_batch


class OracleUNet(torch.nn.Module):
    """Predicts exactly what a perfectly trained model of the single image x0 would."""

    def __init__(self, x0_latent, alphas_cumprod, prediction_type):
        super().__init__()
        self.register_buffer("x0", x0_latent)
        self.abar = alphas_cumprod
        self.prediction_type = prediction_type
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, encoder_hidden_states=None, added_cond_kwargs=None):
        abar = self.abar[t.long()].reshape(-1, 1, 1, 1)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        eps = (x - alpha * self.x0) / sigma
        out = alpha * eps - sigma * self.x0 if self.prediction_type == "v_prediction" else eps

        class Output:
            sample = out
        return Output()


def oracle_backbone(prediction_type):
    backbone = make_tiny_backbone(prediction_type=prediction_type)
    target = emoji_like_images(1, seed=1)
    x0 = backbone.to_latents(torch.from_numpy(target).permute(0, 3, 1, 2).float() / 127.5 - 1)
    backbone.unet = OracleUNet(x0, backbone.training_scheduler().alphas_cumprod, prediction_type)
    return backbone, target


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
@pytest.mark.parametrize("method", ["direct", "cfg", "finextract"])
def test_ddim_with_an_exact_denoiser_returns_the_training_image(prediction_type, method):
    backbone, target = oracle_backbone(prediction_type)
    # k = 0: all predictions agree, so every guidance formula must reduce to the exact denoiser
    images = sample_batch(SingleModel(backbone), "x", [0, 1], method, steps=10, w=3.0, k=0.0)
    error = np.abs(images.astype(int) - target.astype(int))
    # the last DDIM step lands on t = 0, whose noise level sqrt(1 - alpha_bar_0) is ~0.006, not 0
    assert error.mean() < 1.0 and error.max() <= 6, (error.mean(), error.max())

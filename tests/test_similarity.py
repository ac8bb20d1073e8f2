"""Fast checks of the SSCD similarity path (distilled model: ~15 ms/image on CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finextract.attack import similarity as sim

RES = 96  # below the 224² default: keeps the tests fast; the properties do not depend on it


def _icons() -> np.ndarray:
    """Three distinct 32-px 'icons' on white, so the test needs no data files."""
    images = np.full((3, 32, 32, 3), 255, dtype=np.uint8)
    yy, xx = np.mgrid[:32, :32]
    images[0][(yy - 16) ** 2 + (xx - 16) ** 2 < 100] = (230, 40, 40)  # red disc
    images[1][6:26, 10:22] = (30, 90, 220)  # blue bar
    images[1][10:14, 4:28] = (30, 90, 220)  # … a cross
    stripes = (xx // 4) % 2 == 0
    images[2][stripes & (yy > 4) & (yy < 28)] = (20, 160, 60)  # green stripes
    return images


def _shift_right(image: np.ndarray) -> np.ndarray:
    out = np.full_like(image, 255)
    out[:, 1:] = image[:, :-1]
    return out


@pytest.fixture(scope="module")
def distilled() -> sim.DescriptorModel:
    return sim.DescriptorModel("distilled", resolution=RES, threads=1)


def test_shifted_copy_scores_higher_than_other_image(distilled):
    icons = _icons()
    batch = np.concatenate([icons, _shift_right(icons[0])[None]])
    d = sim.embed_images(batch, calibration=None, model=distilled, resolution=RES, progress=False)
    assert d[0] @ d[3] > d[0] @ d[1]
    assert d[0] @ d[3] > d[0] @ d[2]


def test_descriptors_are_l2_normalised_and_deterministic(distilled):
    icons = _icons()
    a = sim.embed_images(icons, calibration=None, model=distilled, resolution=RES, progress=False)
    b = sim.embed_images(icons, calibration=None, model=distilled, resolution=RES, batch_size=2,
                         progress=False)
    assert a.shape == (3, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batching must not change results


def test_postprocess_npz_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    background = sim.l2_normalise(rng.normal(size=(200, 64)) + 2.0)
    post = sim.fit_postprocess(background, whiten_dims=16, model_id="m", resolution=RES, note="test")
    path = tmp_path / "cal.npz"
    post.save(path)
    loaded = sim.Postprocess.load(path)  # uses allow_pickle=False
    x = sim.l2_normalise(rng.normal(size=(5, 64)))
    np.testing.assert_allclose(loaded.apply(x), post.apply(x), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(loaded.apply(x), axis=1), 1.0, atol=1e-5)
    assert (loaded.model_id, loaded.resolution, loaded.out_dims) == ("m", RES, 16)
    centred = sim.fit_postprocess(background)
    centred.save(path)
    assert sim.Postprocess.load(path).projection is None
    # whitened background is decorrelated with unit variance in every kept direction
    w = (background - post.mean) @ post.projection
    np.testing.assert_allclose(np.cov(w.T), np.eye(16), atol=1e-2)


def test_calibration_mismatch_is_refused(distilled):
    post = sim.fit_postprocess(np.eye(512, dtype=np.float32)[:20], model_id="int8", resolution=RES)
    with pytest.raises(ValueError, match="int8"):
        sim.embed_images(_icons(), calibration=post, model=distilled, resolution=RES, progress=False)


@pytest.mark.parametrize("name, content", [("missing.onnx", None), ("broken.onnx", b"not a model"),
                                           ("broken.pt", b"not a zip"), ("model.bin", b"x")])
def test_bad_model_path_raises_value_error_naming_it(tmp_path: Path, name: str, content: bytes | None):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=name):
        sim.DescriptorModel(str(path))


def test_check_is_cheap_and_catches_missing(tmp_path: Path):
    assert sim.check_descriptor_model("int8").kind == "onnx"
    assert sim.check_descriptor_model(sim.DEFAULT_MODEL).model_id == sim.DEFAULT_MODEL
    with pytest.raises(ValueError, match="nowhere.pt"):
        sim.check_descriptor_model(tmp_path / "nowhere.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_model(tmp_path: Path):
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, stride=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x)).mean(dim=(2, 3)) * 10.0  # unnormalised, like SSCD

    torch.manual_seed(0)
    path = tmp_path / "tiny.torchscript.pt"
    torch.jit.script(Tiny()).save(str(path))
    assert sim.check_descriptor_model(path).kind == "torchscript"
    icons = _icons()
    a = sim.embed_images(icons, str(path), calibration=None, resolution=64, progress=False)
    b = sim.embed_images(icons, str(path), calibration=None, resolution=64, progress=False)
    assert a.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_default_calibration_matches_default_model():
    post = sim.load_calibration(sim.DEFAULT_CALIBRATION)
    assert post.model_id == sim.DEFAULT_MODEL
    assert post.mean.shape == (512,)
    assert sim.resolve_resource(sim.DEFAULT_CALIBRATION).stat().st_size < 1_000_000


def test_empty_input_keeps_descriptor_width(distilled):
    out = sim.embed_images(np.zeros((0, 32, 32, 3), np.uint8), calibration=None, model=distilled,
                           resolution=RES, progress=False)
    assert out.shape == (0, 512)


def test_prefilter_blurs_before_upscaling_and_must_match_the_calibration():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    sharp, blurred = sim.resize_batch(images, 64), sim.resize_batch(images, 64, prefilter_sigma=1.5)
    assert blurred.shape == sharp.shape == (2, 64, 64, 3)
    assert blurred.astype(float).std() < sharp.astype(float).std()  # a blur removes fine-scale energy
    with pytest.raises(ValueError, match="prefilter_sigma"):
        sim.resize_batch(images, 64, prefilter_sigma=float("nan"))
    post = sim.load_calibration(sim.DEFAULT_CALIBRATION)
    assert post.prefilter_sigma == 1.5
    with pytest.raises(ValueError, match="blurred with σ = 1.5"):
        sim.embed_images(images, sim.DEFAULT_MODEL, post, prefilter_sigma=0.0, progress=False)

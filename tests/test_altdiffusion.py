"""AltDiffusion on a tiny in-memory pipeline: kind detection, loading, text encoding, sampling, LoRA, DreamBooth.

The pipeline has the real classes of diffusers' (deprecated) AltDiffusion — ``AltDiffusionPipeline``,
``RobertaSeriesModelWithTransformation`` text encoder, an ``XLMRobertaTokenizer`` — with a vocabulary
written here and SD-1.x-shaped UNet/VAE from tests/sd_fixtures.py, saved with ``save_pretrained`` and
loaded back through the project's loaders. No hub, no real weights.
"""
import numpy as np
import pytest
import torch
from diffusers import AltDiffusionPipeline
from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
    RobertaSeriesConfig, RobertaSeriesModelWithTransformation)
from transformers import XLMRobertaTokenizer

from finextract.backbones.altdiffusion import AltDiffusionBackbone
from finextract.backbones.kinds import detect_kind
from finextract.backbones.loading import load_backbone, load_dreambooth_unet, load_lora
from finextract.backbones.sd import PRETRAINED
from finextract.attack.model_pair import LoraPair, TwoUNetPair, lora_layers
from finextract.attack.load_models import load_base, load_pair
from finextract.attack.sampling import sample_batch
from sd_fixtures import ATTN_TARGETS, WORDS, build_sd_pipeline, save_pipeline, sd_scheduler, tiny_sd_unet, tiny_vae

CAPTION = "art style of a cat"
MULTILINGUAL = "一只猫 art style"  # unknown pieces map to <unk>; the pipeline still encodes it


pytestmark = pytest.mark.usefixtures("one_thread")


# --- a tiny AltDiffusion ------------------------------------------------------------------------
def tiny_xlmr_tokenizer() -> XLMRobertaTokenizer:
    """A Unigram XLM-R tokenizer with XLM-R's special ids (<s>=0, <pad>=1, </s>=2, <unk>=3): whole words + letters."""
    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [("▁" + w, -1.0) for w in WORDS] + [("▁", -3.0)] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = XLMRobertaTokenizer(vocab=[*specials, *pieces, ("<mask>", 0.0)])
    tok.model_max_length = 77
    return tok


def tiny_roberta_series(tokenizer: XLMRobertaTokenizer, width: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    config = RobertaSeriesConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=37, max_position_embeddings=80,
                                 type_vocab_size=1, project_dim=width, pad_token_id=tokenizer.pad_token_id,
                                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return RobertaSeriesModelWithTransformation(config).eval()


def build_alt_pipeline(seed: int = 0) -> AltDiffusionPipeline:
    tokenizer = tiny_xlmr_tokenizer()
    return AltDiffusionPipeline(vae=tiny_vae(seed=seed), text_encoder=tiny_roberta_series(tokenizer, seed=seed),
                                tokenizer=tokenizer, unet=tiny_sd_unet(seed), scheduler=sd_scheduler(),
                                safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@pytest.fixture(scope="module")
def alt(tmp_path_factory):
    root = tmp_path_factory.mktemp("alt")
    return save_pipeline(build_alt_pipeline(), root / "alt")


def eps(backbone, unet=None, caption=CAPTION):
    latents = torch.randn(1, *backbone.latent_shape(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return backbone.predict_eps(unet if unet is not None else backbone.unet, latents, torch.tensor(500),
                                    backbone.encode_captions([caption]))


def add_trained_like_lora(unet, rank=4, alpha=2.0, seed=0):
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                target_modules=list(ATTN_TARGETS)), adapter_name="finetuned")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    unet.eval()


# --- detection and loading ------------------------------------------------------------------------
def test_kind_detected_from_model_index_and_selectable(alt, tmp_path):
    assert detect_kind(alt) == "altdiffusion"
    bb = load_base(str(alt), precision="fp32", device="cpu")  # the workflow's loader, kind auto
    assert isinstance(bb, AltDiffusionBackbone) and bb.name == "altdiffusion"
    assert isinstance(bb.tokenizer, XLMRobertaTokenizer)
    assert isinstance(bb.text_encoder, RobertaSeriesModelWithTransformation)
    assert bb.resolution == 16 and bb.latent_shape() == (4, 8, 8) and bb.prediction_type == "epsilon"
    assert not bb.sampling_scheduler().config.clip_sample
    assert isinstance(load_base(str(alt), kind="altdiffusion", device="cpu"), AltDiffusionBackbone)
    with pytest.raises(ValueError, match="ALTDIFFUSION checkpoint but kind='sd'"):
        load_backbone(alt, kind="sd")
    sd = save_pipeline(build_sd_pipeline(tmp_path), tmp_path / "sd")
    with pytest.raises(ValueError, match="SD checkpoint but kind='altdiffusion'"):
        load_backbone(sd, kind="altdiffusion")
    with pytest.raises(ValueError, match="single-file"):
        load_backbone(tmp_path / "alt.safetensors", kind="altdiffusion")


def test_caption_encoding_matches_the_altdiffusion_pipeline(alt):
    bb = load_backbone(alt)
    pipe = build_alt_pipeline()  # same seeds: the same weights as the saved folder
    cond = bb.encode_captions([CAPTION, "", MULTILINGUAL])
    assert cond.states.shape == (3, 77, 32) and not cond.added and torch.isfinite(cond.states).all()
    assert torch.equal(bb.unconditional(2).states, cond.states[1:2].expand(2, -1, -1))
    with torch.no_grad():
        ref, ref_uncond = pipe.encode_prompt(CAPTION, "cpu", 1, True)
        ref_multi, _ = pipe.encode_prompt(MULTILINGUAL, "cpu", 1, False)
    assert torch.allclose(cond.states[:1], ref, atol=1e-5)
    assert torch.allclose(cond.states[1:2], ref_uncond, atol=1e-5)  # θ's empty caption, as the pipeline's CFG
    assert torch.allclose(cond.states[2:], ref_multi, atol=1e-5)
    assert not torch.allclose(cond.states[0], cond.states[1], atol=1e-3)
    # the attention mask matters: without it the padding would change the states
    ids = bb.tokenizer([CAPTION], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        unmasked = bb.text_encoder(ids)[0]
    assert bb.text_encoder.config.use_attention_mask and not torch.allclose(unmasked, ref, atol=1e-4)


# --- sampling, LoRA, DreamBooth ---------------------------------------------------------------------
def test_sampling_with_lora_and_dreambooth(alt, tmp_path):
    bb = load_base(str(alt), precision="fp32", device="cpu")
    base_eps = eps(bb)
    donor = load_backbone(alt)
    add_trained_like_lora(donor.unet)
    trained_eps = eps(donor)
    donor.save_lora(donor.unet, tmp_path / "lora", rank=4, targets=list(ATTN_TARGETS))
    tiny_sd_unet(seed=1).save_pretrained(tmp_path / "db" / "unet")

    pairs = {"lora": load_pair(bb, "lora", tmp_path / "lora")}
    assert isinstance(pairs["lora"], LoraPair) and len(lora_layers(bb.unet)) > 0
    lora_eps = eps(bb)
    assert torch.equal(lora_eps, trained_eps) and not torch.allclose(lora_eps, base_eps, atol=1e-4)
    plain = load_backbone(alt)
    pairs["dreambooth"] = load_pair(plain, "dreambooth", tmp_path / "db")
    assert isinstance(pairs["dreambooth"], TwoUNetPair)
    assert not torch.allclose(eps(plain, pairs["dreambooth"].finetuned_unet), eps(plain), atol=1e-4)

    decoded = []
    for pair in pairs.values():  # record the float images before uint8 conversion: NaN would become 0
        original = pair.backbone.to_images
        pair.backbone.to_images = lambda z, f=original: decoded.append(f(z)) or decoded[-1]
    outputs = {}
    for ft, pair in pairs.items():
        for method in ("direct", "cfg", "finextract"):
            images = sample_batch(pair, CAPTION, [0, 1], method, steps=2, w=3.0, k=-0.02)
            assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
            assert decoded[-1].shape == (2, 3, 16, 16) and torch.isfinite(decoded[-1]).all()
            outputs[ft, method] = images
    for (ft, method), images in outputs.items():  # same seeds, same images
        assert np.array_equal(sample_batch(pairs[ft], CAPTION, [0, 1], method, steps=2, w=3.0, k=-0.02), images)
    assert not np.array_equal(outputs["lora", "finextract"], outputs["dreambooth", "finextract"])
    assert not np.array_equal(outputs["lora", "direct"], outputs["lora", "finextract"])


def test_lora_file_reads_in_diffusers_altdiffusion_pipeline(alt, tmp_path):
    donor = load_backbone(alt)
    add_trained_like_lora(donor.unet)
    donor.save_lora(donor.unet, tmp_path / "lora")
    pipe = build_alt_pipeline()
    pipe.load_lora_weights(tmp_path / "lora", adapter_name="x")
    fresh = load_backbone(alt)
    info = load_lora(fresh, tmp_path / "lora")
    assert info.unet_layers > 0 and info.text_encoder_layers == 0 and info.ranks == [4]
    assert torch.allclose(eps(fresh, unet=pipe.unet), eps(fresh), atol=1e-5)


def test_dreambooth_pipeline_folder_with_trained_text_encoder(alt, tmp_path):
    bb = load_backbone(alt)
    pre = bb.encode_captions([CAPTION]).states
    ft = build_alt_pipeline()
    ft.unet, ft.text_encoder = tiny_sd_unet(seed=1), tiny_roberta_series(ft.tokenizer, seed=7)
    save_pipeline(ft, tmp_path / "db_pipeline")
    assert detect_kind(tmp_path / "db_pipeline") == "altdiffusion"
    unet = load_dreambooth_unet(tmp_path / "db_pipeline", bb)
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), ft.unet.state_dict().values()))
    assert bb.has_finetuned_text and isinstance(bb.finetuned_text_encoders[0], RobertaSeriesModelWithTransformation)
    assert not torch.allclose(bb.encode_captions([CAPTION]).states, pre, atol=1e-4)  # θ' reads c with its encoder
    assert torch.equal(bb.encode_captions([CAPTION], model=PRETRAINED).states, pre)
    assert torch.equal(bb.unconditional().states, load_backbone(alt).unconditional().states)  # θ's empty caption
    with pytest.raises(ValueError, match="single-file"):
        bb.load_dreambooth_unet(tmp_path / "db.safetensors")
    with pytest.raises(ValueError, match="projects to 16 features"):
        AltDiffusionBackbone(bb.unet, bb.vae, tiny_roberta_series(bb.tokenizer, width=16), bb.tokenizer,
                             bb.scheduler_config)

"""The pretraining corpus builder: captions, concept selection, reserved vendors, real package images."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from finextract.world.corpus import emoji, packages as pk
from finextract.world.corpus.emoji import Concept, caption_for, parse_caption, select_concepts, slugify


def test_caption_round_trip():
    caption = caption_for("dog face", "fluent flat")
    assert caption == "dog face, fluent flat style"
    assert parse_caption(caption) == ("dog face", "fluent flat")
    assert parse_caption("woman: red hair, google style") == ("woman: red hair", "google")
    assert parse_caption("art style of openmoji") == ("art style of openmoji", None)


def test_slugify_matches_fluent_file_names():
    assert slugify("Face With Tears of Joy") == "face-with-tears-of-joy"
    assert slugify("woman: red hair") == "woman-red-hair"
    assert slugify("man’s shoe") == "mans-shoe"


def test_concept_selection_is_even_deterministic_and_honours_exclusions():
    concepts = [Concept(f"c{i}", f"{i:04X}", "x", i, f"c{i}") for i in range(100)]
    picked = select_concepts(concepts, 10, exclude={"0000", "c99"})
    assert len(picked) == 10 and picked == select_concepts(concepts, 10, exclude={"0000", "c99"})
    assert all(c.unified != "0000" and c.name != "c99" for c in picked)


def test_reserved_vendors_can_never_enter_the_corpus(tmp_path):
    cache = tmp_path
    allowed = cache / "unpacked" / pk.EMOJI_GOOGLE.key / "package" / "img.png"
    reserved = cache / "unpacked" / pk.OPENMOJI.key / "package" / "color" / "svg" / "1F600.svg"
    for path in (allowed, reserved):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    emoji.assert_no_reserved_sources([allowed], cache)
    with pytest.raises(ValueError, match="openmoji"):
        emoji.assert_no_reserved_sources([reserved], cache)


def test_checksum_mismatch_is_refused(tmp_path):
    bad = pk.RegistryPackage("fluentui-emoji", "1.3.0", "npm", "0" * 64, "MIT")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "fluentui-emoji-1.3.0.tgz").write_bytes(b"not the real tarball")
    with pytest.raises(pk.ChecksumError, match="does not match the pinned"):
        pk.fetch(bad, tmp_path)


def test_missing_tool_is_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pk.MissingToolError, match="rsvg-convert"):
        pk.require_tool("rsvg-convert", "install librsvg2-bin")


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("rsvg-convert") is None,
                    reason="needs npm and rsvg-convert (apt-get install npm librsvg2-bin)")
def test_builds_a_small_corpus_from_the_real_packages(tmp_path):
    """npm pack + checksum + render of real images: 3 concepts x 4 styles."""
    cache = Path(tmp_path)
    images, rows = emoji.build_emoji_corpus(cache, resolution=32, n_concepts=3)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert [r["style"] for r in rows[:4]] == list(emoji.PRETRAINING_STYLES)
    assert all(r["caption"] == caption_for(r["concept"], r["style"]) for r in rows)
    # rendered on white: corners are white, and every image has a drawing on it
    assert (images[:, 0, 0] > 240).all()
    assert (images.reshape(12, -1).min(axis=1) < 200).all()
    assert {Path(r["source"]).parts[1] for r in rows} <= {p.key for p in pk.PRETRAINING_PACKAGES}


def test_corpus_command_names_a_missing_tool_without_a_traceback(monkeypatch, tmp_path):
    from finextract.workflow import cli
    from finextract.world.corpus import build

    def missing(*args, **kwargs):
        pk.require_tool("no-such-tool-here", "install it with apt-get")

    monkeypatch.setattr(build, "write_broad_corpus", missing)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["corpus", "--broad", "--cache", str(tmp_path), "--out", str(tmp_path / "out"), "--resolution", "32"])
    assert str(exit_info.value) == "corpus: 'no-such-tool-here' is not installed: install it with apt-get"

"""The broad pretraining corpus: every concept in every style it exists in, caption templates, held-out and
private concepts kept out in every style — on a fake package tree, so no registry is needed."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from finextract.world.corpus import broad, build, packages as pk

NAMES = ["grinning face", "dog face", "rocket", "pizza", "crab", "candle", "cloud", "bison"]


def fake_packages(cache, fluent_for=NAMES):
    """emoji.json + 64-px vendor PNGs for every name, Fluent SVGs for ``fluent_for``, all marked verified."""
    def root(package):
        path = cache / "unpacked" / package.key / "package"
        path.mkdir(parents=True)
        (path.parent / ".verified").write_text(package.sha256)
        return path

    meta = root(pk.EMOJI_METADATA)
    entries = [{"name": n.upper(), "unified": f"1F{0x600 + i:03X}", "category": "Smileys & Emotion",
                "sort_order": i, "short_names": [n.replace(" ", "_")], "has_img_google": True,
                "has_img_twitter": True} for i, n in enumerate(NAMES)]
    entries.append({"name": "FLAG", "unified": "1F1E6", "category": "Flags", "sort_order": 99,
                    "short_names": [], "has_img_google": True, "has_img_twitter": True})
    (meta / "emoji.json").write_text(json.dumps(entries))
    for i, (package, vendor) in enumerate(((pk.EMOJI_GOOGLE, "google"), (pk.EMOJI_TWITTER, "twitter"))):
        folder = root(package) / "img" / vendor / "64"
        folder.mkdir(parents=True)
        for j, e in enumerate(entries):
            Image.new("RGBA", (64, 64), (40 * j % 255, 100 + 50 * i, 30, 255)).save(folder / f"{e['unified'].lower()}.png")
    icons = root(pk.FLUENT_EMOJI) / "icons"
    for variant in ("flat", "modern", "high-contrast"):
        (icons / variant).mkdir(parents=True)
        for n in fluent_for:
            (icons / variant / f"{n.replace(' ', '-')}.svg").write_text(
                '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                '<rect x="8" y="8" width="48" height="48" fill="#c33"/></svg>')
    return entries


needs_rsvg = pytest.mark.skipif(shutil.which("rsvg-convert") is None,
                                reason="needs rsvg-convert (apt-get install librsvg2-bin)")


def test_caption_templates_cover_concept_style_concept_style_only_and_a_long_phrasing():
    captions = {t: broad.caption(t, "dog face", "google") for t in broad.CAPTION_TEMPLATES}
    assert captions == {"concept_style": "dog face, google style", "concept": "dog face",
                        "style": "art style of google", "long": "a drawing of dog face in the google style"}


def test_heldout_rule_is_even_deterministic_and_needs_every_style(tmp_path):
    from finextract.world.corpus.emoji import Concept
    full = {s: tmp_path for s in broad.BROAD_STYLES}
    found = [(Concept(f"c{i}", f"{i:04X}", "x", i, ""), full if i % 3 else {"google": tmp_path}) for i in range(60)]
    picked = broad.heldout_concepts(found, count=5)
    assert picked == broad.heldout_concepts(found, count=5)
    assert len({c.unified for c in picked}) == 5 and all(int(c.unified, 16) % 3 for c in picked)


@needs_rsvg
def test_broad_corpus_keeps_heldout_and_private_concepts_out_in_every_style(tmp_path):
    fake_packages(tmp_path, fluent_for=NAMES[:6])  # two concepts have no Fluent images
    private = {"1F601"}  # dog face
    corpus = broad.build_broad_corpus(tmp_path, resolution=16, exclude=private, heldout_count=2)
    concepts = {r["concept"] for r in corpus.rows}
    heldout = {r["concept"] for r in corpus.heldout_rows}
    assert len(heldout) == 2 and not heldout & concepts
    assert "dog face" not in concepts | heldout and "flag" not in concepts
    # every concept in every style that draws it: all five with Fluent images, Google and Twitter without
    styles = {c: {r["style"] for r in corpus.rows if r["concept"] == c} for c in concepts}
    assert all(styles[c] == set(broad.BROAD_STYLES) for c in concepts & set(NAMES[:6]))
    assert all(styles[c] == {"google", "twitter"} for c in concepts - set(NAMES[:6]))
    # one caption row per image and template, none for held-out images
    assert len(corpus.captions) == len(corpus.rows) * len(broad.CAPTION_TEMPLATES)
    assert not any(h in row["caption"] for row in corpus.captions for h in heldout)
    assert corpus.images.shape == (len(corpus.rows), 16, 16, 3) and len(corpus.heldout_images) == len(corpus.heldout_rows)


@needs_rsvg
def test_written_corpus_is_deterministic_and_pretraining_reads_its_caption_table(tmp_path):
    from finextract.world.pretrain import load_caption_table

    fake_packages(tmp_path / "cache")
    digests = [build.write_broad_corpus(tmp_path / f"out{i}", tmp_path / "cache", 16, set(), heldout_count=2) for i in range(2)]
    assert digests[0] == digests[1]
    meta = json.loads((tmp_path / "out0" / "corpus.json").read_text())
    assert meta["kind"] == "broad" and meta["heldout_images"] == len(np.load(tmp_path / "out0" / "heldout.npy"))
    images = np.load(tmp_path / "out0" / "images.npy")
    rows, states = load_caption_table(tmp_path / "out0" / "captions.csv", len(images))
    assert rows.shape == (len(images) * len(broad.CAPTION_TEMPLATES), 2)
    assert set(rows[:, 0].tolist()) == set(range(len(images)))
    assert len(states) == len(set(rows[:, 1].tolist())) < len(rows)  # "art style of google" etc. encoded once


@needs_rsvg
def test_copy_set_google_sources_are_concepts_the_broad_corpus_holds_out(tmp_path):
    from finextract.world.copyset import google_sources

    fake_packages(tmp_path / "cache")
    build.write_broad_corpus(tmp_path / "out", tmp_path / "cache", 16, set(), heldout_count=3)
    sources = google_sources(tmp_path / "cache", count=2, heldout_count=3)
    concepts = [info.caption.removesuffix(", google style") for info, _ in sources]
    heldout = set(pd.read_csv(tmp_path / "out" / "heldout.csv")["concept"])
    trained = set(pd.read_csv(tmp_path / "out" / "images.csv")["concept"])
    assert len(concepts) == 2 and set(concepts) <= heldout and not set(concepts) & trained
    assert all(path.exists() and info.source == "google" for info, path in sources)

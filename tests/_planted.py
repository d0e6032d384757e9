"""A copy of the shared cats and dogs with known problems planted in it.

Every file is renamed to a name that carries no label (the Kaggle names
``cat.N.jpg`` give the answer away), then:

- ``MOVED`` photos are moved to the other class folder (label errors);
- ``COPIES`` photos of train/ get a re-encoded, slightly resized copy in
  validation/, so original and copy land in different splits (leaks);
- ``STRANGERS`` natural photos of other things (people, objects, scenes;
  shipped with scikit-image and scikit-learn) are put among the pets.

``plant(source, target)`` returns a ``Planted`` record of which files are which.
"""

from __future__ import annotations

import hashlib
import io
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

MOVED, COPIES = 20, 15
SEED = 20261130


@dataclass
class Planted:
    root: Path
    moved: set[str] = field(default_factory=set)  # file paths now in the wrong class folder
    copies: list[tuple[str, str]] = field(default_factory=list)  # (original, copy)
    strangers: set[str] = field(default_factory=set)
    home: Path | None = None  # the PAWLAB_HOME whose caches hold its embeddings


def stranger_photos() -> dict[str, np.ndarray]:
    """Ten natural photos that are neither cats nor dogs, as RGB arrays."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {
        name: getattr(skimage.data, name)()
        for name in ("astronaut", "camera", "coffee", "rocket", "clock", "coins", "moon", "hubble_deep_field")
    }
    china, flower = load_sample_images().images
    photos |= {"china": china, "flower": flower}
    return {name: np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3] for name, image in photos.items()}


def _anonymous(path: Path) -> str:
    return hashlib.sha1(path.name.encode()).hexdigest()[:12] + path.suffix


def plant(source: Path, target: Path) -> Planted:
    rng = random.Random(SEED)
    planted = Planted(target)
    for photo in sorted(source.glob("*/*/*.jpg")):
        split, label = photo.parts[-3], photo.parts[-2]
        destination = target / split / label / _anonymous(photo)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, destination)

    photos = sorted(target.glob("*/*/*.jpg"))
    chosen = rng.sample(photos, MOVED + COPIES)
    for photo in chosen[:MOVED]:
        other = "dogs" if photo.parent.name == "cats" else "cats"
        moved = photo.parent.parent / other / photo.name
        photo.rename(moved)
        planted.moved.add(str(moved))
    for photo in chosen[MOVED:]:
        split = photo.parts[-3]
        copy_split = "validation" if split == "train" else "train"
        copy = target / copy_split / photo.parent.name / f"copy-{photo.name}"
        with Image.open(photo) as image:
            smaller = image.resize((int(image.width * 0.9), int(image.height * 0.9)))
            buffer = io.BytesIO()
            smaller.save(buffer, "JPEG", quality=80)
        copy.write_bytes(buffer.getvalue())
        planted.copies.append((str(photo), str(copy)))
    for index, (name, pixels) in enumerate(sorted(stranger_photos().items())):
        folder = target / ("train", "validation")[index % 2] / ("cats", "dogs")[index // 2 % 2]
        path = folder / f"{hashlib.sha1(name.encode()).hexdigest()[:12]}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, "JPEG", quality=90)
        planted.strangers.add(str(path))
    return planted

"""The datasets neurotut knows: every file with its URL and checksum.

The per-file tables are plain text in ``neurotut/data/registry/<name>.txt`` (one line per file:
``relative/name  algorithm:hash  url``), the format pooch reads, so a reader sees at one glance
where every byte comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

SNEMI3D_VOXEL_SIZE_NM = (30.0, 6.0, 6.0)  # (z, y, x)
FIB25_SAMPLE_VOXEL_SIZE_NM = (10.0, 10.0, 10.0)  # training_sample2: isotropic FIB-SEM

KASTHURI = "Kasthuri et al., Cell 162(3):648-661, 2015"
SNEMI3D_CHALLENGE = "SNEMI3D challenge, http://brainiac2.mit.edu/SNEMI3D/ (annotation by Daniel R. Berger)"
FFN_PAPER = "Januszewski et al., Nature Methods 15:605-610, 2018"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its name inside the dataset folder, checksum and URL."""

    name: str
    known_hash: str  # "sha256:<hex>" or "md5:<hex>"
    url: str


@dataclass(frozen=True)
class Dataset:
    """A named set of files that is fetched into ``<data dir>/<name>/``."""

    name: str
    description: str
    licence: str
    attribution: str
    voxel_size: tuple[float, float, float]
    files: tuple[RemoteFile, ...] = field(repr=False)

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"dataset {self.name!r} has no file {name!r}")


def _read_table(name: str) -> tuple[RemoteFile, ...]:
    text = resources.files("neurotut.data").joinpath("registry", f"{name}.txt").read_text()
    files = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fname, known_hash, url = line.split()
        files.append(RemoteFile(fname, known_hash, url))
    return tuple(files)


def _build_registry() -> dict[str, Dataset]:
    return {
        "snemi3d-crop": Dataset(
            name="snemi3d-crop",
            description=(
                "A 100 x 512 x 512 crop of the SNEMI3D training volume (CLAHE-filtered 8-bit EM "
                "PNGs and 16-bit 3D instance label PNGs) as redistributed in urakubo/ffn_windows"
            ),
            licence="EM images: Open Data Commons Attribution License (ODC-By) v1.0",
            attribution=(
                f"EM data: {KASTHURI}; {SNEMI3D_CHALLENGE}; redistributed by H. Urakubo, "
                "urakubo/ffn_windows (ODC-By v1.0)"
            ),
            voxel_size=SNEMI3D_VOXEL_SIZE_NM,
            files=_read_table("snemi3d-crop"),
        ),
        "snemi3d": Dataset(
            name="snemi3d",
            description=(
                "The official SNEMI3D release: train-input.tif, train-labels.tif and "
                "test-input.tif (100 x 1024 x 1024 each), Zenodo record 7142003"
            ),
            licence="CC-BY-4.0 (Zenodo record 7142003)",
            attribution=f"EM data: {KASTHURI}; {SNEMI3D_CHALLENGE}; Zenodo 10.5281/zenodo.7142003",
            voxel_size=SNEMI3D_VOXEL_SIZE_NM,
            files=_read_table("snemi3d"),
        ),
        "ffn-windows-models": Dataset(
            name="ffn-windows-models",
            description=(
                "The ffn_windows workshop's SNEMI3D Flood-Filling Networks: TensorFlow checkpoints "
                "after 2,013,116, 4,000,000 and 7,000,000 steps and the workshop's inference.pbtxt"
            ),
            licence="MIT (urakubo/ffn_windows LICENSE, copyright 2019 urakubo)",
            attribution=f"Networks trained by H. Urakubo, urakubo/ffn_windows (MIT); method: {FFN_PAPER}",
            voxel_size=SNEMI3D_VOXEL_SIZE_NM,  # trained on the SNEMI3D crop
            files=_read_table("ffn-windows-models"),
        ),
        "google-ffn-fib25": Dataset(
            name="google-ffn-fib25",
            description=(
                "google/ffn's FIB-25 network (checkpoint model.ckpt-27465036), its inference "
                "request for training_sample2 and google/ffn's own segmentation of that volume"
            ),
            licence="Apache-2.0 (google/ffn LICENSE)",
            attribution=f"google/ffn (Apache-2.0); {FFN_PAPER}",
            voxel_size=FIB25_SAMPLE_VOXEL_SIZE_NM,  # the segmentation's; the network ran at it
            files=_read_table("google-ffn-fib25"),
        ),
        "fib25-training-sample2": Dataset(
            name="fib25-training-sample2",
            description=(
                "FlyEM NeuroProof training_sample2: a 250 x 250 x 250 FIB-SEM cube of the "
                "Drosophila medulla at 10 nm (250 PNG sections) with dense ground truth"
            ),
            licence="CC-BY-3.0 (janelia-flyem/neuroproof_examples LICENSE.txt)",
            attribution=(
                "FlyEM, Janelia Research Campus: janelia-flyem/neuroproof_examples, "
                "training_sample2 (CC-BY-3.0)"
            ),
            voxel_size=FIB25_SAMPLE_VOXEL_SIZE_NM,
            files=_read_table("fib25-training-sample2"),
        ),
        "pretrained": Dataset(
            name="pretrained",
            description=(
                "neurotut's own pretrained networks: the quick profile's RSUNet trained on "
                "sections 0-79 of the SNEMI3D crop (recipe and log in data/pretrained/)"
            ),
            licence="MIT (neurotut); trained on data under ODC-By v1.0",
            attribution=f"neurotut; training data: {KASTHURI}; {SNEMI3D_CHALLENGE}",
            voxel_size=SNEMI3D_VOXEL_SIZE_NM,
            files=_read_table("pretrained"),
        ),
    }


REGISTRY: dict[str, Dataset] = _build_registry()


def get_dataset(name: str) -> Dataset:
    """The registry entry called ``name``; a KeyError lists the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}"
        ) from None

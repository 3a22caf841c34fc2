"""Character-level language modelling: a text as bytes, split into train / val / test, and read as
parallel contiguous streams cut into segments, so that a learner can carry its state from one
segment of a stream to the next.

Two sources:

- ``embedded_text()``: the Python 3.11.7 language reference's topic pages (the text of
  ``pydoc_data.topics``, 79 pages in sorted order joined by newlines; 466,195 bytes, 107 distinct
  byte values), shipped gzipped with this package and pinned by its sha256, so it never changes;
  split 90 / 5 / 5 % in order. Python documentation, (c) Python Software Foundation, PSF License.
- ``enwik8_text(root)``: Hutter's enwik8 (the first 10^8 bytes of an English Wikipedia dump) from
  ``root/enwik8`` or ``root/enwik8.zip`` as downloaded; the standard split of its one file: the
  first 90M bytes train, the next 5M val, the last 5M test.

Both are read as bytes: 256 token ids, and "bits per character" is bits per byte, as is usual for
enwik8.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import zipfile
from pathlib import Path

import torch

from episodes.batch import PADDING_SEGMENT, PADDING_TOKEN, EpisodeBatch
from episodes.datasets.base import expand_root
from episodes.sampling import as_episode_ids

TEXT_SPLITS = ("train", "val", "test")
VOCAB_SIZE = 256
EMBEDDED_FILE = Path(__file__).parent / "datasets" / "text" / "python_reference.txt.gz"
EMBEDDED_SHA256 = "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"
ENWIK8_SIZE = 100_000_000
ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"


def split_text(data: bytes, split: str, held_out: int) -> bytes:
    """``split`` of ``data``: the last ``held_out`` bytes are test, the ``held_out`` before them val,
    the rest train."""
    if split not in TEXT_SPLITS:
        raise ValueError(f"Unknown text split {split!r}. Valid: {', '.join(TEXT_SPLITS)}")
    bounds = {"train": (0, len(data) - 2 * held_out), "val": (len(data) - 2 * held_out, len(data) - held_out),
              "test": (len(data) - held_out, len(data))}[split]
    return data[bounds[0]:bounds[1]]


def embedded_text(split: str, path: Path = EMBEDDED_FILE, sha256: str = EMBEDDED_SHA256) -> bytes:
    """``split`` of the embedded corpus (train 419,577 bytes, val and test 23,309 each)."""
    data = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path} holds a corpus with sha256 {digest}, not the pinned {sha256}: the file was changed; "
                         f"restore it from the repository (git checkout -- {path.name})")
    return split_text(data, split, len(data) // 20)


def enwik8_text(root: str | Path, split: str, size: int = ENWIK8_SIZE) -> bytes:
    """``split`` of enwik8 under ``root`` (``enwik8`` or ``enwik8.zip``, which must hold ``size``
    bytes; the last ``size / 20`` are test and the ``size / 20`` before them val)."""
    folder = expand_root(root)
    plain, archive = folder / "enwik8", folder / "enwik8.zip"
    if plain.is_file():
        data = plain.read_bytes()
    elif archive.is_file():
        with zipfile.ZipFile(archive) as opened:
            if "enwik8" not in opened.namelist():
                raise ValueError(f"{archive} holds {opened.namelist()[:5]}, not the file enwik8; download it again "
                                 f"from {ENWIK8_URL}")
            data = opened.read("enwik8")
    else:
        raise FileNotFoundError(f"no enwik8 under {folder}: download {ENWIK8_URL} into that folder (the zip, or the "
                                f"file enwik8 unzipped), or set data.root to the folder that holds it")
    if len(data) != size:
        raise ValueError(f"enwik8 under {folder} holds {len(data):,} bytes, not {size:,}: the download is incomplete "
                         f"or another file; download it again from {ENWIK8_URL}")
    return split_text(data, split, size // 20)


class TextStreams:
    """A text as ``streams`` parallel contiguous streams, each cut into segments of ``segment_length``
    bytes: the input is a segment's bytes, the target the byte after each.

    Stream ``s`` reads input positions ``[s L, (s + 1) L)`` of the text (``L`` per stream); its
    targets are the bytes after them, so that with ``pad=True`` (evaluation) the streams together
    predict every byte of the text but the first, each once, the last segments padded
    (``PADDING_TOKEN``, no loss), and with ``pad=False`` (training) every segment is whole and the
    text's tail that fills no segment is left out.

    Episode ids: a batch of ``streams / world_size`` consecutive ids holds the same segment of that
    rank's streams, and batch ``j`` of a rank holds segment ``j mod segments_per_stream``, so a rank
    that reads its batches in order reads its streams in order (``EpisodeStream``'s batch ``j`` of
    rank ``r`` of ``R``). ``segment_of(ids)`` says which segment a batch holds: 0 starts the streams
    again, where a learner's carried state must start again too.

    ``sample(ids)``: inputs and targets ``[B, T]`` int64 byte values, the loss mask off on padding,
    ``shot`` the position in the segment (1 .. T, 0 on padding), ``num_classes=None``.
    """

    vocab_size = num_classes = VOCAB_SIZE

    def __init__(self, text: bytes, streams: int, segment_length: int, *, pad: bool = False, world_size: int = 1):
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1 (bytes per segment), got {segment_length}")
        if streams < 1 or streams % world_size:
            raise ValueError(f"streams must be a positive multiple of world_size={world_size}, got {streams}")
        targets = len(text) - 1
        self.per_stream = math.ceil(targets / streams) if pad else targets // streams
        self.segments_per_stream = (math.ceil(self.per_stream / segment_length) if pad
                                    else self.per_stream // segment_length)
        if self.segments_per_stream < 1:
            raise ValueError(f"a text of {len(text):,} bytes fills no segment of {segment_length} bytes in each of "
                             f"{streams} streams: lower the batch size or data.segment_length")
        self.text = torch.frombuffer(bytearray(text), dtype=torch.uint8)  # uint8: enwik8's 90M bytes stay 90 MB
        self.sha256 = hashlib.sha256(text).hexdigest()
        self.streams, self.segment_length, self.pad, self.world_size = streams, segment_length, pad, world_size

    def state_dict(self) -> dict:
        """What fixes episode ``i``: equal state dicts give equal episodes."""
        return {"sampler": type(self).__name__, "bytes": len(self.text), "streams": self.streams,
                "segment_length": self.segment_length, "pad": self.pad, "world_size": self.world_size,
                "sha256": self.sha256}

    def locate(self, episode_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(stream, segment)`` of each episode id."""
        per_rank = self.streams // self.world_size
        batch, index = episode_ids // per_rank, episode_ids % per_rank
        stream = (batch % self.world_size) * per_rank + index
        return stream, (batch // self.world_size) % self.segments_per_stream

    def segment_of(self, episode_ids: torch.Tensor) -> int:
        """The segment a batch's episodes hold (one for the whole batch)."""
        segments = self.locate(episode_ids)[1].unique()
        if len(segments) != 1:
            raise ValueError(f"episodes {episode_ids.tolist()[:4]}... hold segments {segments.tolist()}, not one")
        return int(segments)

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        stream, segment = self.locate(ids)
        offset = torch.arange(self.segment_length)
        inside = segment[:, None] * self.segment_length + offset  # [B, T] position within the stream
        position = stream[:, None] * self.per_stream + inside
        real = (inside < self.per_stream) & (position < len(self.text) - 1)
        safe = position.clamp(max=len(self.text) - 2)
        inputs = self.text[safe].long().masked_fill(~real, PADDING_TOKEN)
        targets = self.text[safe + 1].long().masked_fill(~real, 0)
        B, T = inputs.shape
        return EpisodeBatch(inputs=inputs, feedback=torch.zeros(B, T, 0), targets=targets, loss_mask=real,
                            shot=(offset + 1).expand(B, T).masked_fill(~real, 0),
                            segment=torch.zeros(B, T, dtype=torch.int64).masked_fill(~real, PADDING_SEGMENT),
                            episode_ids=ids, num_classes=None)

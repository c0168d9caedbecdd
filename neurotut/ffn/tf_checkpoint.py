"""Read TensorFlow checkpoints (checkpoint V2, a "tensor bundle") without TensorFlow.

A checkpoint ``PREFIX`` is two kinds of file:

* ``PREFIX.index``: a LevelDB-format table (sorted keys -> values). Data blocks hold
  prefix-compressed keys and end with restart offsets; an index block points at the data blocks;
  a 48-byte footer at the end points at the index block and ends with a magic number. Every
  block is followed by a 5-byte trailer: compression type (0 none, 1 Snappy) and the masked
  CRC-32C of block and type byte. Key ``""`` holds a ``BundleHeaderProto`` (number of shards,
  endianness, version); every other key is a tensor name whose value is a ``BundleEntryProto``
  (dtype, shape, shard, offset, size, masked CRC-32C of the tensor's bytes).
* ``PREFIX.data-NNNNN-of-MMMMM``: the tensors' raw bytes, C order.

The few protobuf messages are decoded here from the wire format (varints and length-delimited
fields), so neither ``tensorflow`` nor ``protobuf`` is needed. Every checksum is verified; a
mismatch raises :class:`CheckpointError` naming the block or the tensor.

    >>> weights = read_checkpoint("model.ckpt-7000000")        # doctest: +SKIP
    >>> weights["seed_update/conv0_a/weights"].shape           # doctest: +SKIP
    (3, 3, 3, 2, 32)
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic number
TRAILER_SIZE = 5  # compression type byte + masked crc32c
_CRC_MASK_DELTA = 0xA282EAD8

#: TensorFlow ``DataType`` enum values this reader converts, and their numpy types
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),  # DT_FLOAT
    2: np.dtype(np.float64),  # DT_DOUBLE
    3: np.dtype(np.int32),  # DT_INT32
    9: np.dtype(np.int64),  # DT_INT64
}
#: names of the other common enum values, for error messages
_OTHER_DTYPES = {
    4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64",
    10: "DT_BOOL", 14: "DT_BFLOAT16", 17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF",
    20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64",
}


class CheckpointError(ValueError):
    """A TensorFlow checkpoint that cannot be read: truncated, corrupt or unsupported."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: a ``BundleEntryProto``."""

    name: str
    dtype: int  # TensorFlow DataType enum value
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked
    sliced: bool  # a partitioned variable (its data lives in slice entries)

    @property
    def dtype_name(self) -> str:
        if self.dtype in DTYPES:
            return DTYPES[self.dtype].name
        return _OTHER_DTYPES.get(self.dtype, f"DataType {self.dtype}")


@dataclass(frozen=True)
class BundleHeader:
    """The ``BundleHeaderProto`` (key ``""``): shards, byte order, format version."""

    num_shards: int
    big_endian: bool
    version: int


# ---------------------------------------------------------------------------------------------
# checksums and the protobuf wire format


def masked_crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) of ``data``, masked as LevelDB and TensorFlow store it:
    ``((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``."""
    import google_crc32c

    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointError(f"{what}: truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _signed64(value: int) -> int:
    """A varint-decoded int64 (two's complement in 64 bits) -> Python int."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _proto_fields(buf: bytes, what: str) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varint / fixed fields, bytes for
    length-delimited ones (sub-messages, packed lists)."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, what)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, what)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise CheckpointError(f"{what}: truncated protobuf field {field}")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == 2:
            length, pos = _varint(buf, pos, what)
            if pos + length > len(buf):
                raise CheckpointError(f"{what}: truncated protobuf field {field}")
            value, pos = bytes(buf[pos : pos + length]), pos + length
        else:
            raise CheckpointError(f"{what}: unsupported protobuf wire type {wire} (field {field})")
        yield field, value


def _parse_shape(buf: bytes, what: str) -> tuple[int, ...]:
    """``TensorShapeProto``: repeated ``dim`` (field 2), each with ``size`` (field 1)."""
    dims = []
    for field, value in _proto_fields(buf, what):
        if field == 2:
            size = 0
            for f, v in _proto_fields(value, what):  # type: ignore[arg-type]
                if f == 1:
                    size = _signed64(v)  # type: ignore[arg-type]
            dims.append(size)
        elif field == 3 and value:
            raise CheckpointError(f"{what}: the shape has unknown rank")
    if any(d < 0 for d in dims):
        raise CheckpointError(f"{what}: the shape {tuple(dims)} has an unknown dimension")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    """``BundleEntryProto``: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7."""
    what = f"the index entry of tensor {name!r}"
    fields: dict[int, int | bytes] = {}
    sliced = False
    for field, value in _proto_fields(buf, what):
        if field == 7:
            sliced = True
        else:
            fields[field] = value
    return TensorEntry(
        name=name,
        dtype=int(fields.get(1, 0)),  # type: ignore[arg-type]
        shape=_parse_shape(fields.get(2, b""), what),  # type: ignore[arg-type]
        shard_id=int(fields.get(3, 0)),  # type: ignore[arg-type]
        offset=_signed64(int(fields.get(4, 0))),  # type: ignore[arg-type]
        size=_signed64(int(fields.get(5, 0))),  # type: ignore[arg-type]
        crc32c=int(fields.get(6, 0)),  # type: ignore[arg-type]
        sliced=sliced,
    )


def _parse_header(buf: bytes) -> BundleHeader:
    """``BundleHeaderProto``: num_shards 1, endianness 2 (0 little, 1 big), version 3."""
    fields = dict(_proto_fields(buf, "the bundle header"))
    version = 0
    if isinstance(fields.get(3), bytes):
        version = int(dict(_proto_fields(fields[3], "the bundle header")).get(1, 0))  # type: ignore[arg-type]
    return BundleHeader(int(fields.get(1, 0)), int(fields.get(2, 0)) == 1, version)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the index: a LevelDB table


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """``PREFIX``, ``PREFIX.index`` or ``PREFIX.data-00000-of-00001`` -> ``PREFIX``."""
    text = os.fspath(path)
    text = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", text)
    return Path(text)


def is_tf_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a TensorFlow checkpoint whose ``.index`` file exists."""
    return Path(f"{checkpoint_prefix(path)}.index").is_file()


def shard_path(prefix: str | os.PathLike, shard: int, num_shards: int) -> Path:
    """``PREFIX.data-%05d-of-%05d``."""
    return Path(f"{checkpoint_prefix(prefix)}.data-{shard:05d}-of-{num_shards:05d}")


def _block_handle(buf: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """A block handle (offset, size varints) at ``pos`` -> (offset, size, position after)."""
    offset, pos = _varint(buf, pos, what)
    size, pos = _varint(buf, pos, what)
    return offset, size, pos


def _read_block(table: bytes, offset: int, size: int, what: str) -> bytes:
    """One block's contents: bounds and checksum checked, Snappy-decompressed if marked so."""
    end = offset + size
    if end + TRAILER_SIZE > len(table):
        raise CheckpointError(f"{what} reaches past the end of the file (truncated?)")
    raw = table[offset:end]
    kind = table[end]
    (stored,) = struct.unpack("<I", table[end + 1 : end + TRAILER_SIZE])
    if masked_crc32c(raw + bytes([kind])) != stored:
        raise CheckpointError(f"{what}: checksum mismatch (the file is corrupt)")
    if kind == 0:
        return raw
    if kind == 1:
        try:
            import cramjam
        except ImportError:
            raise CheckpointError(
                f"{what} is Snappy-compressed; install cramjam (pip install cramjam) to read it"
            ) from None
        return bytes(cramjam.snappy.decompress_raw(raw))
    raise CheckpointError(f"{what}: unknown block compression type {kind}")


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of a table block. Each entry: varints shared, non_shared, value_length, then
    the key's new bytes and the value; the key is the previous key's first ``shared`` bytes plus
    the new ones. The block ends with uint32 restart offsets and their uint32 count."""
    if len(block) < 4:
        raise CheckpointError(f"{what} is too short")
    (restarts,) = struct.unpack("<I", block[-4:])
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise CheckpointError(f"{what}: bad restart count {restarts}")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, what)
        fresh, pos = _varint(block, pos, what)
        length, pos = _varint(block, pos, what)
        if shared > len(key) or pos + fresh + length > end:
            raise CheckpointError(f"{what}: malformed entry")
        key = key[:shared] + block[pos : pos + fresh]
        pos += fresh
        yield key, block[pos : pos + length]
        pos += length


def _table_items(table: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB table held in memory, in key order."""
    if len(table) < FOOTER_SIZE:
        raise CheckpointError(f"{what} has {len(table)} bytes, less than a table footer (truncated?)")
    footer = table[-FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise CheckpointError(f"{what} is not a TensorFlow checkpoint index (bad magic number; truncated?)")
    _, _, pos = _block_handle(footer, 0, f"{what} footer")  # the metaindex (filters): unused
    index_offset, index_size, _ = _block_handle(footer, pos, f"{what} footer")
    index = _read_block(table, index_offset, index_size, f"{what}: the index block")
    for n, (_, handle) in enumerate(_block_entries(index, f"{what}: the index block")):
        offset, size, _ = _block_handle(handle, 0, f"{what}: the index block")
        block_what = f"{what}: data block {n}"
        block = _read_block(table, offset, size, block_what)
        yield from _block_entries(block, block_what)


def read_index(prefix: str | os.PathLike) -> tuple[BundleHeader, dict[str, TensorEntry]]:
    """The header and every tensor entry (name -> :class:`TensorEntry`) of a checkpoint."""
    index_path = Path(f"{checkpoint_prefix(prefix)}.index")
    if not index_path.is_file():
        raise FileNotFoundError(f"no TensorFlow checkpoint index {index_path}")
    what = str(index_path)
    header, entries = None, {}
    for key, value in _table_items(index_path.read_bytes(), what):
        if key == b"":
            header = _parse_header(value)
        else:
            name = key.decode("utf-8", "replace")
            entries[name] = _parse_entry(name, value)
    if header is None:
        raise CheckpointError(f"{what} has no bundle header (not a checkpoint V2 index)")
    if header.num_shards < 1:
        raise CheckpointError(f"{what}: the header says {header.num_shards} shards")
    return header, entries


# ---------------------------------------------------------------------------------------------
# tensors


def list_variables(prefix: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype name, shape) of every tensor, without reading the data files.

    Dtypes this reader converts are numpy names (``"float32"``); others TensorFlow's
    (``"DT_STRING"``)."""
    _, entries = read_index(prefix)
    return {name: (e.dtype_name, e.shape) for name, e in entries.items()}


def _check_convertible(entry: TensorEntry, header: BundleHeader) -> np.dtype:
    """The numpy dtype of an entry (byte order included), or a CheckpointError naming it."""
    if entry.sliced:
        raise CheckpointError(f"tensor {entry.name!r} is a partitioned (sliced) variable, not supported")
    if entry.dtype not in DTYPES:
        raise CheckpointError(
            f"tensor {entry.name!r} has dtype {entry.dtype_name}; supported: "
            f"{', '.join(d.name for d in DTYPES.values())}"
        )
    dtype = DTYPES[entry.dtype].newbyteorder(">" if header.big_endian else "<")
    expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
    if entry.size != expected:
        raise CheckpointError(
            f"tensor {entry.name!r}: {entry.size} bytes stored but {entry.dtype_name} "
            f"{entry.shape} needs {expected}"
        )
    if not 0 <= entry.shard_id < header.num_shards:
        raise CheckpointError(f"tensor {entry.name!r} names shard {entry.shard_id} of {header.num_shards}")
    return dtype


def _read_tensor(file, path: Path, entry: TensorEntry, dtype: np.dtype) -> np.ndarray:
    """Read and verify one tensor from an open shard file."""
    file.seek(max(entry.offset, 0))
    raw = file.read(entry.size) if entry.offset >= 0 else b""
    if len(raw) != entry.size:
        raise CheckpointError(
            f"tensor {entry.name!r}: {path} ends before its bytes {entry.offset}..."
            f"{entry.offset + entry.size} (truncated?)"
        )
    if masked_crc32c(raw) != entry.crc32c:
        raise CheckpointError(f"tensor {entry.name!r}: checksum mismatch in {path} (the file is corrupt)")
    array = np.frombuffer(bytearray(raw), dtype=dtype).reshape(entry.shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_checkpoint(
    prefix: str | os.PathLike, names: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Tensors of a checkpoint as numpy arrays (name -> array, in the checkpoint's shapes).

    Args:
        prefix: ``PREFIX`` or its ``.index`` file.
        names: read only these tensors (default: all). An unknown name raises KeyError.

    Every tensor's checksum is verified; an unsupported dtype, a missing or truncated shard or a
    checksum mismatch raises an error naming the tensor.
    """
    prefix = checkpoint_prefix(prefix)
    header, entries = read_index(prefix)
    if names is not None:
        names = list(names)
        unknown = [n for n in names if n not in entries]
        if unknown:
            raise KeyError(f"{prefix} has no tensor {unknown[0]!r}")
        entries = {n: entries[n] for n in names}
    wanted = [(e, _check_convertible(e, header)) for e in entries.values()]
    out: dict[str, np.ndarray] = {}
    for shard in sorted({e.shard_id for e, _ in wanted}):
        path = shard_path(prefix, shard, header.num_shards)
        if not path.is_file():
            raise FileNotFoundError(f"no data file {path} of the TensorFlow checkpoint {prefix}")
        with open(path, "rb") as file:
            for entry, dtype in wanted:
                if entry.shard_id == shard:
                    out[entry.name] = _read_tensor(file, path, entry, dtype)
    return {name: out[name] for name in entries}

"""Read a TensorFlow checkpoint (tensor bundle) without TensorFlow.

A TF >= 1.x checkpoint with prefix ``P`` is two files:

- ``P.index``: a LevelDB-format sorted table. Its last 48 bytes are a footer (two block
  handles, padding, the magic number ``0xdb4775248b80fb57``). The index block lists the data
  blocks; each block is a run of prefix-compressed ``(key, value)`` entries followed by a
  restart array, and a 5-byte trailer (compression byte, masked CRC32C). Key ``""`` holds a
  ``BundleHeaderProto``; every other key is a tensor name whose value is a ``BundleEntryProto``
  (1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 crc32c, 7 slices).
- ``P.data-00000-of-0000N``: raw little-endian tensors in C order; entry ``offset``/``size``
  locate each one.

Only what the musicnn checkpoints need is supported (uncompressed blocks, numeric dtypes,
unsliced tensors); anything else raises :class:`~hitsong.errors.ModelError` naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitsong.errors import ModelError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

# tensorflow/core/framework/types.proto -> numpy little-endian dtype.
TF_DTYPES: dict[int, str] = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    9: "int64",
    10: "bool",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}
TF_DTYPE_NAMES: dict[int, str] = {**TF_DTYPES, 7: "string", 14: "bfloat16"}


# --------------------------------------------------------------------------- CRC32C
def _crc32c_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc``."""
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's masked CRC: rotate right by 15 bits and add a constant."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- varints / protobuf
def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ModelError(f"{where}: truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ModelError(f"{where}: malformed varint at byte {pos}")


def _proto_fields(buf: bytes, where: str) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into ``(field_number, wire_type, value)`` triples."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, where)
        field, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise ModelError(f"{where}: truncated fixed64 field {field}")
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            if pos + length > len(buf):
                raise ModelError(f"{where}: truncated field {field} ({length} bytes)")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise ModelError(f"{where}: truncated fixed32 field {field}")
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise ModelError(f"{where}: unsupported protobuf wire type {wire} (field {field})")
        fields.append((field, wire, value))
    return fields


# --------------------------------------------------------------------------- entries
@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the bundle.

    Attributes
    ----------
    name : str
        The variable name, e.g. ``"model/conv2d/kernel"``.
    dtype : str
        numpy dtype name (``"float32"``), or the TF name of an unsupported type.
    shape : tuple of int
        TF shape (kernels are HWIO, dense kernels (in, out)).
    shard_id, offset, size : int
        Data shard number and byte range inside it.
    crc32c : int or None
        Masked CRC32C of the tensor bytes, when the bundle recorded it.
    sliced : bool
        True for partitioned variables (not supported for reading).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    dims: list[int] = []
    for field, _wire, value in _proto_fields(buf, where):
        if field == 2 and isinstance(value, bytes):
            size = 0
            for f, _w, v in _proto_fields(value, where):
                if f == 1 and isinstance(v, int):
                    size = v - (1 << 64) if v >= 1 << 63 else v
            dims.append(size)
        elif field == 3 and value:
            raise ModelError(f"{where}: tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, where: str) -> TensorEntry:
    dtype_code = 0
    shape: tuple[int, ...] = ()
    shard_id = offset = size = 0
    crc: int | None = None
    sliced = False
    for field, _wire, value in _proto_fields(buf, f"{where} entry {name!r}"):
        if field == 1 and isinstance(value, int):
            dtype_code = value
        elif field == 2 and isinstance(value, bytes):
            shape = _parse_shape(value, f"{where} entry {name!r}")
        elif field == 3 and isinstance(value, int):
            shard_id = value
        elif field == 4 and isinstance(value, int):
            offset = value
        elif field == 5 and isinstance(value, int):
            size = value
        elif field == 6 and isinstance(value, int):
            crc = value
        elif field == 7:
            sliced = True
    dtype = TF_DTYPE_NAMES.get(dtype_code, f"tf_dtype_{dtype_code}")
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc, sliced)


# --------------------------------------------------------------------------- LevelDB table
def _block_entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """Decode the prefix-compressed entries of one table block (trailer already removed)."""
    if len(block) < 4:
        raise ModelError(f"{where}: block of {len(block)} bytes is too short")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    if end < 0:
        raise ModelError(f"{where}: block restart array ({n_restarts}) exceeds the block")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos, where)
        non_shared, pos = _varint(block, pos, where)
        value_len, pos = _varint(block, pos, where)
        if shared > len(key) or pos + non_shared + value_len > end:
            raise ModelError(f"{where}: corrupt block entry at byte {pos}")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _read_block(data: bytes, offset: int, size: int, where: str) -> bytes:
    if offset + size + BLOCK_TRAILER_SIZE > len(data):
        raise ModelError(f"{where}: block at {offset}+{size} runs past the end of the file (truncated?)")
    block = data[offset : offset + size]
    compression = data[offset + size]
    (stored_crc,) = struct.unpack_from("<I", data, offset + size + 1)
    if compression != 0:
        raise ModelError(f"{where}: compressed table blocks (type {compression}) are not supported")
    if mask_crc(crc32c(data[offset : offset + size + 1])) != stored_crc:
        raise ModelError(f"{where}: CRC mismatch in the block at byte {offset} (corrupt file)")
    return block


def read_table(path: str | Path) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of a LevelDB-format table file, in key order.

    Raises
    ------
    ModelError
        The file is missing, too short, has no table magic, or a block is corrupt.
    """
    path = Path(path)
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint index {where}: {exc}") from exc
    if len(data) < FOOTER_SIZE:
        raise ModelError(f"{where}: {len(data)} bytes is too short for a checkpoint index (truncated?)")
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != TABLE_MAGIC:
        raise ModelError(
            f"{where}: not a TensorFlow checkpoint index (no LevelDB table magic at the end; truncated or foreign file)"
        )
    footer = data[len(data) - FOOTER_SIZE :]
    pos = 0
    _meta_off, pos = _varint(footer, pos, where)
    _meta_size, pos = _varint(footer, pos, where)
    index_off, pos = _varint(footer, pos, where)
    index_size, pos = _varint(footer, pos, where)
    index = _block_entries(_read_block(data, index_off, index_size, where), where)
    entries: list[tuple[bytes, bytes]] = []
    for _key, handle in index:
        off, p = _varint(handle, 0, where)
        size, _ = _varint(handle, p, where)
        entries.extend(_block_entries(_read_block(data, off, size, where), where))
    return entries


# --------------------------------------------------------------------------- bundle reader
class CheckpointReader:
    """Variables of a TF tensor bundle: names, dtypes, shapes and values.

    Parameters
    ----------
    prefix : str or Path
        The checkpoint prefix: ``<prefix>.index`` and ``<prefix>.data-*`` must exist. For the
        musicnn wheel the prefix is the model folder plus ``/`` (files ``.index``, ...).

    Examples
    --------
    >>> reader = CheckpointReader("musicnn/MTT_musicnn/")  # doctest: +SKIP
    >>> reader.entries["dense/kernel"].shape  # doctest: +SKIP
    (1506, 200)
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        self.index_path = Path(self.prefix + ".index")
        if not self.index_path.is_file():
            raise ModelError(f"checkpoint index {self.index_path} does not exist")
        self.num_shards = 1
        self.entries: dict[str, TensorEntry] = {}
        for key, value in read_table(self.index_path):
            name = key.decode("utf-8", errors="replace")
            if key == b"":
                self._parse_header(value)
            else:
                self.entries[name] = _parse_entry(name, value, str(self.index_path))
        self._shards: dict[int, bytes] = {}

    def _parse_header(self, value: bytes) -> None:
        for field, _wire, v in _proto_fields(value, f"{self.index_path} header"):
            if field == 1 and isinstance(v, int):
                self.num_shards = v
            elif field == 2 and v != 0:
                raise ModelError(f"{self.index_path}: big-endian checkpoints are not supported")

    def shard_path(self, shard_id: int) -> Path:
        """The data file holding shard ``shard_id``."""
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def list_variables(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """``(name, dtype, shape)`` of every variable, sorted by name."""
        return [(e.name, e.dtype, e.shape) for e in sorted(self.entries.values(), key=lambda e: e.name)]

    def _shard(self, shard_id: int) -> bytes:
        if shard_id not in self._shards:
            path = self.shard_path(shard_id)
            try:
                self._shards[shard_id] = path.read_bytes()
            except OSError as exc:
                raise ModelError(f"cannot read checkpoint data {path}: {exc}") from exc
        return self._shards[shard_id]

    def read(self, name: str, *, verify: bool = True) -> np.ndarray:
        """The value of variable ``name`` as a numpy array of its TF shape.

        Parameters
        ----------
        name : str
            A key of :attr:`entries`.
        verify : bool
            Check the tensor's CRC32C when the bundle recorded one.
        """
        if name not in self.entries:
            raise ModelError(f"{self.index_path}: no variable named {name!r}")
        entry = self.entries[name]
        if entry.sliced:
            raise ModelError(f"{self.index_path}: variable {name!r} is partitioned (sliced); not supported")
        if entry.dtype not in TF_DTYPES.values():
            raise ModelError(f"{self.index_path}: variable {name!r} has unsupported dtype {entry.dtype}")
        data = self._shard(entry.shard_id)
        end = entry.offset + entry.size
        if end > len(data):
            raise ModelError(
                f"{self.shard_path(entry.shard_id)}: variable {name!r} needs bytes up to {end} but the "
                f"file has {len(data)} (truncated?)"
            )
        raw = data[entry.offset : end]
        if verify and entry.crc32c is not None and mask_crc(crc32c(raw)) != entry.crc32c:
            raise ModelError(f"{self.shard_path(entry.shard_id)}: CRC mismatch for variable {name!r} (corrupt file)")
        dtype = np.dtype(entry.dtype).newbyteorder("<")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise ModelError(
                f"{self.index_path}: variable {name!r} of shape {entry.shape} {entry.dtype} needs "
                f"{count * dtype.itemsize} bytes, entry says {entry.size}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).astype(entry.dtype)

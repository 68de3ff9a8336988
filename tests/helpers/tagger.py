"""Tagger test helpers: a minimal TF tensor-bundle *writer*, the reader's second implementation.

It writes what TensorFlow's BundleWriter writes (a LevelDB-format ``.index`` table of
BundleEntryProto records and a ``.data-00000-of-00001`` file), from the format description,
with its own protobuf and table encoding. Only the CRC32C function is shared with the reader,
and the reader's CRC is checked against the standard check value in the tests.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from tools.musicnn_checkpoint import crc32c, mask_crc

DTYPE_CODES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}
TABLE_MAGIC_BYTES = struct.pack("<Q", 0xDB4775248B80FB57)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def pb_bytes(field: int, value: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(value)) + value


def pb_fixed32(field: int, value: int) -> bytes:
    return varint(field << 3 | 5) + struct.pack("<I", value)


def entry_proto(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    dims = b"".join(pb_bytes(2, pb_varint(1, d)) for d in shape)
    out = pb_varint(1, dtype) + pb_bytes(2, dims)
    if offset:
        out += pb_varint(4, offset)
    return out + pb_varint(5, size) + pb_fixed32(6, crc)


def encode_block(entries: list[tuple[bytes, bytes]], restart_interval: int = 4) -> bytes:
    out = bytearray()
    restarts: list[int] = []
    prev = b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        prev = key
    if not restarts:
        restarts.append(0)
    for r in restarts:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts))
    return bytes(out)


def write_table(path: Path, entries: list[tuple[bytes, bytes]], *, entries_per_block: int = 5) -> None:
    """Write a LevelDB-format table (uncompressed blocks, masked CRC trailers)."""
    entries = sorted(entries)
    buf = bytearray()

    def put_block(block: bytes) -> bytes:
        handle = varint(len(buf)) + varint(len(block))
        trailer_type = b"\x00"
        buf.extend(block + trailer_type + struct.pack("<I", mask_crc(crc32c(block + trailer_type))))
        return handle

    index: list[tuple[bytes, bytes]] = []
    for start in range(0, len(entries), entries_per_block):
        chunk = entries[start : start + entries_per_block]
        index.append((chunk[-1][0], put_block(encode_block(chunk))))
    meta_handle = put_block(encode_block([]))
    index_handle = put_block(encode_block(index, restart_interval=1))
    footer = meta_handle + index_handle
    footer += b"\x00" * (40 - len(footer)) + TABLE_MAGIC_BYTES
    buf.extend(footer)
    path.write_bytes(bytes(buf))


def write_bundle(prefix: str | Path, tensors: dict[str, np.ndarray], *, entries_per_block: int = 5) -> None:
    """Write ``tensors`` as a TF tensor bundle at ``prefix`` (``prefix.index``, ``prefix.data-...``)."""
    prefix = str(prefix)
    data = bytearray()
    records: list[tuple[bytes, bytes]] = [(b"", pb_varint(1, 1) + pb_bytes(3, pb_varint(1, 1)))]
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        records.append(
            (name.encode(), entry_proto(DTYPE_CODES[arr.dtype], arr.shape, len(data), len(raw), mask_crc(crc32c(raw))))
        )
        data.extend(raw)
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(data))
    write_table(Path(prefix + ".index"), records, entries_per_block=entries_per_block)

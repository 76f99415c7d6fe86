#!/usr/bin/env python3
"""Independent reference for vellum's DICOM pixel digests (DESIGN.md §3).

Written against pydicom's public API only (dcmread, element values,
pydicom.encaps.generate_fragments), sharing no code with vellum, so that
tests/dicom/dicom_digests.rs can compare the two implementations file by file.

Usage:
    dicom_digest.py FILE...              digests of the given files
    dicom_digest.py --pydicom-testdata   list pydicom's bundled test files
                                         (one path per line)

Prints one JSON document:
    {"files": [{"path", "status": "hashed", "sop_instance_uid",
                "study_instance_uid", "sha256_hex"} |
               {"path", "status": "skipped", "reason"}],
     "studies": [{"study_instance_uid", "instances", "sha256_hex"}]}
"""

import base64
import hashlib
import io
import json
import sys

import pydicom
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError

# The pixel elements of §3, in tag order: the first present is "the pixel
# element" of the instance.
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)


def read(path):
    """dcmread, also accepting a Part 10 file that lacks the 128-byte preamble."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] == b"DICM":
            return pydicom.dcmread(io.BytesIO(b"\0" * 128 + data))
        raise


def swap_size(vr, bits_allocated):
    """Bytes per sample to swap for a big-endian native value (§3)."""
    if vr == "OF":
        return 4
    if vr == "OD":
        return 8
    if vr == "OW":
        if bits_allocated is None or bits_allocated <= 16:
            return 2
        return bits_allocated // 8
    return 1  # OB: bytes have no byte order


def swapped(value, size):
    """value with every whole `size`-byte sample reversed; a trailing partial
    sample (never valid DICOM) is kept as stored."""
    if size <= 1:
        return value
    whole = len(value) - len(value) % size
    out = bytearray(len(value))
    for i in range(size):
        # out[j*size + i] = value[j*size + size-1-i]
        out[i:whole:size] = value[size - 1 - i : whole : size]
    out[whole:] = value[whole:]
    return bytes(out)


def instance_digest(ds):
    """(hex digest, None) or (None, reason)."""
    tag = next((t for t in PIXEL_TAGS if t in ds), None)
    if tag is None:
        return None, "no pixel data"
    elem = ds[tag]
    value = elem.value
    if value is None or len(value) == 0:
        return None, "pixel data is empty"
    ts = ds.file_meta.TransferSyntaxUID
    h = hashlib.sha256()
    if elem.is_undefined_length or ts.is_encapsulated:
        fragments = generate_fragments(value)
        next(fragments)  # the Basic Offset Table is not hashed
        for fragment in fragments:
            h.update(fragment)
    elif not ts.is_little_endian:
        h.update(swapped(value, swap_size(elem.VR, ds.get("BitsAllocated"))))
    else:
        h.update(value)
    return h.hexdigest(), None


def study_digests(hashed):
    by_study = {}
    for f in hashed:
        uid = f.get("study_instance_uid")
        if uid:
            by_study.setdefault(uid, set()).add(
                (f["sop_instance_uid"].encode("ascii"), bytes.fromhex(f["sha256_hex"]))
            )
    out = []
    for uid in sorted(by_study):
        h = hashlib.sha256()
        members = sorted(by_study[uid])
        for sop, digest in members:
            h.update(sop + b"\0" + digest)
        out.append(
            {
                "study_instance_uid": uid,
                "instances": len(members),
                "sha256_hex": h.hexdigest(),
                "sha256_base64": base64.b64encode(h.digest()).decode(),
            }
        )
    return out


def main(argv):
    if argv == ["--pydicom-testdata"]:
        import os

        import pydicom.data

        for p in sorted(pydicom.data.get_testdata_files()):
            if os.path.isfile(p):
                print(p)
        return 0
    files = []
    for path in argv:
        try:
            ds = read(path)
            digest, reason = instance_digest(ds)
        except Exception as e:  # noqa: BLE001 - every failure is a skip reason
            digest, reason = None, f"unreadable: {type(e).__name__}: {e}"
            ds = None
        if digest is None:
            files.append({"path": path, "status": "skipped", "reason": reason})
            continue
        files.append(
            {
                "path": path,
                "status": "hashed",
                "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
                "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
                "sha256_hex": digest,
            }
        )
    hashed = [f for f in files if f["status"] == "hashed" and f["sop_instance_uid"]]
    json.dump({"files": files, "studies": study_digests(hashed)}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

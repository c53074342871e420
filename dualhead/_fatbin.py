"""Which GPU code the built extension carries: the archs and kernel names of its embedded cubins.

The CUDA toolkit here ships no cuobjdump, so this reads the ELF `.nv_fatbin` section directly:
a fatbin header (magic 0xBA55ED50) followed by entries; kind 2 entries are cubins (ELF files)
whose arch is the 8th 32-bit field of the entry header, and whose kernels are the `.text.<name>`
sections. Compressed entries are reported with no kernel list.
"""

from __future__ import annotations

import struct

from dualhead._elf import sections as _sections

FATBIN_MAGIC = 0xBA55ED50


def cubins(path: str) -> list[tuple[int, list[str]]]:
    """[(sm arch, [kernel symbol names])] for each cubin embedded in the shared object."""
    with open(path, "rb") as f:
        d = f.read()
    sec = _sections(d).get(".nv_fatbin")
    if sec is None:
        return []
    off, size = sec
    out, pos = [], off
    while pos + 16 <= off + size:
        magic, _, hsz, fsz = struct.unpack_from("<IHHQ", d, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # fatbins are 8-byte aligned inside the section
            continue
        ep, end = pos + hsz, pos + hsz + fsz
        while ep + 32 <= end:
            kind, _, ehsz, esz = struct.unpack_from("<HHIQ", d, ep)
            arch = struct.unpack_from("<I", d, ep + 28)[0]
            if kind == 2:
                payload = d[ep + ehsz : ep + ehsz + esz]
                names = [n[len(".text.") :] for n in _sections(payload) if n.startswith(".text.")]
                out.append((arch, sorted(names)))
            ep += ehsz + esz
        pos = end
    return out

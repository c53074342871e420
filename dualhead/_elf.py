"""Just enough of the ELF format to describe the built extension without binutils (the CUDA
toolkit here has no cuobjdump, users may have no readelf): section tables (for the embedded
GPU code, `_fatbin.py`) and the shared libraries a shared object asks the loader for.

Standard library only: setup.py loads this file by path to check what it just linked, before
the package (or torch) can be imported.
"""

from __future__ import annotations

import mmap
import struct

DT_NEEDED = 1  # dynamic-section tag: a required shared library (an offset into .dynstr)


def sections(d) -> dict[str, tuple[int, int]]:
    """{name: (offset, size)} of a 64-bit little-endian ELF image (bytes or mmap); {} otherwise."""
    if d[:4] != b"\x7fELF" or d[4] != 2:
        return {}
    shoff = struct.unpack_from("<Q", d, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
    raw = [struct.unpack_from("<IIQQQQ", d, shoff + i * shentsize) for i in range(shnum)]
    stroff = raw[shstrndx][4]

    def name(n):
        return bytes(d[stroff + n : d.find(b"\0", stroff + n)]).decode(errors="replace")

    return {name(r[0]): (r[4], r[5]) for r in raw}


def needed(path: str) -> list[str]:
    """The DT_NEEDED entries of a shared object (what `readelf -d` lists as NEEDED)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as d:
        sec = sections(d)
        if ".dynamic" not in sec or ".dynstr" not in sec:
            return []
        (doff, dsize), (soff, _) = sec[".dynamic"], sec[".dynstr"]
        out = []
        for pos in range(doff, doff + dsize - 15, 16):  # Elf64_Dyn: int64 tag, uint64 value
            tag, val = struct.unpack_from("<qQ", d, pos)
            if tag == 0:  # DT_NULL ends the table
                break
            if tag == DT_NEEDED:
                out.append(bytes(d[soff + val : d.find(b"\0", soff + val)]).decode(errors="replace"))
        return out


def libstdcxx(path: str) -> str:
    """How a C++ shared object gets libstdc++: 'dynamic (libstdc++.so.6)', or 'static'.

    A torch extension always uses libstdc++; when it does not ask the loader for it, a copy was
    linked in (`-static-libstdc++`, or a compiler wrapper that adds it). That copy's locale
    facet ids differ from those of the libstdc++.so that torch has already loaded, so formatting
    a number into an error message (`TORCH_CHECK(..., n)`) calls the wrong facet: the number
    vanishes from the message, or the process segfaults."""
    libs = [n for n in needed(path) if n.startswith("libstdc++") or n.startswith("libc++.")]
    return f"dynamic ({', '.join(libs)})" if libs else "static"


STATIC_HELP = (
    "{path} carries its own copy of libstdc++ (it does not list libstdc++.so in its NEEDED "
    "entries): the compiler that linked it adds -static-libstdc++ (CXX={cxx}). Such a build drops "
    "numbers from error messages or segfaults on the first one. Rebuild with a compiler that links "
    "libstdc++ dynamically, e.g. CC=/usr/bin/gcc CXX=/usr/bin/g++ pip install --no-build-isolation -e ."
)


def check_linkage(path: str, cxx: str) -> str | None:
    """None when the shared object links libstdc++ dynamically, else the explanation (setup.py
    prints it and stops; dualhead._ext refuses to load such a build with it)."""
    return STATIC_HELP.format(path=path, cxx=cxx) if libstdcxx(path) == "static" else None

#!/usr/bin/env python3
"""Fail when a PNG screenshot is blank.

Usage: python3 scripts/png_check.py OUT.png [--min-fraction F] [--min-colours N]

Decodes the PNG with the standard library only (zlib + struct): 8-bit greyscale,
RGB, greyscale+alpha and RGBA, non-interlaced, all five filter types (what headless
Chromium writes: 8-bit RGB). The most common colour is taken as the background; the
image passes when at least --min-fraction of the pixels (default 0.01) differ from it
and it has at least --min-colours distinct colours (default 16). Prints the stats
either way; exit 0 on pass, 1 on a blank image, 2 on an unreadable or unsupported file.
"""

import argparse
import struct
import sys
import zlib
from collections import Counter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> channels, for bit depth 8
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class PngError(Exception):
    pass


def read_png(path):
    """Return (width, height, channels, rows) with rows a list of unfiltered bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    header = None
    idat = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise PngError("truncated %r chunk" % ctype.decode("latin-1"))
        pos += 12 + length
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
    if header is None:
        raise PngError("no IHDR chunk")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in CHANNELS:
        raise PngError("unsupported PNG: bit depth %d, colour type %d" % (depth, colour))
    if interlace != 0:
        raise PngError("unsupported PNG: interlaced")
    if not idat:
        raise PngError("no IDAT chunk")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise PngError("bad image data: %s" % e) from e
    bpp = CHANNELS[colour]
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise PngError("image data too short: %d bytes for %dx%d" % (len(raw), width, height))
    rows = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        unfilter(ftype, line, prev, bpp)
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def unfilter(ftype, line, prev, bpp):
    n = len(line)
    if ftype == 0:  # None
        return
    if ftype == 1:  # Sub
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif ftype == 2:  # Up: bytewise add mod 256 over the whole row at once (SWAR on big ints)
        x = int.from_bytes(line, "little")
        y = int.from_bytes(prev, "little")
        low7 = int.from_bytes(b"\x7f" * n, "little")
        line[:] = (((x & low7) + (y & low7)) ^ ((x ^ y) & ~low7)).to_bytes(n, "little")
    elif ftype == 3:  # Average
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif ftype == 4:  # Paeth
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            if pa <= pb and pa <= pc:
                pred = a
            elif pb <= pc:
                pred = b
            else:
                pred = c
            line[i] = (line[i] + pred) & 0xFF
    else:
        raise PngError("bad filter type %d" % ftype)


def colour_counts(rows, bpp):
    counts = Counter()
    for row in rows:
        # slice each row into per-pixel byte strings; Counter does the rest in C
        counts.update(row[i : i + bpp] for i in range(0, len(row), bpp))
    return counts


def main(argv):
    ap = argparse.ArgumentParser(description="Fail when a PNG screenshot is blank.")
    ap.add_argument("png")
    ap.add_argument("--min-fraction", type=float, default=0.01,
                    help="minimum fraction of pixels differing from the background colour")
    ap.add_argument("--min-colours", type=int, default=16,
                    help="minimum number of distinct colours")
    args = ap.parse_args(argv)
    try:
        width, height, bpp, rows = read_png(args.png)
    except (OSError, PngError) as e:
        print("png_check: %s: %s" % (args.png, e), file=sys.stderr)
        return 2
    total = width * height
    if total == 0:
        print("png_check: %s: empty image (%dx%d)" % (args.png, width, height), file=sys.stderr)
        return 1
    counts = colour_counts(rows, bpp)
    background, bg_count = counts.most_common(1)[0]
    distinct = len(counts)
    fraction = 1.0 - bg_count / total
    stats = "%dx%d, %d distinct colours, %.2f%% non-background (background #%s)" % (
        width, height, distinct, 100.0 * fraction, background.hex())
    if fraction < args.min_fraction or distinct < args.min_colours:
        print("png_check: %s looks blank: %s; need >= %.2f%% non-background and >= %d colours"
              % (args.png, stats, 100.0 * args.min_fraction, args.min_colours), file=sys.stderr)
        return 1
    print("png_check: %s ok: %s" % (args.png, stats))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

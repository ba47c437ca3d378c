# Chunks deterministic inputs with real borg's chunkers and prints, per chunk, its size, its
# allocation (0 CH_DATA, 1 CH_ALLOC, 2 CH_HOLE) and the first 16 hex digits of the SHA-256 of
# its plaintext.
# Run with borg 1.2.4's python (/usr/bin/python3) and borg 1.4.5's venv python; both outputs
# must be identical (make_borg_chunks.sh checks that) and are stored as borg_chunks.txt.
# Usage: python3 make_borg_chunks.py [SPARSE_DIR]
import hashlib, io, os, sys
from borg.chunker import Chunker, ChunkerFixed

def prng(n, x=0x0123456789ABCDEF):
    # xorshift64 (13, 7, 17); byte = top 8 bits after each step (crypto.md §4.7)
    out = bytearray(n); M = (1 << 64) - 1
    for i in range(n):
        x ^= (x << 13) & M; x ^= x >> 7; x ^= (x << 17) & M
        out[i] = x >> 56
    return bytes(out)

def inputs():
    base = prng(3 << 20)
    yield 'prng3m', base
    # zero runs: a zero chunk must be reported as CH_ALLOC, and cuts inside zeros are max-size
    yield 'zeros_mixed', base[:700000] + bytes(2 << 20) + base[700000:1500000] + bytes(5000)
    # a short input ending just around min_size + window for the small parameter sets
    yield 'tail', base[:100 + 4095 + 1024]

CASES = [
    (0, (19, 23, 21, 4095)), (0x12345678, (19, 23, 21, 4095)), (-1, (19, 23, 21, 4095)),
    (0, (10, 16, 12, 4095)), (-123456789, (10, 16, 12, 4095)), (2**31 - 1, (10, 16, 12, 4095)),
    (-2**31, (15, 19, 17, 4095)), (7, (6, 10, 8, 31)), (1, (6, 8, 7, 31)), (99, (6, 7, 6, 63)),
    (5, (6, 12, 6, 1)),
]

SMALL_PREFIX = 1 << 17

def emit(name, chunks, data_of):
    print(name)
    for c in chunks:
        size = c.meta['size']; alloc = c.meta['allocation']
        data = c.data if c.data is not None else bytes(size)
        print(size, alloc, hashlib.sha256(data_of(data)).hexdigest()[:16])
    print('end')

for iname, data in inputs():
    for seed, p in CASES:
        ch = Chunker(seed, *p)
        # small parameter sets cut thousands of chunks; a prefix is plenty for them
        d = data if p[1] >= 16 else data[:SMALL_PREFIX]
        emit(f'buzhash {iname} seed={seed} params={",".join(map(str, p))} len={len(d)}', ch.chunkify(io.BytesIO(d)), bytes)
    for block, header in [(4096, 0), (1000000, 12345), (65536, 100)]:
        ch = ChunkerFixed(block, header)
        emit(f'fixed {iname} block={block} header={header}', ch.chunkify(io.BytesIO(data)), bytes)

if len(sys.argv) > 1:
    # A sparse file: 6 MiB, data at 0 (4 KiB), 3 MiB (8 KiB) and 5 MiB + 100 (3000 B).
    path = os.path.join(sys.argv[1], 'sparse.bin')
    with open(path, 'wb') as f:
        f.truncate(6 << 20)
        f.write(prng(4096))
        f.seek(3 << 20); f.write(prng(8192, 42))
        f.seek((5 << 20) + 100); f.write(prng(3000, 43))
    for block, header in [(1 << 20, 0), (1 << 20, 5000), (65536, 0)]:
        for sparse in (False, True):
            with open(path, 'rb') as f:
                ch = ChunkerFixed(block, header, sparse=sparse)
                emit(f'sparsefile block={block} header={header} sparse={int(sparse)}',
                     ch.chunkify(f, f.fileno()), bytes)

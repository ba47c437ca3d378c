# Measures borg's own hot-path primitives on one input file, one line per stage:
# "<stage> <MB/s>", MB/s = 10^6 bytes per second of this thread's CPU time (time.thread_time),
# best of REPS runs. Stage names and units match rborg's `examples/bench_stages.rs`, so
# scripts/bench-vs-borg.sh can divide one by the other. Works with borg 1.2.x and 1.4.x.
# Usage: python3 bench_borg_stages.py FILE REPS [STAGE:STAGE...]
import hashlib, io, sys, time
from borg.chunker import Chunker, ChunkerFixed
from borg.compress import CompressionSpec
from borg.crypto.low_level import hmac_sha256, blake2b_256, AES256_CTR_HMAC_SHA256, AES256_CTR_BLAKE2b

path, reps = sys.argv[1], int(sys.argv[2])
only = set(sys.argv[3].split(':')) if len(sys.argv) > 3 else None
data = open(path, 'rb').read()
PIECE = 2 << 20
pieces = [data[i:i + PIECE] for i in range(0, len(data), PIECE)]
key = bytes([7]) * 32

def run(name, fn):
    if only is not None and name not in only:
        return
    best = float('inf')
    for _ in range(max(1, reps)):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    print(f'{name} {len(data) / best / 1e6:.1f}', flush=True)

def chunk(ch):
    for _ in ch.chunkify(io.BytesIO(data)):
        pass

run('buzhash', lambda: chunk(Chunker(0, 19, 23, 21, 4095)))
run('fixed', lambda: chunk(ChunkerFixed(1 << 20)))
run('sha256', lambda: [hashlib.sha256(p).digest() for p in pieces])
run('hmac-sha256', lambda: [hmac_sha256(key, p) for p in pieces])
run('blake2b-256', lambda: [blake2b_256(key, p) for p in pieces])
# borg keeps one cipher per key and encrypts chunk after chunk with the next IV.
aes_hmac = AES256_CTR_HMAC_SHA256(bytes([2]) * 32, bytes([1]) * 32, iv=0, header_len=1, aad_offset=1)
aes_blake = AES256_CTR_BLAKE2b(bytes([2]) * 128, bytes([1]) * 32, iv=0, header_len=1, aad_offset=1)
run('aes-ctr-hmac', lambda: [aes_hmac.encrypt(p, header=b'\x03', iv=aes_hmac.next_iv()) for p in pieces])
run('aes-ctr-blake2b', lambda: [aes_blake.encrypt(p, header=b'\x05', iv=aes_blake.next_iv()) for p in pieces])
for spec in ['lz4', 'zstd,1', 'zstd,3', 'zstd,10', 'zlib,6', 'lzma,0', 'auto,zstd,3']:
    c = CompressionSpec(spec).compressor
    run(spec, lambda: [c.compress(p) for p in pieces])

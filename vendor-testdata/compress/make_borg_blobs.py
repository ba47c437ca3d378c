# Compresses small deterministic inputs with real borg in every mode and prints
# "<spec> <input> <hex>" lines. make_borg_blobs.sh runs it with borg 1.2.4 and 1.4.5, checks
# that both agree on every deterministic mode, and stores 1.4.5's output as borg_blobs.txt.
import sys
from borg.compress import CompressionSpec

def prng(n, x):
    out = bytearray(n); M = (1 << 64) - 1
    for i in range(n):
        x ^= (x << 13) & M; x ^= x >> 7; x ^= (x << 17) & M
        out[i] = x >> 56
    return bytes(out)

INPUTS = {
    'hello': b'hello world' * 10,
    'text': b''.join(b'chunk %d archive %d\n' % (i, i * 7 % 13) for i in range(300)),
    'random': prng(3000, 0x0123456789ABCDEF),
    'zeros': bytes(5000),
    'empty': b'',
}
SPECS = ['none', 'lz4', 'zstd,1', 'zstd,3', 'zstd,22', 'zlib,0', 'zlib,6', 'zlib,9', 'lzma,0',
         'lzma,6', 'lzma,9', 'auto,lz4', 'auto,zstd,3', 'auto,zlib,6', 'auto,lzma,6',
         'obfuscate,1,lz4', 'obfuscate,113,zstd,3', 'obfuscate,250,auto,zstd,3',
         'obfuscate,3,obfuscate,250,lz4']
for spec in SPECS:
    try:
        c = CompressionSpec(spec).compressor
    except Exception as e:
        print(spec, 'unsupported', type(e).__name__)
        continue
    for name, data in INPUTS.items():
        print(spec, name, c.compress(data).hex())

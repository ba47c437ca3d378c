# Writes seed inputs for the `decompress` and `chunker` fuzz targets (fuzz/corpus/...), using
# real borg's compressors for the valid blobs. Run with /usr/bin/python3 (borg 1.2.4) from the
# repository root.
import os, struct
from borg.compress import CompressionSpec
out = 'fuzz/corpus/decompress'
os.makedirs(out, exist_ok=True)
def put(name, data):
    open(os.path.join(out, name), 'wb').write(data)
text = b'borg chunk archive repository segment ' * 40 + bytes(range(256))
for spec in ['none', 'lz4', 'zstd,3', 'zlib,0', 'zlib,6', 'lzma,0', 'auto,zstd,3', 'obfuscate,3,lz4',
             'obfuscate,1,obfuscate,2,lz4']:
    blob = CompressionSpec(spec).compressor.compress(text)
    name = spec.replace(',', '_')
    put(name, blob)
    put(name + '_truncated', blob[:len(blob) * 2 // 3])
    flipped = bytearray(blob); flipped[len(blob) // 2] ^= 0x41
    put(name + '_flipped', bytes(flipped))
# lz4 block whose single match expands to ~15 MB: needs two growth steps of the output buffer
put('lz4_growth', b'\x01\x00\x1f\x00\x01\x00' + b'\xff' * 60000 + b'\x00\x50abcde')
# lz4 block that would expand past borg's limit
put('lz4_too_big', b'\x01\x00\x1f\x00\x01\x00' + b'\xff' * 700000 + b'\x00\x50abcde')
# obfuscation wrapper whose length field points past the end, and one nested too deep
put('obfuscate_long_len', b'\x04\x00' + struct.pack('>I', 10**9) + b'\x01\x00\x10a')
put('obfuscate_deep', (b'\x04\x00' + struct.pack('>I', 2**31)) * 10 + b'\x00\x00x')
# zstd frame header claiming a huge content size
put('zstd_huge_size', b'\x03\x00\x28\xb5\x2f\xfd\xa4\x00\x00\x00\x40\x00\x00\x00\x00')
put('empty', b'')
put('one_byte', b'\x01')
put('unknown_header', b'\x09\x00abc')
c = 'fuzz/corpus/chunker'
os.makedirs(c, exist_ok=True)
import random
rnd = random.Random(1234)
for i in range(6):
    head = bytes([rnd.randrange(256) for _ in range(6)])
    body = bytes(rnd.randrange(256) for _ in range(rnd.choice([50, 500, 3000, 20000])))
    open(os.path.join(c, f'random_{i}'), 'wb').write(head + body)
open(os.path.join(c, 'zeros'), 'wb').write(b'\x07\x00\x00\x00\x01\x02' + bytes(5000))
open(os.path.join(c, 'text'), 'wb').write(b'\xff\xff\xff\xff\x02\x05' + b'foobarboobaz' * 500)
open(os.path.join(c, 'short'), 'wb').write(b'\x01\x02\x03')

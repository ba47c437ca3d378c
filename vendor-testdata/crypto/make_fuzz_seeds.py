# Writes the seed corpora of the key_blob and envelope_decrypt fuzz targets.
# Run from the repository root with borg 1.2.4's python: /usr/bin/python3 vendor-testdata/crypto/make_fuzz_seeds.py
import hashlib, hmac, binascii, textwrap
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from borg.helpers import msgpack


def pack(d):
    return msgpack.packb(dict(sorted(d.items())), use_bin_type=False)


def ctr(k, d):
    e = Cipher(algorithms.AES(k), modes.CTR(bytes(16))).encryptor()
    return e.update(d) + e.finalize()


def blob(inner, pw=b'fuzz', it=1, alg=b'sha256', version=1):
    # The fuzz body opens blobs with passphrase "fuzz" and 1 PBKDF2 round.
    salt = bytes(range(32))
    kek = hashlib.pbkdf2_hmac('sha256', pw, salt, it, 32)
    outer = {b'algorithm': alg, b'data': ctr(kek, inner), b'hash': hmac.new(kek, inner, 'sha256').digest(),
             b'iterations': it, b'salt': salt, b'version': version}
    return '\n'.join(textwrap.wrap(binascii.b2a_base64(pack(outer)).decode())).encode()


def inner(klen=32, seed=-5):
    return pack({b'chunk_seed': seed, b'enc_hmac_key': bytes(range(klen)), b'enc_key': bytes(32),
                 b'id_key': bytes(klen), b'repository_id': bytes(32), b'tam_required': True, b'version': 1})


c = 'fuzz/corpus/key_blob/'
seeds = {
    'hmac_key': blob(inner()),
    'blake2_key': blob(inner(128, 2**31 - 1)),
    'no_tam_required': blob(pack({b'version': 1, b'chunk_seed': 0, b'enc_key': bytes(32), b'enc_hmac_key': bytes(32),
                                  b'id_key': bytes(32), b'repository_id': bytes(32)})),
    'bad_inner': blob(b'\x93\x01\x02'),
    'argon2': blob(inner(), alg=b'argon2 chacha20-poly1305'),
    'version2': blob(inner(), version=2),
    'wrong_pass': blob(inner(), pw=b'other'),
    'garbage': b'!!! not base64 at all ===',
    'borg_1.4.5_repokey': open('vendor-testdata/crypto/1.4.5/repokey/repokey', 'rb').read(),
}
for name, data in seeds.items():
    open(c + name, 'wb').write(data)

e = 'fuzz/corpus/envelope_decrypt/'
body = bytes.fromhex('32b688b4a257c2c3ed44a2664212b21fc1da0c2813af073e96671709eac8b1a2'
                     '0000000000001234e63062d2e5fe28cab2e6e03e80f344ed7a99efff3c390e')
seeds = {
    'repokey': b'\x03' + body,
    'keyfile': b'\x00' + body,
    'legacy_passphrase': b'\x01' + body,
    'repokey_blake2': bytes.fromhex('05717c0de8e7ff8a3359ccf6be5320f32811b0a745583ddc6602b436600dfa3eb8'
                                    '0000000000001234e63062d2e5fe28cab2e6e03e80f344ed7a99efff3c390e'),
    'authenticated': b'\x07\x01\x00hello',
    'plaintext': b'\x02\x00\x00hello',
    'truncated': (b'\x03' + body)[:40],
    'empty': b'',
    'borg_1.4.5_repokey_manifest': open('vendor-testdata/crypto/1.4.5/repokey/manifest.bin', 'rb').read(),
}
for name, data in seeds.items():
    open(e + name, 'wb').write(data)

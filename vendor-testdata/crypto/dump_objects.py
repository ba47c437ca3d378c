# Copies the raw manifest and archive envelopes of a borg repository into files.
# Run with the python that has the borg version under test: dump_objects.py REPO OUTDIR
import os, sys
from borg.repository import Repository
from borg.logger import setup_logging

setup_logging()
repo_path, out = sys.argv[1], sys.argv[2]
with Repository(repo_path, exclusive=False, lock=False) as repo:
    with open(os.path.join(out, 'repo_id'), 'w') as f:
        f.write(repo.id.hex() + '\n')
    with open(os.path.join(out, 'manifest.bin'), 'wb') as f:
        f.write(repo.get(bytes(32)))
    with open(os.path.join(out, 'archive_id'), encoding='ascii') as f:
        archive_id = bytes.fromhex(f.read().strip())
    with open(os.path.join(out, 'archive.bin'), 'wb') as f:
        f.write(repo.get(archive_id))

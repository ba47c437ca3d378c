"""Give a borg repository many archives cheaply, for the prune interop test.

Run with the Python of the borg under test (its modules must be importable):

    python make_manifest.py REPO BASE_ARCHIVE ENTRIES_JSON OUT_JSON

ENTRIES_JSON is a list of [name, time] with time as the manifest stores it (UTC,
%Y-%m-%dT%H:%M:%S.%f). The manifest is rewritten to hold exactly these archives. Each one is a
real archive metadata object: a copy of BASE_ARCHIVE's metadata with name and time changed,
packed and stored by borg's own code (so each has its own id, with a TAM where this borg
writes one), and added through borg's cache, whose commit records the new manifest, so a
later `borg prune` does not resync. A --dry-run prune only reads the manifest; the archives
share BASE_ARCHIVE's item stream and file chunks, whose reference counts are raised
accordingly, so a real prune of these archives deletes cleanly.

OUT_JSON receives [name, id_hex, time] for every archive of the reloaded manifest, in
manifest order.
"""

import json
import sys

from borg.archive import Archive, Statistics
from borg.cache import Cache
from borg.helpers import Manifest
from borg.logger import setup_logging
from borg.repository import Repository


def main():
    setup_logging(level='warning')
    repo_path, base_name, entries_path, out_path = sys.argv[1:5]
    with open(entries_path) as f:
        entries = json.load(f)

    with Repository(repo_path, exclusive=True) as repository:
        manifest, key = Manifest.load(repository, (Manifest.Operation.WRITE,))
        with Cache(repository, key, manifest) as cache:
            base = Archive(repository, key, manifest, base_name, cache=cache)
            metadata = base._load_meta(base.id)
            # every copy references the base's item stream and file chunks: count those
            # references so that a real (not --dry-run) prune can delete copies cleanly
            shared = list(metadata.items)
            for item in base.iter_items():
                shared.extend(c.id for c in item.get('chunks', []))
            for name in list(manifest.archives):
                del manifest.archives[name]
            stats = Statistics()
            for name, ts in entries:
                metadata.name = name
                metadata.time = ts
                metadata.time_end = ts
                data = key.pack_and_authenticate_metadata(metadata.as_dict(), context=b'archive')
                archive_id = key.id_hash(data)
                cache.add_chunk(archive_id, data, stats)
                for chunk_id in shared:
                    cache.chunk_incref(chunk_id, stats)
                manifest.archives[name] = (archive_id, ts)
            manifest.write()
            repository.commit(compact=False)
            cache.commit()

    with Repository(repo_path) as repository:
        manifest, key = Manifest.load(repository, (Manifest.Operation.READ,))
        out = []
        for name in manifest.archives:
            info = manifest.archives[name]
            out.append([name, info.id.hex(), info.ts.strftime('%Y-%m-%dT%H:%M:%S.%f')])
    with open(out_path, 'w') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main()

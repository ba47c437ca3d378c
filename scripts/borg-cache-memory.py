#!/usr/bin/env python3
"""borg's own cache structures at a given size, measured by the growth of this process's RSS:
`borg-cache-memory.py c N` fills a borg.hashindex.ChunkIndex with N random chunk ids,
`borg-cache-memory.py f N` builds borg's in-memory files cache (a dict of path hash → packed
FileCacheEntry, as Cache.memorize_file does) for N files of one chunk each.

Run it with the python of the borg to measure, one size per process (freed memory is not
returned to the OS, so a second measurement in one process would be wrong):
    /usr/bin/python3 scripts/borg-cache-memory.py c 1000000
"""
import gc
import os
import sys


def rss():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) * 1024


what, n = sys.argv[1], int(sys.argv[2])
if what == 'c':
    from borg.hashindex import ChunkIndex
    keys = [os.urandom(32) for _ in range(n)]
    gc.collect()
    before = rss()
    index = ChunkIndex()
    for k in keys:
        index[k] = (1, 1000, 700)
    print('borg ChunkIndex n=%d: %.1f B/chunk' % (n, (rss() - before) / n))
else:
    from borg import cache
    from borg.helpers import msgpack
    hashes = [os.urandom(32) for _ in range(n)]
    ids = [os.urandom(32) for _ in range(n)]
    to_ts = getattr(cache, 'int_to_timestamp', lambda ns: ns)
    gc.collect()
    before = rss()
    files = {}
    for i in range(n):
        entry = cache.FileCacheEntry(age=0, inode=1000000 + i, size=4096 + i,
                                     cmtime=to_ts(1700000000000000000 + i), chunk_ids=[ids[i]])
        files[hashes[i]] = msgpack.packb(entry)
    print('borg files cache n=%d (1 chunk/file): %.1f B/file' % (n, (rss() - before) / n))

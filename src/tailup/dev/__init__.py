"""Test doubles and real local servers for tests, the demo and benchmarks; never imported by the
daemon (`tailup run` loads only what it runs: tests/unit/test_dev_isolation.py).

- :class:`RedisServer` runs a private ``redis-server`` on 127.0.0.1 and a free port
  (tailup.dev.redis).
- :class:`RedisCluster` runs a private Redis Cluster of masters on 127.0.0.1 (cluster bus on
  port + 10000), and :class:`RedisSentinel` a master, its replica and one Sentinel watching them,
  with a way to kill the master and wait for the failover.
- :class:`SeaweedS3` runs a private SeaweedFS (``weed mini``) S3 server on 127.0.0.1 and free
  ports, optionally with more identities (:class:`S3Identity`), each limited to some actions or to
  an IAM policy document.
- :class:`MotoS3` runs a private moto S3 server (``moto_server``) on 127.0.0.1 and a free port: a
  second S3 implementation, with AWS's part semantics (only the latest upload of a part is kept),
  optionally with its IAM enforced and a user per IAM policy document.
- :class:`RcloneS3` runs a private rclone ``serve s3`` on 127.0.0.1 and a free port, over a local
  folder: a third S3 implementation, which refuses a part sent again with other bytes.
- :func:`record_cmd` builds an ffmpeg command that records a synthetic live source, the way a
  recorder writes a growing file.
- :class:`MemoryMultipartStore` and :class:`MemoryCheckpointStore` are in-process stores for fast
  tests of stream logic, held to the real stores' behaviour by the contract suites.

Every server is a context manager, binds to the loopback interface only, keeps its log in its own
folder, and can be stopped (SIGTERM), killed (SIGKILL) and started again on the same port and
folder, so tests can restart it in the middle of an upload. Children run in their own session (a
Ctrl-C in the terminal reaches only the parent, which then stops them in order); they are killed
when the parent exits, even on an exception, and, on Linux, when the parent dies without cleaning
up (tailup.dev.process). Ports come from a slice of the process's own (tailup.dev.port_slices), so
two processes (pytest-xdist workers) starting servers at once never pick the same one.

Nothing here imports pytest: the demo and the benchmarks use the same classes.
"""

from tailup.dev.memory_checkpoints import MemoryCheckpointStore
from tailup.dev.memory_s3 import MemoryMultipartStore
from tailup.dev.moto import MotoS3, with_operation_names
from tailup.dev.ports import LOOPBACK, free_port
from tailup.dev.process import DevServerError
from tailup.dev.rclone import RcloneS3
from tailup.dev.recorder import RECORD_FORMATS, ffmpeg_exe, record_cmd
from tailup.dev.redis import RedisServer
from tailup.dev.redis_cluster import RedisCluster
from tailup.dev.redis_sentinel import RedisSentinel
from tailup.dev.s3_common import S3Identity
from tailup.dev.seaweed import SeaweedS3

__all__ = [
    "LOOPBACK",
    "RECORD_FORMATS",
    "DevServerError",
    "MemoryCheckpointStore",
    "MemoryMultipartStore",
    "MotoS3",
    "RcloneS3",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "S3Identity",
    "SeaweedS3",
    "ffmpeg_exe",
    "free_port",
    "record_cmd",
    "with_operation_names",
]

"""botocore sessions that share one loader of botocore's data files.

A fresh botocore session reads and parses the S3 service model, its endpoint rules and partitions
(a few MB of JSON) the first time it makes a client: 0.06-0.3 s of CPU, against ~5 ms for a client
of a session that has them already. `tailup url` makes two clients, each test of the suite one or
more. One session for the whole process would be cheaper still, but a session keeps the first
credentials it found (and its config files, read once), so a client made after the environment
changed would still sign with the old keys. So every client keeps a session of its own, which
finds its credentials and settings as before, and only the loader is shared: a cache of files
shipped with botocore, the same for every session with the same data path (AWS_DATA_PATH).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, TypeVar

from aiobotocore.session import AioSession, get_session


class _Session(Protocol):
    def get_config_variable(self, logical_name: str) -> Any: ...
    def get_component(self, name: str) -> Any: ...
    def register_component(self, name: str, component: Any) -> None: ...


SessionT = TypeVar("SessionT", bound=_Session)

_loaders: dict[str, Any] = {}  # data path -> botocore.loaders.Loader
_loaders_lock = threading.Lock()


def with_shared_loader(session: SessionT) -> SessionT:
    """``session`` (botocore's or aiobotocore's), its data loader the process's one for its
    data path."""
    data_path = str(session.get_config_variable("data_path"))
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = session.get_component("data_loader")
    session.register_component("data_loader", loader)
    return session


def new_session() -> AioSession:
    """An aiobotocore session of its own (credentials, config) with the shared loader."""
    return with_shared_loader(get_session())

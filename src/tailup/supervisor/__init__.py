"""The supervisor (tailup.supervisor.daemon), in parts of one concern each."""

from tailup.supervisor.daemon import Supervisor
from tailup.supervisor.dispatch import merge_deferred
from tailup.supervisor.state import containing_root, new_stream_id

__all__ = ["Supervisor", "containing_root", "merge_deferred", "new_stream_id"]

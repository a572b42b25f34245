"""Run N `streamlit run app.py` replicas on loopback ports behind one nginx, on one machine.

    python -m deploy.replicas --replicas 2 --port 8501 --host 0.0.0.0     # what `make serve-replicas N=2` runs

Each replica K is a separate process (`TORCHLAB_REPLICA=rK` in its environment) on a free loopback
port. nginx (Debian's binary, never its /etc/nginx) runs in the foreground as our child with a
config generated from deploy/nginx.conf: cookie affinity (`torchlab_replica=rK`), failover to a
live replica, websocket upgrade, security headers, Streamlit's internal endpoints kept away from
students. All replicas share one `server.cookieSecret` (TORCHLAB_COOKIE_SECRET, else a 0600 file
generated once in the runtime folder) and one TORCHLAB_LOCK_DIR (the cross-process device gate).

The runtime folder (default `.run/`, git-ignored) holds what clusters share (the cookie secret, the
lock folder) and one folder per cluster, `port-<nginx port>/`: the generated nginx.conf, nginx's
pid and logs, one log per replica (appended to across runs). nginx's temp folders live in a private
temp directory removed at stop, owned by nginx's worker user when we run as root.

From Python (tests, the load bench):

    cluster = start(2, port=0)          # 0: any free port; waits until every /_stcore/health answers
    cluster.url, cluster.replica_pids, cluster.nginx_pid
    cluster.kill(1)                     # SIGKILL replica r1: its students fail over to r0
    cluster.stop()                      # or: with start(2) as cluster: ...
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import grp
import os
import pwd
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("nginx.conf")
DEFAULT_RUN_DIR = ROOT / ".run"
COOKIE = "torchlab_replica"
SERVED_BY_HEADER = "X-TorchLab-Replica"  # optional response header naming the replica that answered
SECRET_FILE = "cookie-secret"
HEALTH_PATH = "/_stcore/health"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0  # a replica imports torch before it answers; CI machines are slow
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3  # a port picked as free may be taken before the process binds it
FAIL_TIMEOUT_S = 5  # how long nginx skips a replica after one refused connection
RESTART_EVERY_S = 10.0  # the CLI restarts a dead replica at most this often


class ReplicasError(RuntimeError):
    """A replica or nginx did not start; the message ends with the tail of its log."""


def replica_name(i: int) -> str:
    """Return the name of replica i, as in the cookie and TORCHLAB_REPLICA: 'r0', 'r1', ..."""
    return f"r{i}"


# ----------------------------------------------------------------------------------------------
# Small helpers: binaries, ports, health, logs, processes


def find_nginx() -> str | None:
    """Return the path of the nginx binary (Debian puts it in /usr/sbin, off a normal user's PATH), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return count distinct ports on host that were free a moment ago (the OS picks them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def health_ok(base_url: str, timeout_s: float = 2.0) -> bool:
    """Return whether base_url's Streamlit health endpoint answers 'ok' (environment proxies bypassed)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base_url + HEALTH_PATH, timeout=timeout_s) as response:
            return bool(response.status == 200 and response.read().decode().strip() == "ok")
    except (OSError, urllib.error.URLError):
        return False


def log_tail(path: Path, chars: int = 3000) -> str:
    """Return the end of a log file, or a note that there is none."""
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else f"(no log at {path})"


def signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send sig to the process's group (each child leads its own), unless the process has already exited."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def stop_process(process: subprocess.Popen[bytes], sig: int | None = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Send sig (None: it was sent already) and wait timeout_s for the process to exit, then SIGKILL its group."""
    if sig is not None:
        signal_group(process, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    signal_group(process, signal.SIGKILL)
    process.wait()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the launcher dies, so nothing outlives a `kill -9`."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(command: Sequence[str], log_path: Path, env: Mapping[str, str], *, die_with_parent: bool) -> subprocess.Popen[bytes]:
    """Start command in the repository root in its own session, stdout and stderr appended to log_path."""
    with log_path.open("ab") as log:
        log.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll url's health check until it answers (True), or the process exits or timeout_s passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health_ok(url):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return health_ok(url)


# ----------------------------------------------------------------------------------------------
# Shared settings of the replicas: cookie secret, lock folder, environment


def cookie_secret(run_dir: Path, env: Mapping[str, str]) -> str:
    """Return TORCHLAB_COOKIE_SECRET, else the secret in run_dir/cookie-secret, generated (0600) the first time."""
    if env.get("TORCHLAB_COOKIE_SECRET"):
        return env["TORCHLAB_COOKIE_SECRET"]
    path = run_dir / SECRET_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    secret = path.read_text().strip()
    if not secret:
        raise ReplicasError(f"{path} is empty: delete it to have a new cookie secret generated")
    return secret


def lock_dir(run_dir: Path, env: Mapping[str, str]) -> Path:
    """Return the shared TORCHLAB_LOCK_DIR (from env, else run_dir/locks), created if missing."""
    path = Path(env["TORCHLAB_LOCK_DIR"]) if env.get("TORCHLAB_LOCK_DIR") else run_dir / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def shared_env(base: Mapping[str, str], secret: str, locks: Path) -> dict[str, str]:
    """Return the environment every replica shares: base plus the cookie secret and the lock folder."""
    return {**base, "STREAMLIT_SERVER_COOKIE_SECRET": secret, "TORCHLAB_LOCK_DIR": str(locks), "PYTHONUNBUFFERED": "1"}


def replica_env(shared: Mapping[str, str], i: int) -> dict[str, str]:
    """Return replica i's environment: the shared one plus TORCHLAB_REPLICA=ri."""
    return {**shared, "TORCHLAB_REPLICA": replica_name(i)}


def streamlit_command(port: int) -> list[str]:
    """Return the command that serves app.py on a loopback port (config: .streamlit/config.toml)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        LOOPBACK,
        "--server.headless",
        "true",
    ]


# ----------------------------------------------------------------------------------------------
# The nginx config


def worker_user() -> tuple[int, int, str] | None:
    """Return (uid, gid, 'user group') for nginx's workers when we are root (nobody, its own group); else None.

    Only a root master switches users; its workers then need the temp folders (chowned to them)
    and nothing else: the master opens the config and the logs before it forks them.
    """
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid, f"{nobody.pw_name} {grp.getgrgid(nobody.pw_gid).gr_name}"


def _upstream(name: str, ports: Sequence[int], first: int | None) -> str:
    """Return one upstream block: every replica, or replica `first` with the others as backups."""
    lines = [f"    upstream {name} {{", f"        zone {name} 64k;"]
    if first is None:
        lines.append("        least_conn;")
    for i, port in enumerate(ports):
        backup = " backup" if first is not None and i != first else ""
        lines.append(f"        server {LOOPBACK}:{port} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s{backup};")
    lines += ["        keepalive 16;", "    }"]
    if first is not None:  # the pinned replica first, in the file too, so the block reads as it routes
        lines.insert(2, lines.pop(2 + first))
    return "\n".join(lines)


@dataclass(frozen=True)
class Site:
    """How nginx serves: where it listens, its runtime and temp folders, its worker user, the debug header."""

    listen: str  # "127.0.0.1:8501", "0.0.0.0:8501"
    folder: Path  # nginx's prefix: config, pid, logs
    temp_dir: Path
    user: str | None = None  # "nobody nogroup" when the master runs as root
    served_by_header: bool = False  # add X-TorchLab-Replica: rK to every answer a replica gave


def render_nginx_conf(ports: Sequence[int], site: Site) -> str:
    """Return deploy/nginx.conf with every double-braced placeholder filled in for replicas on these loopback ports."""
    names = [replica_name(i) for i in range(len(ports))]
    address = [re.escape(f"{LOOPBACK}:{port}") for port in ports]
    header = f"add_header {SERVED_BY_HEADER} $torchlab_served_by always;"
    values = {
        "user_directive": f"user {site.user};" if site.user else "# (not root: nginx's workers run as we do)",
        "folder": str(site.folder),
        "temp_dir": str(site.temp_dir),
        "listen": site.listen,
        "upstreams": "\n".join(
            [_upstream("torchlab_any", ports, None), *(_upstream(f"torchlab_{n}", ports, i) for i, n in enumerate(names))]
        ),
        "cookie_to_upstream": "\n".join(f"        {n} torchlab_{n};" for n in names),
        "address_to_name": "\n".join(f'        "~(^|, ){a}$" {n};' for a, n in zip(address, names, strict=True)),
        "name_to_cookie": "\n".join(f'        "1 {n}" "{COOKIE}={n}; Path=/; HttpOnly; SameSite=Lax";' for n in names),
        "served_by_header": f"        {header}" if site.served_by_header else f"        # (tests and debugging: {header})",
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], TEMPLATE.read_text())


# ----------------------------------------------------------------------------------------------
# The cluster


@dataclass
class Replica:
    """One `streamlit run app.py` on a loopback port."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """Return the replica's own URL (loopback, bypassing nginx)."""
        return f"http://{LOOPBACK}:{self.port}"


@dataclass
class Cluster:
    """N replicas and the nginx in front of them, as start() left them."""

    url: str
    replicas: list[Replica]
    nginx: subprocess.Popen[bytes]
    run_dir: Path  # shared by clusters: cookie secret, locks
    folder: Path  # this cluster's: run_dir/port-<port>/ with nginx.conf, pid, logs
    temp_dir: Path
    env: dict[str, str] = field(repr=False)
    die_with_parent: bool = False
    _stopped: bool = False

    @property
    def replica_pids(self) -> list[int]:
        """Return each replica's process id (index = replica number)."""
        return [r.process.pid for r in self.replicas]

    @property
    def nginx_pid(self) -> int:
        """Return the nginx master's process id."""
        return self.nginx.pid

    @property
    def nginx_log(self) -> Path:
        """Return nginx's error log."""
        return self.folder / "nginx-error.log"

    @property
    def access_log(self) -> Path:
        """Return nginx's access log (one line per request; a websocket's when it closes)."""
        return self.folder / "nginx-access.log"

    def kill(self, i: int) -> None:
        """SIGKILL replica i (a crash, as far as nginx and its students can tell) and reap it."""
        stop_process(self.replicas[i].process, signal.SIGKILL, timeout_s=5.0)

    def restart(self, i: int, wait: bool = True) -> None:
        """Start replica i again on its port (after kill or a crash); wait for its health unless told not to."""
        old = self.replicas[i]
        stop_process(old.process)
        process = spawn(
            streamlit_command(old.port), old.log_path, replica_env(self.env, i), die_with_parent=self.die_with_parent
        )
        self.replicas[i] = Replica(old.name, old.port, process, old.log_path)
        if wait and not wait_healthy(old.url, process, START_TIMEOUT_S):
            raise ReplicasError(f"replica {old.name} did not come back. Log {old.log_path}:\n{log_tail(old.log_path)}")

    def stop(self) -> None:
        """Stop nginx, then every replica (SIGTERM, SIGKILL after 10 s); remove nginx's temp folder. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        stop_process(self.nginx)
        for replica in self.replicas:  # all asked at once, then waited for: a replica takes a while to stop
            signal_group(replica.process, signal.SIGTERM)
        for replica in self.replicas:
            stop_process(replica.process, None)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_replicas(n: int, folder: Path, env: Mapping[str, str], die_with_parent: bool) -> list[Replica]:
    """Start n replicas on free loopback ports and wait until each answers its health check.

    A replica that exits before it is healthy (its port was taken meanwhile) is retried on another port.
    """
    replicas: list[Replica] = []
    try:
        for i, port in enumerate(free_ports(n)):
            log_path = folder / f"replica-{replica_name(i)}.log"
            process = spawn(streamlit_command(port), log_path, replica_env(env, i), die_with_parent=die_with_parent)
            replicas.append(Replica(replica_name(i), port, process, log_path))
        for i in range(n):
            replicas[i] = _healthy_replica(replicas[i], replica_env(env, i), die_with_parent)
    except BaseException:
        for replica in replicas:
            stop_process(replica.process)
        raise
    return replicas


def _healthy_replica(replica: Replica, env: Mapping[str, str], die_with_parent: bool) -> Replica:
    """Return the replica once healthy, restarted on new ports while it exits early; raise if it never answers."""
    for _ in range(START_ATTEMPTS):
        process = replica.process
        if wait_healthy(replica.url, process, START_TIMEOUT_S):
            return replica
        stop_process(process)
        if process.returncode is None or process.returncode < 0:
            break  # it was alive but never healthy: another port will not help
        port = free_ports(1)[0]
        replica = Replica(
            replica.name,
            port,
            spawn(streamlit_command(port), replica.log_path, env, die_with_parent=die_with_parent),
            replica.log_path,
        )
    raise ReplicasError(f"replica {replica.name} did not become healthy. Log {replica.log_path}:\n{log_tail(replica.log_path)}")


def _temp_dir(user: tuple[int, int, str] | None) -> Path:
    """Return a new private folder for nginx's temp files, owned by its worker user when we are root."""
    path = Path(tempfile.mkdtemp(prefix="torchlab-nginx-"))
    if user is not None:
        os.chown(path, user[0], user[1])
    return path


def local_url(host: str, port: int) -> str:
    """Return the URL this machine reaches host:port at (loopback for 0.0.0.0)."""
    return f"http://{LOOPBACK if host in ('0.0.0.0', '') else host}:{port}"


def claim_port(host: str, port: int) -> int:
    """Return port (0: a free one), after checking that nothing listens on host:port already."""
    if port == 0:
        return free_ports(1, host)[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds: a closing connection is no obstacle
        try:
            s.bind((host, port))
        except OSError as e:
            raise ReplicasError(f"{host}:{port} is in use ({e.strerror}): `make run` or another cluster is there") from e
    return port


def _nginx_command(binary: str, folder: Path, *extra: str) -> list[str]:
    """Return the nginx command line for the config in folder (its prefix and error log there too)."""
    return [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "nginx-error.log"), *extra]


def _check_nginx_conf(binary: str, folder: Path) -> None:
    """Raise ReplicasError with nginx's own words if the generated config does not pass `nginx -t`."""
    test = subprocess.run(_nginx_command(binary, folder, "-t", "-q"), capture_output=True, text=True, check=False)
    if test.returncode != 0:
        raise ReplicasError(f"nginx rejects {folder / 'nginx.conf'}:\n{test.stderr or test.stdout}")


def _start_nginx(ports: Sequence[int], site: Site, url: str, die_with_parent: bool) -> subprocess.Popen[bytes]:
    """Write the config into site.folder and start nginx in the foreground; return it once it answers at url."""
    binary = find_nginx()
    if binary is None:
        raise ReplicasError("nginx is not installed: `make nginx` installs Debian's package (as root)")
    folder = site.folder
    (folder / "nginx.conf").write_text(render_nginx_conf(ports, site))
    _check_nginx_conf(binary, folder)
    process = spawn(_nginx_command(binary, folder), folder / "nginx-stdout.log", os.environ, die_with_parent=die_with_parent)
    if not wait_healthy(url, process, 30.0):
        stop_process(process)
        raise ReplicasError(
            f"nginx did not start on {site.listen}. Log {folder / 'nginx-error.log'}:\n{log_tail(folder / 'nginx-error.log')}"
        )
    return process


def _raise_open_file_limit() -> None:
    """Raise our soft open-files limit to the hard one: nginx inherits it (two descriptors per websocket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(
    n: int,
    port: int = 0,
    env: Mapping[str, str] | None = None,
    *,
    host: str = LOOPBACK,
    run_dir: Path | None = None,
    served_by_header: bool = False,
    die_with_parent: bool = False,
) -> Cluster:
    """Start n replicas and nginx in front of them on host:port; return the cluster once all are healthy.

    env: extra environment for the replicas, on top of ours (TORCHLAB_COOKIE_SECRET and
    TORCHLAB_LOCK_DIR are read from it first). port 0 picks a free port. run_dir defaults to .run/;
    this cluster's config and logs go to run_dir/port-<port>/.
    served_by_header: nginx adds `X-TorchLab-Replica: rK` to each answer (tests, debugging).
    die_with_parent: the children get SIGTERM when the thread that called start() ends (for the CLI).
    """
    if n < 1:
        raise ValueError(f"need at least one replica, not {n}")
    run_dir = (run_dir or DEFAULT_RUN_DIR).resolve()
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    base = {**os.environ, **(env or {})}
    shared = shared_env(base, cookie_secret(run_dir, base), lock_dir(run_dir, base))
    port = claim_port(host, port)
    folder = run_dir / f"port-{port}"
    folder.mkdir(exist_ok=True)
    _raise_open_file_limit()
    replicas = _start_replicas(n, folder, shared, die_with_parent)
    user = worker_user()
    temp_dir = _temp_dir(user)
    url = local_url(host, port)
    try:
        site = Site(f"{host}:{port}", folder, temp_dir, user[2] if user else None, served_by_header)
        nginx = _start_nginx([r.port for r in replicas], site, url, die_with_parent)
    except BaseException:
        for replica in replicas:
            stop_process(replica.process)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return Cluster(url, replicas, nginx, run_dir, folder, temp_dir, shared, die_with_parent)


# ----------------------------------------------------------------------------------------------
# The command line (make serve-replicas)


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt, so that Ctrl-C and `kill` both stop everything.

    SIGINT too: a shell that starts us in the background hands us SIGINT ignored.
    """
    raise KeyboardInterrupt(signal.Signals(signum).name)


def supervise(cluster: Cluster, restart: bool, poll_s: float = 1.0) -> int:
    """Watch the cluster until nginx exits (return 1): restart a replica that died, at most every 10 s."""
    last_restart = [0.0] * len(cluster.replicas)
    while cluster.nginx.poll() is None:
        for i, replica in enumerate(cluster.replicas):
            code = replica.process.poll()
            if code is None or not restart or time.monotonic() - last_restart[i] < RESTART_EVERY_S:
                continue
            print(
                f"replica {replica.name} exited with code {code}; its students fail over. Restarting it "
                f"(log {replica.log_path}).",
                file=sys.stderr,
                flush=True,
            )
            last_restart[i] = time.monotonic()
            cluster.restart(i, wait=False)
        time.sleep(poll_s)
    print(
        f"nginx exited with code {cluster.nginx.returncode}. Log {cluster.nginx_log}:\n{log_tail(cluster.nginx_log)}",
        file=sys.stderr,
    )
    return 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(prog="python -m deploy.replicas", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", "-n", type=int, default=2, help="how many streamlit processes (default 2)")
    parser.add_argument("--port", type=int, default=8501, help="nginx's port (default 8501)")
    parser.add_argument("--host", default="0.0.0.0", help="nginx's address (default 0.0.0.0: the whole network)")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="runtime folder (default .run/)")
    parser.add_argument("--no-restart", action="store_true", help="leave a replica that died down")
    parser.add_argument("--served-by-header", action="store_true", help=f"add {SERVED_BY_HEADER}: rK to answers")
    return parser.parse_args(argv)


def _print_banner(cluster: Cluster, host: str) -> None:
    """Say where the class should connect and where the logs are."""
    port = cluster.url.rsplit(":", 1)[1]
    where = f"http://<this machine's address>:{port} (and {cluster.url})" if host in ("0.0.0.0", "") else cluster.url
    print(f"TorchLab: {len(cluster.replicas)} replicas behind nginx at {where}", flush=True)
    for replica in cluster.replicas:
        print(f"  {replica.name}: {replica.url} pid {replica.process.pid}, log {replica.log_path}", flush=True)
    print(f"  nginx: pid {cluster.nginx_pid}, logs {cluster.folder}/nginx-*.log. Ctrl-C stops everything.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the replicas and nginx, serve in the foreground until Ctrl-C or SIGTERM, then stop everything."""
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
    cluster: Cluster | None = None
    try:
        cluster = start(
            args.replicas,
            args.port,
            host=args.host,
            run_dir=args.run_dir,
            served_by_header=args.served_by_header,
            die_with_parent=True,
        )
        _print_banner(cluster, args.host)
        return supervise(cluster, restart=not args.no_restart)
    except KeyboardInterrupt:
        print("\nStopping nginx and the replicas...", file=sys.stderr, flush=True)
        return 0
    except ReplicasError as e:
        print(f"!!! {e}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the stop short
                signal.signal(sig, signal.SIG_IGN)
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())

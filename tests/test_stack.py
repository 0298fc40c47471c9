"""A real multi-service container: nginx in front of a Python app that talks to redis.

The servers are Debian's (installed by .ci/setup); tinit starts them from one
YAML file as PID 1 of a new PID namespace, waits for their readiness probes,
serves a request end to end, and on SIGTERM stops them in dependency order.
"""

from __future__ import annotations

import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.nsrun import PYTHON, wait_for
from tests.svcrun import finish, start, write_config

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
        or not shutil.which("redis-server"),
        reason="needs nginx and redis-server (bash .ci/setup installs them)",
    ),
]

NGINX_PORT, APP_PORT, REDIS_PORT = 18780, 18781, 18782

APP = f"""
import http.server, socket

def redis(*words):
    with socket.create_connection(("127.0.0.1", {REDIS_PORT})) as s:
        request = f"*{{len(words)}}\\r\\n" + "".join(f"${{len(w)}}\\r\\n{{w}}\\r\\n" for w in words)
        s.sendall(request.encode())
        return s.recv(1024).decode().strip()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hits " + redis("INCR", "hits").lstrip(":") + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("127.0.0.1", {APP_PORT}), Handler).serve_forever()
"""


def nginx_conf(tmp: Path) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
worker_processes 2;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{NGINX_PORT};
        location / {{ proxy_pass http://127.0.0.1:{APP_PORT}; }}
    }}
}}
"""
    )
    return conf


def test_nginx_app_redis_stack(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    app = tmp_path / "app.py"
    app.write_text(APP)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{shutdown_timeout: 9s}}
        services:
          redis:
            command: [redis-server, --port, "{REDIS_PORT}", --bind, 127.0.0.1, --save, "", --appendonly, "no", --dir, "{tmp_path}"]
            ready: {{tcp: "127.0.0.1:{REDIS_PORT}", interval: 100ms}}
            stop_timeout: 3s
          app:
            command: [PYTHON, -u, "{app}"]
            depends_on: {{redis: ready}}
            ready: {{http: "http://127.0.0.1:{APP_PORT}/", interval: 100ms}}
            stop_timeout: 3s
          nginx:
            command: [{nginx}, -c, "{nginx_conf(tmp_path)}", -p, "{tmp_path}"]
            depends_on: {{app: ready}}
            ready: {{http: "http://127.0.0.1:{NGINX_PORT}/", interval: 100ms}}
            stop_timeout: 3s
        """.replace("PYTHON", PYTHON),
    )
    tinit = start(config)
    try:
        url = f"http://127.0.0.1:{NGINX_PORT}/"

        def answered() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        assert wait_for(answered, timeout=30)
        with urllib.request.urlopen(url, timeout=5) as response:
            first = response.read().decode()
        with urllib.request.urlopen(url, timeout=5) as response:
            second = response.read().decode()
        assert first.startswith("hits ")
        assert int(second.split()[1]) == int(first.split()[1]) + 1  # state lives in redis
    finally:
        began = time.monotonic()
        tinit.signal(signal.SIGTERM)
        result = finish(tinit)
    elapsed = time.monotonic() - began
    assert result.code == 0, result.stderr[-2000:]
    assert elapsed < 9
    assert result.order("service_stopped") == ["nginx", "app", "redis"]
    # every process of every service was gone before tinit finished: nothing was
    # left over for the final sweep of the namespace
    assert not result.named("stopping_leftovers")
    assert not result.named("service_killed")

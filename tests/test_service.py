import os
import socket

from copilot.service import SystemdNotifier


def test_notify_reaches_a_real_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    n = SystemdNotifier(path)
    assert n.enabled
    n.ready("watching")
    assert server.recv(4096).decode().split("\n") == ["READY=1", "STATUS=watching"]
    n.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert server.recv(4096) == b"STOPPING=1"
    n.close()
    server.close()


def test_abstract_socket_address():
    name = f"copilot-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    SystemdNotifier("@" + name).status("hello")
    assert server.recv(4096) == b"STATUS=hello"
    server.close()


def test_disabled_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled and n.ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert SystemdNotifier.watchdog_interval_s() is None

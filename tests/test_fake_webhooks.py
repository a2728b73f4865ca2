"""The fakes' webhook sender speaks HTTP/1.1 on plain sockets (bench/e2e.py: httpx was ~15 % of the fakes'
CPU). It must send what httpx sent and read every way an answer can be framed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from syncer.fakes.base import WebhookSender


class ScriptedReceiver:
    """A raw HTTP receiver: records each request's bytes and answers from `answers` in turn (raw bytes,
    sent as they are; `None` closes the connection without answering). Connections are served one at a
    time; `close_after` closes each connection after that many answers."""

    def __init__(self, answers: list[bytes | None], close_after: int | None = None) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hooks/in?x=1"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        buffer = b""
        answered = 0
        while self.answers:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
            answer = self.answers.pop(0)
            if answer is None:
                return
            conn.sendall(answer)
            answered += 1
            if self.close_after is not None and answered >= self.close_after:
                return

    def stop(self) -> None:
        self._sock.close()


@pytest.fixture
def sender() -> Iterator[WebhookSender]:
    hooks = WebhookSender("test")
    yield hooks
    hooks.close()


def _head(raw: bytes) -> list[bytes]:
    return raw.partition(b"\r\n\r\n")[0].split(b"\r\n")


def test_sends_the_request_httpx_sent(sender: WebhookSender) -> None:
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    receiver = ScriptedReceiver([ok, ok], close_after=1)  # connections are served one at a time
    headers = {"Content-Type": "application/json", "User-Agent": "Atlassian Webhook HTTP Client",
               "X-Hub-Signature": "sha256=00ff"}
    body = b'{"webhookEvent":"jira:issue_created"}'
    try:
        sender.url = receiver.url
        sender.send(headers, body)
        assert sender.drain(5)
        with httpx.Client() as client:
            client.post(receiver.url, content=body, headers=headers)
    finally:
        receiver.stop()
    ours, theirs = receiver.requests
    assert _head(ours) == _head(theirs)
    assert ours.endswith(body)
    assert _head(ours)[0] == b"POST /hooks/in?x=1 HTTP/1.1"
    assert [status for _, _, status in sender.sent] == [200]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nnoted",
    b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n"
    b"3;x=y\r\nnot\r\n2\r\ned\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
])
def test_reads_each_framing_and_keeps_the_connection(sender: WebhookSender, answer: bytes) -> None:
    receiver = ScriptedReceiver([answer, answer, answer])
    try:
        sender.url = receiver.url
        for n in range(3):
            sender.send({"Content-Type": "application/json"}, b'{"n":%d}' % n)
        assert sender.drain(5)
    finally:
        receiver.stop()
    expected = 204 if b" 204 " in answer else 202
    assert [status for _, _, status in sender.sent] == [expected] * 3
    assert receiver.connections == 1
    assert [r.rpartition(b"\r\n\r\n")[2] for r in receiver.requests] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']


@pytest.mark.parametrize(("answer", "close_after"), [
    (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", 1),  # says it closes
    (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", 1),  # HTTP/1.0 closes unless told otherwise
    (b"HTTP/1.1 200 OK\r\n\r\nbody to the end", 1),  # no length: the body ends with the connection
    (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 1),  # closes an idle keep-alive connection
])
def test_a_closed_connection_is_not_reused(sender: WebhookSender, answer: bytes, close_after: int) -> None:
    receiver = ScriptedReceiver([answer] * 3, close_after=close_after)
    try:
        sender.url = receiver.url
        for _ in range(3):
            sender.send({}, b"{}")
            assert sender.drain(5)
    finally:
        receiver.stop()
    assert [status for _, _, status in sender.sent] == [200] * 3
    assert (len(receiver.requests), receiver.connections) == (3, 3)  # no attempt was lost


def test_no_answer_is_retried_on_a_new_connection(sender: WebhookSender) -> None:
    receiver = ScriptedReceiver([None, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"])
    try:
        sender.url = receiver.url
        sender.send({"X-Attempt": "1"}, b"{}", refresh=lambda: {"X-Attempt": "2"})
        assert sender.drain(5)
    finally:
        receiver.stop()
    assert [b"X-Attempt: 1" in r for r in receiver.requests] == [True, False]
    assert sender.sent[0][0] == {"X-Attempt": "2"}
    assert sender.sent[0][2] == 200
    assert receiver.connections == 2

"""Fewer copies per SSH packet in asyncssh 2.x: a send path for AES-GCM channel data,
metered feeding of the receive parser, and larger socket reads.

Profiling the SSH endpoint during a download (docs/decisions/ssh-endpoint.md, "Throughput
tuning, second round") showed that most of its CPU goes to copying, not to AES: for every
128 KiB data packet asyncssh slices the send buffer (``buf[:n]`` and ``del buf[:n]``), then
builds the payload three times by concatenation (``String``, the channel header, the
packet type), once more with the padding, encrypts into a new object, concatenates header
and ciphertext, then ciphertext and tag, and writes the ``SSH_MSG_IGNORE`` it sends before
each data packet with a separate ``send()``.

:func:`install` replaces one channel's ``_flush_send_buf`` with :func:`_flush_send_buf`,
which frames the same packets as asyncssh (same ``SSH_MSG_IGNORE`` before each data packet,
same padding rule, same sequence numbers, same GCM nonce counter, same rekey accounting)
with one copy of the data into a reused plaintext buffer and one ``encrypt_into`` straight
into the output buffer, and sends both packets with one write. The bytes on the wire are
those asyncssh would have sent (up to the random padding).

It takes the fast route only while that is plainly safe and otherwise sends the packet
exactly as asyncssh does: AES-GCM negotiated (``GCMEncryption``; chacha20-poly1305 and the
CTR/MAC ciphers use asyncssh's own path), no compression, key exchange and
authentication complete with nothing deferred, no rekey due (the stock path starts it), no
extended data, asyncssh's packet-level debug logging off. If asyncssh's internals are not
what this was written against (another version), :func:`install` does nothing.

:func:`install_receive` hands a connection's parser one packet's bytes at a time (same
parser and checks, see :func:`_data_received`); :func:`set_read_size` lets a transport read
:data:`READ_SIZE` bytes per ``recv()``.
"""

from __future__ import annotations

import os
import time
import types

import asyncssh
from asyncssh.constants import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EOF,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_IGNORE,
)
from asyncssh.packet import String, UInt32

try:
    from asyncssh.channel import SSHChannel
    from asyncssh.connection import SSHConnection
    from asyncssh.encryption import GCMEncryption
    from asyncssh.logging import SSHLogger
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # pragma: no cover - another asyncssh layout
    AVAILABLE = False
else:
    AVAILABLE = (
        hasattr(AESGCM, "encrypt_into")
        and hasattr(SSHChannel, "_flush_send_buf")
        and hasattr(SSHChannel, "_pause_resume_writing")
        and hasattr(SSHChannel, "_close_send")
        and hasattr(SSHConnection, "_send")
        and hasattr(SSHLogger, "_debug_level")
        and asyncssh.__version__.split(".")[0] == "2"
    )

_TAG = 16  # GCM tag size
# SSH_MSG_IGNORE with an empty string: what asyncssh sends before every encrypted packet
_IGNORE_PAYLOAD = bytes([MSG_IGNORE]) + String(b"")


def _padlen(conn, payload_len: int) -> int:
    """The padding asyncssh's ``send_packet`` adds to a payload of ``payload_len`` bytes."""
    blocksize = conn._send_blocksize
    padlen = -(conn._send_enchdrlen + payload_len) % blocksize
    if padlen < 4:
        padlen += blocksize
    return padlen


def _fast_ok(conn) -> bool:
    """Whether the next data packet may take the fast route (see the module docstring)."""
    return (
        type(conn._send_encryption) is GCMEncryption
        and conn._compressor is None
        and conn._kex_complete
        and conn._auth_complete
        and not conn._deferred_packets
        and conn._transport is not None
        and conn._rekey_bytes_sent < conn._rekey_bytes
        and not (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
        and SSHLogger._debug_level < 3
    )


def _seal(conn, cipher, aead, payload_parts, payload_len: int, out: memoryview) -> int:
    """Frame and encrypt one packet into ``out``; return the bytes written."""
    padlen = _padlen(conn, payload_len)
    pktlen = 1 + payload_len + padlen
    plain = conn._outpost_plain
    if len(plain) < pktlen:
        plain = conn._outpost_plain = bytearray(pktlen)
    view = memoryview(plain)
    try:
        view[0] = padlen
        pos = 1
        for part in payload_parts:
            end = pos + len(part)
            view[pos:end] = part
            pos = end
        view[pos : pos + padlen] = os.urandom(padlen)
        header = pktlen.to_bytes(4, "big")
        out[0:4] = header
        aead.encrypt_into(cipher._iv, view[:pktlen], header, out[4 : 4 + pktlen + _TAG])
    finally:
        view.release()
    cipher._update_iv()
    conn._send_seq = (conn._send_seq + 1) & 0xFFFFFFFF
    conn._rekey_bytes_sent += pktlen
    return 4 + pktlen + _TAG


def _aead(cipher) -> AESGCM:
    """The AESGCM object of one direction's key (cached on asyncssh's cipher object)."""
    aead = getattr(cipher, "_outpost_aead", None)
    if aead is None:
        aead = cipher._outpost_aead = AESGCM(cipher._key)
    return aead


def send_data(conn, send_chan: int, data: memoryview) -> None:
    """Send ``SSH_MSG_IGNORE`` + ``SSH_MSG_CHANNEL_DATA(send_chan, data)`` with one write."""
    cipher = conn._send_encryption._cipher
    aead = _aead(cipher)
    if getattr(conn, "_outpost_plain", None) is None:
        conn._outpost_plain = bytearray()
    head = bytes([MSG_CHANNEL_DATA]) + UInt32(send_chan) + UInt32(len(data))
    ignore_len = 4 + 1 + len(_IGNORE_PAYLOAD) + _padlen(conn, len(_IGNORE_PAYLOAD)) + _TAG
    payload_len = len(head) + len(data)
    data_len = 4 + 1 + payload_len + _padlen(conn, payload_len) + _TAG
    buf = bytearray(ignore_len + data_len)
    out = memoryview(buf)
    try:
        n = _seal(conn, cipher, aead, (_IGNORE_PAYLOAD,), len(_IGNORE_PAYLOAD), out)
        n += _seal(conn, cipher, aead, (head, data), payload_len, out[n:])
    finally:
        out.release()
    assert n == len(buf)
    conn._send(buf)


def _send_one_stock(chan) -> None:
    """One packet of asyncssh 2.24's ``SSHChannel._flush_send_buf`` loop, unchanged."""
    pktsize = min(chan._send_window, chan._send_pktsize)
    buf, datatype = chan._send_buf[0]
    if len(buf) > pktsize:
        data = buf[:pktsize]
        del buf[:pktsize]
    else:
        data = buf
        del chan._send_buf[0]
    chan._send_buf_len -= len(data)
    chan._send_window -= len(data)
    if datatype is None:
        chan.send_packet(MSG_CHANNEL_DATA, String(data))
    else:
        chan.send_packet(MSG_CHANNEL_EXTENDED_DATA, UInt32(datatype), String(data))


def _flush_send_buf(chan) -> None:
    """``SSHChannel._flush_send_buf`` with data packets framed by :func:`send_data`."""
    conn = chan._conn
    while chan._send_buf and chan._send_window:
        buf, datatype = chan._send_buf[0]
        if datatype is not None or conn is None or chan._send_chan is None or not _fast_ok(conn):
            _send_one_stock(chan)
            continue
        total = len(buf)
        sent = 0
        view = memoryview(buf)
        try:
            while sent < total and chan._send_window and _fast_ok(conn):
                n = min(total - sent, chan._send_window, chan._send_pktsize)
                send_data(conn, chan._send_chan, view[sent : sent + n])
                sent += n
                chan._send_window -= n
                chan._send_buf_len -= n
        finally:
            view.release()
        if sent == total:
            del chan._send_buf[0]
        elif sent:
            del buf[:sent]
        # sent == 0 only when the fast route closed (e.g. a rekey is due): the next round
        # sends one packet the stock way, which starts the key exchange
    chan._pause_resume_writing()
    if not chan._send_buf:
        if chan._send_state == "eof_pending":
            chan.send_packet(MSG_CHANNEL_EOF)
            chan._send_state = "eof"
        elif chan._send_state == "close_pending":
            chan._close_send()


def install(chan) -> bool:
    """Use the fast send path for ``chan`` (an asyncssh channel); False if unavailable."""
    if not AVAILABLE or not isinstance(chan, SSHChannel):
        return False
    chan._flush_send_buf = types.MethodType(_flush_send_buf, chan)
    return True


def _bytes_wanted(conn) -> int:
    """How many more bytes asyncssh's parser needs for its next step (0: unknown, give all)."""
    handler = conn._recv_handler
    if handler == conn._recv_pkthdr:
        return conn._recv_blocksize - len(conn._inpbuf)
    if handler == conn._recv_packet:
        return 4 + conn._pktlen + conn._recv_macsize - conn._recv_blocksize - len(conn._inpbuf)
    return 0


def _data_received(conn, data, datatype=None) -> None:
    """``SSHConnection.data_received`` that hands the parser one packet's bytes at a time.

    asyncssh appends each socket read (up to 256 KiB) to its input buffer and then, for every
    packet, re-slices the whole rest of that buffer twice; handing it only the bytes of the
    next header or packet makes those slices small. The parser, its checks and the bytes it
    sees are unchanged: only how a read is split, which TCP may do anyway.
    """
    view = memoryview(data)
    pos, end = 0, len(view)
    try:
        while pos < end and conn._transport is not None:
            wanted = _bytes_wanted(conn)
            stop = end if wanted <= 0 else min(end, pos + wanted)
            conn._inpbuf += view[pos:stop]
            pos = stop
            conn._recv_data()
        if pos < end:  # closed meanwhile: keep what stock asyncssh would have buffered
            conn._inpbuf += view[pos:end]
    finally:
        view.release()


def install_receive(conn) -> bool:
    """Use :func:`_data_received` for ``conn`` (an asyncssh connection); False if unavailable."""
    if not (
        AVAILABLE
        and isinstance(conn, SSHConnection)
        and all(
            hasattr(conn, name)
            for name in ("_recv_handler", "_recv_pkthdr", "_recv_packet", "_recv_data", "_inpbuf")
        )
    ):
        return False
    conn.data_received = types.MethodType(_data_received, conn)
    return True


# Bytes asked for per recv() on forwarded and SSH sockets (asyncio's default: 256 KiB).
READ_SIZE = 1 << 20


def set_read_size(transport) -> None:
    """Let an asyncio selector transport read up to :data:`READ_SIZE` bytes per ``recv()``."""
    if READ_SIZE and transport is not None and hasattr(transport, "max_size"):
        transport.max_size = READ_SIZE

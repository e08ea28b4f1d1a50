"""MTProto 2.0 as a server speaks it: TCP-Full framing, the auth-key exchange, and encrypted messages.

Everything a client sends is parsed by Telethon's own TL reader (``BinaryReader.tgread_object``), which
raises on a constructor its schema (layer ``LAYER``) does not know, and every answer is a Telethon TL object
serialised by Telethon. The crypto primitives are Telethon's too (``AES`` IGE, ``MTProtoState._calc_key``);
only the server's side of the protocol is written here, following core.telegram.org/mtproto.

The auth-key exchange is the real one (``req_pq_multi`` / ``req_DH_params`` / ``set_client_DH_params``) with
the throwaway RSA key in ``keys.py`` instead of Telegram's, so any number of clients each get their own key,
exactly as on Telegram.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from telethon import helpers
from telethon.crypto import AES, AuthKey
from telethon.extensions import BinaryReader
from telethon.network.mtprotostate import MTProtoState
from telethon.password import check_prime_and_good
from telethon.tl import functions, types

from .keys import PRIVATE_KEY_PEM

MAX_PACKET = 2 * 1024 * 1024
"""Bigger frames are refused (a real DC allows about 1 MB per request, plus framing)."""

DH_PRIME = int(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F48198A0AA7C14058229493D22530F4DB"
    "FA336F6E0AC925139543AED44CCE7C3720FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4A4A695811051907E162753B56B0F6B41"
    "0DBA74D8A84B2A14B3144E0EF1284754FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F0D8115F635B105EE2E4E15D04B2454BF"
    "6F4FADF034B10403119CD8E3B92FCC5B",
    16,
)
"""Telegram's published 2048-bit safe prime (g = 3), used for the key exchange and for 2FA (SRP)."""
DH_G = 3
check_prime_and_good(DH_PRIME.to_bytes(256, "big"), DH_G)  # the client checks it the same way


class WireError(Exception):
    """The peer broke the protocol (bad framing, bad hash, unknown constructor): the connection ends."""


def to_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def parse(data: bytes) -> Any:
    """One TL object (a request or a service message) read by Telethon's reader; unknown ones raise."""
    with BinaryReader(data) as reader:
        return reader.tgread_object()


class MessageIds:
    """Server message ids: odd, growing, and close to the current time (the client checks all three)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        now = time.time()
        candidate = (int(now) << 32) | ((int((now % 1) * 2**30) << 2) & 0xFFFFFFFC) | 1
        self.last = candidate if candidate > self.last else self.last + 4
        return self.last


class Framing:
    """TCP-Full: ``len:int32 seq:int32 payload crc32:uint32`` in both directions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0

    async def read(self) -> bytes:
        head = await self.reader.readexactly(8)
        length, _seq = struct.unpack("<ii", head)
        if length < 12 or length > MAX_PACKET:
            raise WireError(f"bad TCP-Full frame length {length}")
        rest = await self.reader.readexactly(length - 8)
        body, crc = rest[:-4], struct.unpack("<I", rest[-4:])[0]
        if zlib.crc32(head + body) != crc:
            raise WireError("TCP-Full checksum mismatch")
        return body

    def write(self, payload: bytes) -> None:
        frame = struct.pack("<ii", len(payload) + 12, self.sent) + payload
        self.sent += 1
        self.writer.write(frame + struct.pack("<I", zlib.crc32(frame)))


# --- encrypted messages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    salt: int
    session_id: int
    msg_id: int
    seq_no: int
    body: bytes


def decrypt(key: AuthKey, packet: bytes) -> Incoming:
    """A client→server message (x = 0), with the msg_key check of the security guidelines."""
    msg_key = packet[8:24]
    aes_key, aes_iv = MTProtoState._calc_key(key.key, msg_key, True)
    plain = AES.decrypt_ige(packet[24:], aes_key, aes_iv)
    if hashlib.sha256(key.key[88:120] + plain).digest()[8:24] != msg_key:
        raise WireError("msg_key does not match the decrypted message")
    salt, session_id, msg_id, seq_no, length = struct.unpack("<qqqii", plain[:32])
    if length < 0 or 32 + length > len(plain):
        raise WireError(f"message length {length} exceeds the packet")
    return Incoming(salt, session_id, msg_id, seq_no, plain[32 : 32 + length])


def encrypt(key: AuthKey, session_id: int, msg_id: int, seq_no: int, body: bytes) -> bytes:
    """A server→client message (x = 8)."""
    data = struct.pack("<qq", 0, session_id) + struct.pack("<qii", msg_id, seq_no, len(body)) + body
    padding = os.urandom(-(len(data) + 12) % 16 + 12)
    msg_key = hashlib.sha256(key.key[96:128] + data + padding).digest()[8:24]
    aes_key, aes_iv = MTProtoState._calc_key(key.key, msg_key, False)
    encrypted: bytes = AES.encrypt_ige(data + padding, aes_key, aes_iv)
    return struct.pack("<Q", key.key_id) + msg_key + encrypted


def rpc_result(req_msg_id: int, result: bytes) -> bytes:
    return struct.pack("<Iq", 0xF35C6D01, req_msg_id) + result


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    return rpc_result(req_msg_id, bytes(types.RpcError(error_code=code, error_message=message)))


# --- the auth-key exchange --------------------------------------------------------------------------------


def plain_message(msg_id: int, body: bytes) -> bytes:
    return struct.pack("<qqi", 0, msg_id, len(body)) + body


class KeyExchange:
    """The server side of creating an auth key (core.telegram.org/mtproto/auth_key), one per connection."""

    _private: RSAPrivateKey | None = None

    def __init__(self) -> None:
        self.nonce = 0
        self.server_nonce = int.from_bytes(os.urandom(16), "little", signed=True)
        self.new_nonce = 0
        self.a = int.from_bytes(os.urandom(256), "big") % (DH_PRIME - 2**2000) + 2**1990

    @classmethod
    def private_key(cls) -> RSAPrivateKey:
        if cls._private is None:
            loaded = serialization.load_pem_private_key(PRIVATE_KEY_PEM.encode(), password=None)
            assert isinstance(loaded, RSAPrivateKey)
            cls._private = loaded
        return cls._private

    @staticmethod
    def fingerprint() -> int:
        public = KeyExchange.private_key().public_key().public_numbers()
        from telethon.tl import TLObject

        n, e = TLObject.serialize_bytes(to_bytes(public.n)), TLObject.serialize_bytes(to_bytes(public.e))
        value: int = struct.unpack("<q", hashlib.sha1(n + e).digest()[-8:])[0]
        return value

    def answer(self, request: Any) -> tuple[Any, AuthKey | None]:
        """The answer to one plain request, and the new auth key once the exchange completes."""
        if isinstance(request, functions.ReqPqMultiRequest | functions.ReqPqRequest):
            self.nonce = request.nonce
            pq = 1000000007 * 998244353
            return types.ResPQ(self.nonce, self.server_nonce, to_bytes(pq), [self.fingerprint()]), None
        if isinstance(request, functions.ReqDHParamsRequest):
            return self._dh_params(request), None
        if isinstance(request, functions.SetClientDHParamsRequest):
            return self._finish(request)
        raise WireError(f"{type(request).__name__} is not part of the auth-key exchange")

    def _dh_params(self, request: Any) -> Any:
        if request.nonce != self.nonce or request.server_nonce != self.server_nonce:
            raise WireError("req_DH_params with the wrong nonce")
        numbers = self.private_key().private_numbers()
        plain = pow(int.from_bytes(request.encrypted_data, "big"), numbers.d, numbers.public_numbers.n)
        data = plain.to_bytes(255, "big")
        inner = parse(data[20:])
        if hashlib.sha1(bytes(inner)).digest() != data[:20] or not isinstance(inner, types.PQInnerData):
            raise WireError("p_q_inner_data does not match its hash")
        self.new_nonce = inner.new_nonce
        answer = bytes(
            types.ServerDHInnerData(
                nonce=self.nonce,
                server_nonce=self.server_nonce,
                g=DH_G,
                dh_prime=to_bytes(DH_PRIME),
                g_a=to_bytes(pow(DH_G, self.a, DH_PRIME)),
                server_time=int(time.time()),
            )
        )
        hashed = hashlib.sha1(answer).digest() + answer
        hashed += os.urandom(-len(hashed) % 16)
        key, iv = helpers.generate_key_data_from_nonce(self.server_nonce, self.new_nonce)
        return types.ServerDHParamsOk(self.nonce, self.server_nonce, AES.encrypt_ige(hashed, key, iv))

    def _finish(self, request: Any) -> tuple[Any, AuthKey]:
        key, iv = helpers.generate_key_data_from_nonce(self.server_nonce, self.new_nonce)
        plain = AES.decrypt_ige(request.encrypted_data, key, iv)
        inner = parse(plain[20:])
        if not isinstance(inner, types.ClientDHInnerData):
            raise WireError("set_client_DH_params without client_DH_inner_data")
        g_b = int.from_bytes(inner.g_b, "big")
        auth_key = AuthKey(to_bytes(pow(g_b, self.a, DH_PRIME)))
        new_hash = auth_key.calc_new_nonce_hash(self.new_nonce, 1)
        return types.DhGenOk(self.nonce, self.server_nonce, new_hash), auth_key

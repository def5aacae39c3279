"""A client's system shared-memory region for its images: frames reach a server on the same host without gRPC.

``SharedFrames`` holds one POSIX shared-memory region (``/dev/shm/yolo_triton_client_<pid>_<random>``, made
with ``tritonclient.utils.shared_memory``) that it registers with the server and reuses across requests. The
region is cut into equal slots, one per request in flight; a request whose images don't fit a slot, or that
finds every slot taken, waits for the requests in flight, and the region is made again, larger, and registered
again. ``close`` (also on garbage collection and at interpreter exit) unregisters and removes it.

The server must allow it: ``python -m serving --allow-client-shm`` (else the shared-memory API is an admin
API, behind the admin key, and registering is refused with an error that says so).
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import time
import weakref

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from client.errors import SharedMemoryRefused
from python_backends.defaults import CLIENT_SHM_PREFIX

MIB = 1024 * 1024
UNREGISTER_WAIT_S = 5.0  # for Triton to release the last requests that read the region
REFUSED = (
    "the server refuses client shared memory: start it with --allow-client-shm (python -m serving "
    "--allow-client-shm; Triton 26.04+: tritonserver --allow-client-shm=true, shared-memory not restricted)"
)
NOT_ON_THIS_HOST = (
    "the server can't open this client's shared memory: it must run on this host and see its /dev/shm "
    "(in a container: the host's IPC namespace)"
)


def refusal(exc: InferenceServerException) -> SharedMemoryRefused:
    """The error of a failed registration, with what to do where the cause is known."""
    status, message = str(exc.status()), str(exc.message())
    if "restricted" in message:
        message = f"{message}; {REFUSED}"
    elif "Unable to open shared memory region" in message:
        message = f"{message}; {NOT_ON_THIS_HOST}"
    return SharedMemoryRefused(status, message)


def _release(control: grpcclient.InferenceServerClient, name: str, state: dict) -> None:
    """Unregister the region ``name`` and remove it (``state`` holds its handle, None when there is none)."""
    handle, state["handle"], state["view"] = state["handle"], None, None
    if handle is None:
        return
    try:
        unregister(control, name)
    finally:
        shm.destroy_shared_memory_region(handle)


def unregister(control: grpcclient.InferenceServerClient, name: str, wait_s: float = UNREGISTER_WAIT_S) -> None:
    """Unregister ``name``; while Triton still holds a request that used it (its reply has come, its release has
    not), Triton refuses with "currently in use", and this tries again for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            control.unregister_system_shared_memory(name)
            return
        except InferenceServerException as exc:
            if "currently in use" not in str(exc.message()) or time.monotonic() > deadline:
                return  # the server is gone or restarted (its mapping went with it), or it keeps the mapping
        time.sleep(0.005)


class SharedFrames:
    """One registered region of ``slots`` x ``slot_bytes`` (0 x 0 until the first request), thread-safe.

    Args:
        control: the gRPC client that registers and unregisters the region (a synchronous one, also for the
            asyncio client: registering is rare, and garbage collection can't await).
    """

    def __init__(self, control: grpcclient.InferenceServerClient):
        self.control = control
        self.name = f"{CLIENT_SHM_PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        self.key = f"/{self.name}"
        self.slots = 0
        self.slot_bytes = 0
        self._free: list[int] = []  # offsets of free slots
        self._resizing = False
        self._closed = False
        self._changed = threading.Condition()
        # handle: tritonclient's handle; view: the mapped region as uint8 [slots * slot_bytes]
        self._state: dict = {"handle": None, "view": None}
        self._finalizer = weakref.finalize(self, _release, control, self.name, self._state)

    def close(self) -> None:
        """Unregister and remove the region; the next request fails (a closed client)."""
        with self._changed:
            self._closed = True
            self._finalizer()
            self._changed.notify_all()  # a request waiting to grow the region fails

    def acquire(self, byte_size: int, block: bool = True) -> int | None:
        """The offset of a free slot of at least ``byte_size`` bytes, the region grown first where needed.

        With ``block`` False: None where that would wait (requests in flight hold the slots, or the region is
        being grown). Raises SharedMemoryRefused when the server does not register the region.
        """
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError(f"shared memory {self.key} is closed")
                if not self._resizing:
                    if byte_size <= self.slot_bytes and self._free:
                        return self._free.pop()
                    if block:
                        break
                if not block:
                    return None
                self._changed.wait()
            self._resizing = True
            try:
                while len(self._free) < self.slots and not self._closed:  # requests in flight read their slots
                    self._changed.wait()
                if self._closed:
                    raise RuntimeError(f"shared memory {self.key} is closed")
                fits = byte_size <= self.slot_bytes
                self._resize(self.slots + 1 if fits else max(self.slots, 1), max(self.slot_bytes, _rounded(byte_size)))
            finally:
                self._resizing = False
                self._changed.notify_all()
            return self._free.pop()

    def register_again(self, message: str) -> bool:
        """Register the region again where a request's error ``message`` says the server doesn't know it (it
        restarted, or someone unregistered it); True when so, and the request may be sent again."""
        if f"Unable to find shared memory region: '{self.name}'" not in message:
            return False
        with self._changed:
            if self._state["handle"] is None:
                return False
            try:
                self.control.register_system_shared_memory(self.name, self.key, self.slots * self.slot_bytes)
            except InferenceServerException as exc:
                if "already in manager" not in str(exc.message()):  # another request registered it first
                    raise refusal(exc) from None
        return True

    def release(self, offset: int) -> None:
        """Give back the slot at ``offset`` once its request has its reply."""
        with self._changed:
            self._free.append(offset)
            self._changed.notify_all()

    def _resize(self, slots: int, slot_bytes: int) -> None:
        _release(self.control, self.name, self._state)
        self.slots, self.slot_bytes, self._free = 0, 0, []
        total = slots * slot_bytes
        handle = shm.create_shared_memory_region(self.name, self.key, total)
        try:
            self.control.register_system_shared_memory(self.name, self.key, total)
        except InferenceServerException as exc:
            shm.destroy_shared_memory_region(handle)
            raise refusal(exc) from None
        self._state["handle"], self._state["view"] = handle, shm.get_contents_as_numpy(handle, np.uint8, [total])
        self.slots, self.slot_bytes = slots, slot_bytes
        self._free = [i * slot_bytes for i in range(slots)][::-1]

    def put(self, parts: list, shape: list[int], datatype: str, block: bool = True):
        """Copy a request's images into a free slot: (its ``IMAGE`` input, the slot's offset for ``release``).

        ``parts``: uint8 frames of one shape (``datatype`` UINT8), or encoded images (BYTES, written in Triton's
        layout: a 4-byte little-endian length before each). None where ``block`` is False and it would wait.
        """
        sizes = [4 + len(p) for p in parts] if datatype == "BYTES" else [p.nbytes for p in parts]
        offset = self.acquire(sum(sizes), block)
        if offset is None:
            return None
        view, start = self._state["view"], offset
        for part, size in zip(parts, sizes):
            if datatype == "BYTES":
                view[start : start + 4] = np.frombuffer(struct.pack("<I", len(part)), np.uint8)
                view[start + 4 : start + size] = np.frombuffer(part, np.uint8)
            else:
                view[start : start + size].reshape(part.shape)[...] = part
            start += size
        tensor = grpcclient.InferInput("IMAGE", shape, datatype)
        tensor.set_shared_memory(self.name, sum(sizes), offset=offset)
        return tensor, offset


def _rounded(byte_size: int) -> int:
    """``byte_size`` up to whole MiB: a little larger frame (another video, an encoded image) still fits."""
    return -(-byte_size // MIB) * MIB

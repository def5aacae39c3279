"""asyncio client: keeps N requests in flight over one gRPC channel (tritonclient.grpc.aio)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from client.api import (
    OUTPUTS,
    POSTPROCESS,
    DetectionResult,
    ImageLike,
    PreparedRequest,
    build_request,
    class_names_from_config,
    grpc_target,
    outputs_from_config,
    parse_results,
    shared_memory_target,
)
from client.errors import RETRYABLE, DetectionError
from client.shared_memory import SharedFrames


class AsyncYoloTritonClient:
    """The asyncio counterpart of ``YoloTritonClient`` (same arguments, same results).

    With ``shared_memory``, a synchronous gRPC client registers the region (see ``SharedFrames``); a request
    that has to wait for a slot waits in a worker thread, not in the event loop.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        timeout_s: float | None = 60.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        classes: list[int] | None = None,
        shared_memory: bool = False,
        **tls,
    ):
        target, channel_args = grpc_target(url)
        self.client = grpcaio.InferenceServerClient(target, channel_args=channel_args, **tls)
        self.frames = None
        if shared_memory_target(url, shared_memory):
            self.frames = SharedFrames(grpcclient.InferenceServerClient(target, channel_args=channel_args, **tls))
        uses_tls = tls.get("ssl") or tls.get("root_certificates") is not None
        self.tls_without_certificate = bool(uses_tls) and tls.get("certificate_chain") is None
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.classes = None if classes is None else set(classes)
        self._class_names: list[str] | None = None
        self._outputs: tuple[str, ...] = OUTPUTS  # and the task's, found with the class names

    async def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames.control.close()
        await self.client.close()

    async def __aenter__(self) -> AsyncYoloTritonClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def class_names(self) -> list[str]:
        if self._class_names is None:
            try:
                config = (await self.client.get_model_config(POSTPROCESS, as_json=True))["config"]
                self._class_names = class_names_from_config(config)
                self._outputs = outputs_from_config(config)
            except InferenceServerException:
                self._class_names = []
        return self._class_names

    async def detect(self, image: ImageLike, conf: float | None = None, iou: float | None = None) -> DetectionResult:
        """Detect objects in one image (path, bytes or uint8 BGR array)."""
        names = await self.class_names()
        outputs = [grpcclient.InferRequestedOutput(name) for name in self._outputs]
        request = await self._request(image, conf, iou)
        try:
            try:
                reply = await self._infer(request, outputs)
            except DetectionError as exc:
                if request.slot is None or not self.frames.register_again(exc.message):
                    raise
                reply = await self._infer(request, outputs)  # the server had lost the region (a restart): once more
        finally:
            if request.slot is not None:
                self.frames.release(request.slot)
        out = {name: reply.as_numpy(name) for name in self._outputs}
        return parse_results(request.labels, out, names, self.classes)[0]

    async def _infer(self, request: PreparedRequest, outputs: list):
        """The reply to ``request``, UNAVAILABLE retried with backoff; DetectionError otherwise."""
        for attempt in range(self.retries + 1):
            try:
                return await self.client.infer(
                    request.model, request.inputs, outputs=outputs, client_timeout=self.timeout_s
                )
            except InferenceServerException as exc:
                if str(exc.status()) not in RETRYABLE or attempt == self.retries:
                    raise DetectionError.from_triton(exc, self.tls_without_certificate) from None
                await asyncio.sleep(self.backoff_s * 2**attempt)

    async def _request(self, image: ImageLike, conf: float | None, iou: float | None) -> PreparedRequest:
        """The request for ``image``; through shared memory, a slot taken at once or else waited for in a thread."""
        if self.frames is None:
            return build_request([image], conf, iou)
        request = build_request([image], conf, iou, frames=self.frames, block=False)
        if request is None:
            request = await asyncio.to_thread(build_request, [image], conf, iou, frames=self.frames)
        return request

    async def detect_many(
        self, images: Iterable[ImageLike], concurrency: int = 4, conf: float | None = None, iou: float | None = None
    ) -> list[DetectionResult | DetectionError]:
        """Detect on every image with at most ``concurrency`` requests in flight; results in input order.

        A failed image gives its DetectionError in its place instead of stopping the others.
        """
        slots = asyncio.Semaphore(concurrency)

        async def one(image: ImageLike) -> DetectionResult | DetectionError:
            async with slots:
                try:
                    return await self.detect(image, conf, iou)
                except DetectionError as exc:
                    return exc

        return list(await asyncio.gather(*(one(image) for image in images)))

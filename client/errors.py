"""The client's errors: what the server refused or failed, with its gRPC status and words."""

from __future__ import annotations

from tritonclient.utils import InferenceServerException

RETRYABLE = ("StatusCode.UNAVAILABLE",)
NO_CLIENT_CERTIFICATE = (
    "the server closed the TLS handshake: a server with mutual TLS wants a client certificate "
    "(--tls-cert and --tls-key; certificate_chain and private_key in the API)"
)


class DetectionError(RuntimeError):
    """The server refused or failed a request; ``status`` is the gRPC code, ``message`` the server's words."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @classmethod
    def from_triton(cls, exc: InferenceServerException, tls_without_certificate: bool = False) -> DetectionError:
        """The error of ``exc``; over TLS without a client certificate, a handshake the server closed says why."""
        status, message = str(exc.status()), str(exc.message())
        if tls_without_certificate and status in RETRYABLE and message.endswith("Socket closed"):
            message += f"; {NO_CLIENT_CERTIFICATE}"
        return cls(status, message)


class SharedMemoryRefused(DetectionError):
    """The server would not register the client's shared memory: no request of this client can use it."""

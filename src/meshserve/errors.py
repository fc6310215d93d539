"""The domain's exception tree.

Every failure meshserve reports to a caller is one of these. Code below the
network edge raises them; the edge (``meshserve.protocol.status``) is the one
place that maps them to gRPC status codes and HTTP codes, so a type means
the same thing on every port::

    MeshServeError
    ├── InvalidRequestError           bad input; retrying will not help
    │   ├── TensorError               one named tensor is malformed
    │   ├── InputRejectedError        the model's library refused the input while
    │   │                             predicting (an InferenceError too)
    │   ├── MessageTooLargeError      over grpcMaxMessageSizeBytes
    │   └── InvalidResourceError      a resource document is malformed (names the field)
    │       ├── ForeignResourceError  valid, but meant for another controller
    │       └── UnsupportedRuntimeError  valid, but meshserve cannot run it on Kubernetes
    ├── ModelNotFoundError            no such model or vmodel
    ├── AlreadyExistsError            exists already, differently (or owned by another)
    ├── PreconditionFailedError       the current state forbids it (compare-and-set lost)
    ├── ModelLoadError                a load failed
    │   ├── LoadNotAttemptedError     refused before any memory was used
    │   │   ├── UnsupportedModelError unknown type, no artifact of that type
    │   │   ├── PickleRefusedError    pickle-based format not allowed
    │   │   └── LoadQuotaExceededError  the load would take its namespace over its
    │   │                               byte quota (a QuotaExceededError too)
    │   ├── CorruptModelError         the artifact did not load
    │   ├── ModelTooLargeError        bigger than the whole capacity
    │   ├── LoadTimeoutError          outlasted modelLoadingTimeoutMillis
    │   └── StorageError              pulling the artifact failed (names key + path)
    │       ├── StorageConfigError        no such storage key, bad config or URI
    │       ├── ArtifactNotFoundError     no bucket, container or object there
    │       ├── StorageAccessDeniedError  the store refused the credentials
    │       ├── ArtifactRejectedError     traversal, escaping symlink, digest, size
    │       └── StorageUnavailableError   transient; retries ran out
    ├── InferenceError                the model raised while predicting
    ├── UnauthenticatedError          no credential, or one nobody issued
    ├── PermissionDeniedError         the credential's role or scope forbids it
    ├── QuotaExceededError            a namespace's quota (models, bytes) is used up
    ├── RateLimitedError              the caller's request rate is over its limit
    │   └── ServerBusyError           too many request bytes in flight at once
    └── UnavailableError              transient; the caller may retry
        ├── ModelNotReadyError        the model is not loaded (yet)
        └── PeerUnreachableError      another instance did not answer

``retryable`` tells a caller (and the router) whether the same request may
succeed later without being changed.

A message never grows without bound: a value the client sent goes in
through :func:`quote_client_value` (a bounded, printable prefix), and any
message is cut at ``MAX_MESSAGE_BYTES`` (of UTF-8), since it travels back in a gRPC
trailer that the client refuses beyond a few KiB.
"""

from __future__ import annotations

import reprlib

__all__ = [
    "MAX_MESSAGE_BYTES",
    "AlreadyExistsError",
    "ArtifactNotFoundError",
    "ArtifactRejectedError",
    "CorruptModelError",
    "ForeignResourceError",
    "InferenceError",
    "InputRejectedError",
    "InvalidRequestError",
    "InvalidResourceError",
    "LoadNotAttemptedError",
    "LoadQuotaExceededError",
    "LoadTimeoutError",
    "MeshServeError",
    "MessageTooLargeError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelTooLargeError",
    "PeerUnreachableError",
    "PermissionDeniedError",
    "PickleRefusedError",
    "PreconditionFailedError",
    "QuotaExceededError",
    "RateLimitedError",
    "ServerBusyError",
    "StorageAccessDeniedError",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailableError",
    "TensorError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedModelError",
    "UnsupportedRuntimeError",
    "bounded_message",
    "quote_client_value",
]

MAX_MESSAGE_BYTES = 2048
"""Longest error message kept, in bytes of UTF-8; the rest is cut. gRPC
clients refuse trailers over 8 KiB by default, and the message is
percent-encoded there (up to 3 bytes per byte)."""

CLIENT_VALUE_CHARS = 128
"""Characters of a client's value an error message quotes."""


def quote_client_value(value: object, *, limit: int = CLIENT_VALUE_CHARS) -> str:
    """``value`` quoted for an error message, bounded whatever the client sent.

    A string is ``'name'``, or its first ``limit`` characters and its length
    when longer (``'aaa...' (100000 characters)``), with characters that are
    not printable (control characters, lone surrogates) escaped, so the
    message is valid UTF-8 on one line. Anything else (a JSON value) is its
    ``repr`` cut in length and depth.
    """
    if not isinstance(value, str):
        try:
            return _REPR.repr(value)[: 2 * limit]
        except ValueError:  # an int past Python's digit limit for str()
            return f"<{type(value).__name__}>"
    shown = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in value[:limit]
    )
    if len(value) <= limit:
        return f"'{shown}'"
    return f"'{shown}...' ({len(value)} characters)"


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxstring = short.maxother = 64
    short.maxlong = 40
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    return short


_REPR = _short_repr()


def bounded_message(message: str) -> str:
    """``message`` as it may be sent to a caller: characters UTF-8 cannot
    carry (lone surrogates, which a JSON body can spell as ``\\ud800``)
    escaped, and cut to :data:`MAX_MESSAGE_BYTES`."""
    if len(message) * 4 <= MAX_MESSAGE_BYTES and message.isascii():
        return message
    encoded = message.encode("utf-8", "backslashreplace")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return encoded.decode("utf-8")
    cut = encoded[: MAX_MESSAGE_BYTES - 40].decode("utf-8", "ignore")
    return f"{cut}... (message cut, {len(encoded)} bytes)"


class MeshServeError(Exception):
    """Base of every error meshserve reports to a caller."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        message = bounded_message(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_message(cls, message: str) -> MeshServeError:
        """Rebuild an error of this type from its message alone (as reported
        by a peer), whatever the subclass's constructor takes."""
        error = cls.__new__(cls)
        MeshServeError.__init__(error, message)
        return error


class InvalidRequestError(MeshServeError):
    """The request itself is wrong (shape, dtype, missing field...)."""


class TensorError(InvalidRequestError):
    """A tensor in a request or response cannot be decoded or encoded."""

    tensor: str = ""
    problem: str = ""

    def __init__(self, tensor: str, problem: str) -> None:
        super().__init__(f"tensor {quote_client_value(tensor)}: {problem}")
        self.tensor = tensor
        self.problem = problem


class MessageTooLargeError(InvalidRequestError):
    """A message is larger than the configured maximum."""


class InvalidResourceError(InvalidRequestError):
    """A ServingRuntime, Predictor or InferenceService document is malformed
    or inconsistent. ``field`` is the dotted path of the offending field and
    ``document`` the index of the document in its file (``None`` when the
    resource did not come from a file)."""

    field: str = ""
    problem: str = ""
    document: int | None = None

    def __init__(self, problem: str, *, field: str = "", document: int | None = None) -> None:
        where = ", ".join(
            part for part in (f"document {document}" if document is not None else "", field) if part
        )
        super().__init__(f"{where}: {problem}" if where else problem)
        self.field = field
        self.problem = problem
        self.document = document


class ForeignResourceError(InvalidResourceError):
    """The resource is well formed but not for meshserve: an InferenceService
    without ``serving.kserve.io/deploymentMode: ModelMesh`` (KServe's own
    controller serves it), or a ServingRuntime that is not ``multiModel``.
    ModelMesh Serving ignores these; a caller may skip them with a warning."""


class UnsupportedRuntimeError(InvalidResourceError):
    """The ServingRuntime is well formed but asks for what meshserve does not
    implement on Kubernetes: a ``builtInAdapter.serverType`` other than
    ``mlserver`` (triton, ovms, torchserve), or no container to run. The
    operator writes it to the runtime's status; applying the runtime again
    will not help until its spec changes."""


class ModelNotFoundError(MeshServeError):
    """No model (or vmodel) is registered or loaded under that id."""


class AlreadyExistsError(MeshServeError):
    """The thing exists already with other settings, or another owner."""


class PreconditionFailedError(MeshServeError):
    """The request conflicts with the current state (e.g. deleting a model a
    vmodel still uses, or an expectedTargetModelId that no longer holds)."""


class ModelLoadError(MeshServeError):
    """Loading a model failed; the message says why."""


class LoadNotAttemptedError(ModelLoadError):
    """The load was refused before it started, so it holds no memory.

    ModelMesh's SPI reports these as INVALID_ARGUMENT / FAILED_PRECONDITION.
    """


class UnsupportedModelError(LoadNotAttemptedError):
    """Unknown model type, or no artifact of that type at the path."""


class PickleRefusedError(LoadNotAttemptedError):
    """A pickle-based artifact, and pickle is not allowed for this runtime."""


class CorruptModelError(ModelLoadError):
    """The artifact exists but its library could not load it."""


class ModelTooLargeError(ModelLoadError):
    """The model is larger than the runtime's whole capacity."""


class LoadTimeoutError(ModelLoadError):
    """The load took longer than the configured timeout."""

    retryable = True


class StorageError(ModelLoadError):
    """Pulling the model's artifact from storage failed. The message names the
    storage key and the path, never a credential."""


class StorageConfigError(StorageError):
    """No such storage key, an invalid storage-config entry, or a storage URI
    that cannot be used."""


class ArtifactNotFoundError(StorageError):
    """No bucket, container or object at the configured location."""


class StorageAccessDeniedError(StorageError):
    """The store refused the configured credentials (401/403)."""


class ArtifactRejectedError(StorageError):
    """The artifact was fetched but refused: a path that escapes the model
    directory, a symlink pointing outside it, a sha256 mismatch, or more bytes
    than a model may have."""


class StorageUnavailableError(StorageError):
    """The store kept failing transiently until the retries ran out."""

    retryable = True


class InferenceError(MeshServeError):
    """The model raised while predicting on otherwise valid tensors."""


class InputRejectedError(InvalidRequestError, InferenceError):
    """The model's library raised on this input while predicting (a wrong
    feature count, NaN where the model takes none, zero rows...): the same
    request fails the same way, so it is the caller's to fix. The message
    carries the library's own words, bounded in length. Failures that are
    not about the input (out of memory) stay plain ``InferenceError``."""


class UnauthenticatedError(MeshServeError):
    """The call carries no credential, or one that matches no principal. The
    message never contains the credential."""


class PermissionDeniedError(MeshServeError):
    """The caller is known, but its role, namespaces or models do not cover
    the call."""


class QuotaExceededError(MeshServeError):
    """A namespace has used up a quota (``limits.modelsPerNamespace``,
    ``limits.namespaceMaxBytes``); the message names the namespace, the
    quota and its use. It clears only when the namespace frees something."""


class LoadQuotaExceededError(QuotaExceededError, LoadNotAttemptedError):
    """A load refused because the model would take its namespace over its
    byte quota. A load failure like any other (the model's status is
    LOADING_FAILED with this reason), refused before memory was used."""


class RateLimitedError(MeshServeError):
    """The caller sent more requests than its rate limit allows. The message
    names the limit and the rate; ``retry_after_s`` says when one more
    request would be accepted."""

    retryable = True
    retry_after_s: float = 0.0

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerBusyError(RateLimitedError):
    """The server is already decoding as many request bytes as it allows
    (``server.maxInflightDecodeBytes``); the same request may succeed once
    others finish. Refused like a rate limit (429, RESOURCE_EXHAUSTED)."""


class UnavailableError(MeshServeError):
    """A transient condition; the same request may succeed later."""

    retryable = True


class ModelNotReadyError(UnavailableError):
    """The model is known but has no loaded copy to serve from."""


class PeerUnreachableError(UnavailableError):
    """Another instance could not be reached (it stopped, or hangs): the
    request may go to a different instance."""

"""The errors a user sees. Every failure the user can cause is one of these, with a message that
names the file, layer, op or limit; the CLI prints the message, never a traceback."""


class DTMMError(Exception):
    """Base class for every error dtmm reports to the user."""


class ModelError(DTMMError):
    """The model file is unreadable, malformed, or uses a type or shape we cannot compile."""


class UnsupportedOpError(ModelError):
    """The model uses an operator (or operator option) that has no integer lowering."""


class FormatError(DTMMError):
    """Weights cannot be stored in the requested sparse format (e.g. an index would overflow)."""


class ResourceError(DTMMError):
    """The compiled model does not fit a board's flash or RAM."""


class ToolchainError(DTMMError):
    """The cross compiler or emulator is missing or failed."""


class OutputExistsError(DTMMError):
    """An output file exists and ``--force`` was not given."""


def _register_with_tvm_ffi() -> None:
    """Let our errors cross TVM's FFI with their class intact: a pass that raises
    UnsupportedOpError inside a Sequential must reach the CLI as UnsupportedOpError, not as a
    RuntimeError."""
    try:
        import tvm_ffi
    except ImportError:  # the errors are usable without TVM
        return
    for cls in (DTMMError, ModelError, UnsupportedOpError, FormatError, ResourceError, ToolchainError,
                OutputExistsError):
        tvm_ffi.register_error(cls)


_register_with_tvm_ffi()

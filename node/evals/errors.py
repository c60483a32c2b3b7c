"""Errors of the eval runner, in the project's families (by whose fault).

A bad task file, suite, flag or model directory is our operator's to fix
(:class:`~protocol.errors.ConfigurationError`, exit code 2); data that does not match
what the suite pins, or is unusable, is bad input (:class:`~protocol.errors.PeerDataError`,
exit code 3). Every message names the file or field at fault.
"""

from __future__ import annotations

from protocol.errors import ConfigurationError, PeerDataError


class EvalSpecError(ConfigurationError):
    """A task or suite definition is malformed (YAML syntax, unknown key, kind or metric)."""

    code = "eval-spec"


class UnknownMetricError(EvalSpecError):
    """A task asks for a metric its kind cannot compute."""

    code = "eval-unknown-metric"


class ModelLoadError(ConfigurationError):
    """The model directory is missing, incomplete, or its weights cannot be read."""

    code = "eval-model"


class EvalRuntimeError(ConfigurationError):
    """The requested device, dtype or parallel setup is unavailable here."""

    code = "eval-runtime"


class SigningUnavailableError(ConfigurationError):
    """``--sign`` was asked for but the node home cannot publish (or a required fact is missing)."""

    code = "eval-sign"


class EvalDataError(PeerDataError):
    """Eval data is unusable: empty, unparsable, or rows missing the fields the task reads."""

    code = "eval-data"


class DatasetDigestError(EvalDataError):
    """A data file's SHA-256 differs from the digest the task or suite pins."""

    code = "eval-data-digest"


class NativeUnsupportedError(EvalSpecError):
    """A task uses an lm-evaluation-harness feature the native runner does not reproduce exactly.

    ``tripwire eval --engine auto`` hands such a task to lm-eval's own evaluator;
    ``--engine native`` refuses it with this error (the message names the feature), so the
    node never signs a number that differs from lm-eval's for a task lm-eval can run.
    """

    code = "eval-native-unsupported"

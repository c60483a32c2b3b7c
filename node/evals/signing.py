"""Turning an eval run into a signed ``eval_result`` entry in the lab's feed.

Everything that can fail is checked before the model is loaded (``preflight_sign``,
``open_home``), so a misconfigured ``--sign`` never costs an eval run, and a run that fails
publishes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.evals.errors import SigningUnavailableError
from node.evals.model import trainer_state
from protocol.errors import TripwireError


def preflight_sign(model_dir: Path | None, home: Path | None, training_flop: str | None) -> None:
    if home is None:
        raise SigningUnavailableError("--sign needs --home DIR (the node home holding the lab key and feed)")
    if training_flop is not None:
        from protocol.entries import TRAINING_FLOP
        from protocol.errors import SchemaError

        try:
            TRAINING_FLOP.check(str(training_flop).strip())
        except (SchemaError, ValueError) as e:
            raise SigningUnavailableError(f"--training-flop {training_flop!r} cannot be signed: {e}") from e
    if training_flop is None:
        if model_dir is None:
            raise SigningUnavailableError("--sign needs the training compute: pass --training-flop")
        state = trainer_state(Path(model_dir))
        if not state.get("num_input_tokens_seen") and not state.get("total_flos"):
            raise SigningUnavailableError(
                "--sign needs the training compute: pass --training-flop (no trainer_state.json with "
                "num_input_tokens_seen or total_flos in the model directory)"
            )


def open_home(home: Path | None) -> Any:
    if home is None:
        raise SigningUnavailableError("--sign needs --home DIR (the node home holding the lab key and feed)")
    from node.home import NodeHome

    try:
        return NodeHome.open(home)
    except TripwireError:
        raise
    except Exception as e:
        raise SigningUnavailableError(f"cannot open node home {home}: {type(e).__name__}: {e}") from e


def publish_result(home: Any, run: Any) -> str:
    """Validate the body against the protocol model, then sign and append it."""
    from pydantic import ValidationError

    from protocol.entries import EvalResultBody
    from protocol.errors import SchemaError

    body = run.to_body()
    try:
        EvalResultBody.model_validate(body)
    except ValidationError as e:
        raise SchemaError(f"eval_result body does not match the protocol schema: {e}") from e
    return str(home.publish("eval_result", body))

"""The base of every unsigned document a node serves (spec §8): closed, frozen, one docstring per field.

Signed data has its own closed models (:mod:`protocol.entries`). The documents here are
what a node *concludes* from signed data and serves to peers, gates and regulators: a plan's
state, a forecast's score, a track record. Each such conclusion is one model, defined next to
the pure function that reaches it (:mod:`protocol.plans`, :mod:`protocol.track`), and the
node's contracts (``node.contracts``) serve and parse that same model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["WireDocument"]


class WireDocument(BaseModel):
    """Base of every served document: closed, frozen, one docstring per field."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    def to_json(self) -> dict[str, Any]:
        """The document as it goes on the wire (absent optional members left out)."""
        return self.model_dump(mode="json", exclude_unset=True)

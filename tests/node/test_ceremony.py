"""The roster ceremony as an API (node.home.ceremony): draft from identity files, each lab
signs, the signatures combine, and the result installs; each misuse is refused by name and
writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from node.errors import InputFileError, RosterMismatchError
from node.home import NodeHome
from node.home.ceremony import combine_signatures, draft_from_identities, sign_roster
from node.home.netsetup import DEMO_POLICY
from protocol.errors import ConfigurationError
from protocol.roster import Roster

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[dict[str, NodeHome]]:
    out = {
        lab: NodeHome.init(tmp_path / lab, lab, endpoint=f"http://127.0.0.1:{8000 + n}")
        for n, lab in enumerate(("alpha", "beta", "outsider"))
    }
    for lab, h in out.items():
        (tmp_path / f"{lab}.json").write_text(json.dumps(h.identity()))
    yield out
    for h in out.values():
        h.close()


def _draft(tmp: Path, **over: Any) -> Roster:
    args: dict[str, Any] = dict(
        network_name="net",
        labs=[tmp / "alpha.json", tmp / "beta.json"],
        observers=[],
        weights={},
        pause_weight=2,
        resume_weight=2,
        roster_threshold=2,
        policy=DEMO_POLICY,
        suites=[],
        expires=NOW + timedelta(days=30),
        now=NOW,
    )
    return draft_from_identities(**(args | over))


def test_draft_sign_combine_install(tmp_path: Path, homes: dict[str, NodeHome]) -> None:
    draft = _draft(tmp_path, weights={"beta": 2})
    doc = draft.model_dump(mode="json")
    _, by_alpha = sign_roster(homes["alpha"], doc, "draft.json")
    _, by_beta = sign_roster(homes["beta"], doc, "draft.json")
    both = combine_signatures([("a.json", by_alpha), ("b.json", by_beta)])
    assert len(both.signatures) == 2
    # Combining again adds nothing: a signature counts once.
    assert combine_signatures([("c.json", both), ("a.json", by_alpha)]).signatures == both.signatures
    vr = homes["alpha"].store.install_genesis(both)
    assert vr.version == 1 and set(vr.signed_by) == {"alpha", "beta"}
    assert {m.id: m.weight for m in vr.roster.labs} == {"alpha": 1, "beta": 2}
    # A second lab signs the envelope the first signed: the same payload, one more signature.
    roster, env = sign_roster(homes["beta"], by_alpha.to_dict(), "s-alpha.json")
    assert env.payload == by_alpha.payload and len(env.signatures) == 2 and roster.version == 1


def test_misuse_is_refused_by_name(tmp_path: Path, homes: dict[str, NodeHome]) -> None:
    with pytest.raises(ConfigurationError, match="--weight names labs not given with --lab: gamma"):
        _draft(tmp_path, weights={"gamma": 3})
    with pytest.raises(ConfigurationError, match="in the past"):
        _draft(tmp_path, expires=NOW - timedelta(seconds=1))
    (tmp_path / "observer.json").write_text(json.dumps({k: v for k, v in homes["beta"].identity().items() if k != "endpoint"}))
    with pytest.raises(InputFileError, match="has no endpoint"):
        _draft(tmp_path, labs=[tmp_path / "alpha.json", tmp_path / "observer.json"])
    doc = _draft(tmp_path).model_dump(mode="json")
    with pytest.raises(ConfigurationError, match="not a lab key"):
        sign_roster(homes["outsider"], doc, "draft.json")
    _, one = sign_roster(homes["alpha"], doc, "draft.json")
    other = _draft(tmp_path, network_name="another").model_dump(mode="json")
    _, two = sign_roster(homes["beta"], other, "other.json")
    with pytest.raises(RosterMismatchError, match=r"other\.json signs a different roster than one\.json"):
        combine_signatures([("one.json", one), ("other.json", two)])
    assert not homes["alpha"].store.has_roster()
